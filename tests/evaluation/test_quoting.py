"""quote(): results handed to a tutorial's text, glued for MyST-NB in a kernel, nothing in a plain run."""

from __future__ import annotations

import numpy as np
import pytest

from ppl_vae.evaluation import quoting
from ppl_vae.evaluation.quoting import quote


def test_a_plain_run_shows_nothing(capsys):
    quote("bound", -99.41)
    quote("gains", "26, 22 and 11")
    assert capsys.readouterr() == ("", "")


@pytest.fixture
def glued(monkeypatch):
    """What quote() hands to myst_nb.glue, as if it ran in the docs build's kernel."""
    myst_nb = pytest.importorskip("myst_nb")
    calls = []
    monkeypatch.setattr(quoting, "_in_notebook", lambda: True)
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: calls.append((name, value, display)))
    return calls


def test_numbers_are_glued_as_plain_numbers(glued):
    quote("bound", np.float64(-99.41))
    quote("units", np.int64(23))
    (name, bound, display), (_, units, _) = glued
    assert (name, display) == ("bound", False)
    # repr is what {glue:text} formats: plain numbers, not np.float64(...)
    assert (type(bound), repr(bound)) == (float, "-99.41") and (type(units), repr(units)) == (int, "23")


def test_phrases_are_glued_as_markdown(glued):
    from IPython.display import Markdown

    quote("gains", "+26.0 (2 → 4)")
    ((name, value, _),) = glued
    assert isinstance(value, Markdown) and value.data == "+26.0 (2 → 4)"
