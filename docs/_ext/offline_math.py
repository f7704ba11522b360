"""Rendered math, offline: MathJax 3 from the ``sphinx-mathjax-offline`` wheel, served from ``_static``.

Sphinx's own ``sphinx.ext.mathjax`` writes the formulas (MyST's ``$...$`` and
``$$...$$``) and adds one ``<script>`` for MathJax; this extension points that
script at a copy of MathJax inside the built site instead of a CDN, so a page
opened from disk, or on a lecture-hall machine without a network, renders its
math. MathJax's SVG output is used: it needs no web fonts (which Chromium
refuses to load across ``file://`` pages).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util.fileutil import copy_asset

#: The pip package that ships MathJax (its module name has hyphens).
PACKAGE = "sphinx-mathjax-offline"

#: The copy's place in the built site, under ``_static``.
FOLDER = "mathjax"
ENTRY = "tex-svg.js"


def mathjax_source() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ExtensionError(f"{PACKAGE} is missing: pip install -e '.[docs]'")
    return Path(spec.origin).parent / "static" / "mathjax"


def copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    if exception is None and app.builder.format == "html":
        copy_asset(str(mathjax_source()), str(Path(app.outdir) / "_static" / FOLDER))


def point_at_the_copy(app: Sphinx, config: object) -> None:
    config.mathjax_path = f"{FOLDER}/{ENTRY}"  # type: ignore[attr-defined]


def setup(app: Sphinx) -> dict[str, object]:
    mathjax_source()  # fail early, with the fix, where the package is missing
    app.setup_extension("sphinx.ext.mathjax")
    app.connect("config-inited", point_at_the_copy)
    app.connect("build-finished", copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
