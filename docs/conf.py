"""Sphinx configuration of the ppl_vae documentation site (``make docs``).

MyST-NB executes the jupytext tutorials as notebooks and keeps their outputs
in a jupyter-cache next to the build folder, so an unchanged tutorial is not
run again. ``PPL_VAE_SMOKE=1`` (``make docs-smoke``, the test suite) runs them
at their smoke size; build a smoke site into its own folder (its cache then
lives there too), never into ``docs/_build/html``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

from api_pages import write_api_pages  # noqa: E402

import ppl_vae  # noqa: E402

write_api_pages(HERE / "api")  # one page per module, from the package as it is now

project = "ppl_vae"
author = "the ppl_vae authors"
copyright = "ppl_vae authors, MIT licence"
release = version = ppl_vae.__version__

#: ``PPL_VAE_SMOKE=1``: the tutorials run at toy size, and every page says so.
SMOKE = os.environ.get("PPL_VAE_SMOKE") == "1"

extensions = [
    "myst_nb",
    "numpydoc",
    "sphinx_design",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx_copybutton",
    "offline_math",
    "tutorial_notebooks",
    "api_pages",
    "cli_reference",
    "figures",
]

# ----- sources -------------------------------------------------------------------------------
# docs/tutorials is a link to tutorials/: the scripts there are the pages.
exclude_patterns = ["_build", "_ext", "_templates", "_static", "conf.py", "tutorials/outputs", "tutorials/README.md",
                    "**/__pycache__", "**.ipynb_checkpoints"]
nb_custom_formats = {".py": ["tutorial_notebooks.read_tutorial", {}]}
# $...$ and $$...$$ are math, rendered by the MathJax copy inside the site (_ext/offline_math.py).
myst_enable_extensions = ["colon_fence", "deflist", "dollarmath", "amsmath"]
myst_heading_anchors = 3

# ----- execution --------------------------------------------------------------------------------
nb_execution_mode = "cache"              # re-run a tutorial only when its code changed
nb_execution_in_temp = False             # run in tutorials/, where the scripts expect to be
nb_execution_timeout = 1800              # the longest tutorial takes ~2.5 minutes on 2 cores
nb_execution_raise_on_error = False      # a failing tutorial is a warning (so -W fails the build)
nb_execution_show_tb = True              # and its traceback is in the log
nb_merge_streams = True

# ----- strictness -------------------------------------------------------------------------------
# A broken reference to ppl_vae's own names fails the build (-W); third-party
# names cannot be checked offline (no intersphinx: nothing is downloaded).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|pyro|numpy|np|nn|dist|matplotlib|plt|arviz|az|sklearn|collections|typing"
               r"|os|pathlib|argparse|contextlib|dataclasses)(\..*)?"),
    (r"py:.*", r"(Tensor|Module|Parameter|ndarray|Path|PathLike|Callable|Sequence|Iterable|Iterator"
               r"|Mapping|Any|Figure|Axes|InferenceData|TorchDistribution|Distribution"
               r"|PosixPath|Generator|Optimizer)"),
    (r"py:.*", r"(optional|default|callable|path-like|array-like|float|int|str|bool|dict|list|tuple"
               r"|None|object|type|sequence|iterable|ExpandedDistribution)"),
    # Private names are not documented, so a reference to one cannot link.
    (r"py:.*", r"(.*\.)?_[A-Za-z]\w*"),
]

# ----- API reference ------------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"               # numpydoc docstrings carry the types and shapes
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

# ----- HTML ---------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = "ppl_vae"
templates_path = ["_templates"]
html_static_path = ["_static"]
html_css_files = ["ppl_vae.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "navbar_start": ["navbar-logo", "version"],
    "header_links_before_dropdown": 7,
    "navbar_persistent": ["search-button"],     # the icon: the navbar stays one row at 1400 px
    "secondary_sidebar_items": ["page-toc", "tutorial-downloads", "sourcelink"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
if SMOKE:
    html_theme_options["announcement"] = (
        "Smoke build: the tutorials ran at toy size (PPL_VAE_SMOKE=1), so their numbers and "
        "figures are not the real results. <code>make docs</code> builds the real site.")
# A left sidebar only where it lists something: the tutorials and the API reference have
# pages to move between; the top-level pages (docs/*.md) get the full width.
html_sidebars = {page: [] for page in {path.stem for path in HERE.glob("*.md")} | {"cli_reference"}}
html_last_updated_fmt = None
