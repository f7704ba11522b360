"""Results that a tutorial's text quotes, handed to the text by the run that computed them.

A tutorial run as a notebook by the documentation build (MyST-NB) stores each
quoted value in its cell's output, and the Markdown around it reads
``{glue:text}`name:.1f``` for a number or ``{glue:md}`name``` for a phrase:
the page then shows the numbers of the run it shows, whatever its size (the
smoke build's toy runs included). Run as a plain script, :func:`quote` does
nothing.
"""

from __future__ import annotations

from numbers import Integral, Real


def quote(name: str, value: Real | str) -> None:
    """Hand one result to the text: a number for ``{glue:text}``, a phrase for ``{glue:md}``.

    Parameters
    ----------
    name : str
        The key the text refers to; unique within the tutorial.
    value : float, int or str
        A number (its text is formatted where it is quoted, e.g. ``name:.2f``),
        or a phrase of inline Markdown.

    Examples
    --------
    >>> quote("best_bound", -99.41)      # a plain run: nothing happens
    >>> quote("gains", "26, 22 and 11")
    """
    if not _in_notebook():
        return
    try:
        from myst_nb import glue
    except ImportError:  # Jupyter without the docs extra: no page to quote into
        return
    from IPython.display import Markdown

    if isinstance(value, str):
        glue(name, Markdown(value), display=False)
    else:  # a plain int or float, so that its text is a number (not ``np.float64(...)``)
        glue(name, int(value) if isinstance(value, Integral) else float(value), display=False)


def _in_notebook() -> bool:
    """True inside an IPython kernel (where the docs build runs the tutorials)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


__all__ = ["quote"]
