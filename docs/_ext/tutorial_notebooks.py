"""Read the jupytext tutorials as notebooks for MyST-NB, and put the explorer into the site.

``read_tutorial`` is the reader of ``nb_custom_formats`` for ``tutorials/NN_*.py``.
It adds one hidden first cell, so that a script written to run with ``python``
also runs as a notebook:

* ``__file__``: the tutorials find their output folder from it. MyST-NB runs
  a notebook in its source folder, ``docs/tutorials``, a link to
  ``tutorials/``; the kernel's working directory is the real folder.
* figures inline: the tutorials select matplotlib's Agg backend and save their
  figures to files (some through ppl_vae's plotting functions, which close
  them), so nothing would show in a notebook. After every cell a hook displays
  the PNG files the cell wrote under ``outputs/``, in the order written, and
  closes the figures left open (showing them instead if the cell wrote none).

``setup`` also makes the pages clean and complete:

* the explorer page that tutorial 3 writes is copied into the built site as
  ``latent_explorer.html`` (``docs/explorer.md`` shows it);
* the checkout's absolute path is cut from the cells' outputs (``wrote
  /home/you/ppl_vae/tutorials/outputs/...`` reads ``wrote tutorials/outputs/...``),
  so no page shows where it was built;
* every tutorial page links its script (``.py``) and its executed notebook
  (``.ipynb``), copied to ``downloads/`` (the ``tutorial-downloads`` template);
* ``{tutorial-gallery}`` is a grid of the tutorials, each with a thumbnail of
  its first figure (the first one ``tutorials/README.md`` lists), copied to
  ``_static/thumbs/``.
"""

from __future__ import annotations

import html
import os
import re
import shutil
from pathlib import Path

import jupytext
import nbformat
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util.docutils import SphinxDirective

PRELUDE = '''\
import os as _os
import warnings as _warnings
__file__ = _os.path.join(_os.getcwd(), "tutorial.py")
# tqdm.auto in a kernel without ipywidgets: a warning on stderr, not a progress bar
_warnings.filterwarnings("ignore", message="IProgress not found")


class _PplVaeFigures:
    """After each cell: show the PNGs the cell wrote under outputs/, then any figure left open."""

    def __init__(self):
        self.started = 0

    def pre(self):
        import time

        self.started = time.time_ns()

    def post(self):
        import glob
        import io

        import matplotlib.pyplot as plt
        from IPython.display import Image, display

        written = [path for path in glob.glob(_os.path.join(_os.getcwd(), "outputs", "**", "*.png"),
                                              recursive=True)
                   if _os.stat(path).st_mtime_ns >= self.started]
        for path in sorted(written, key=lambda path: _os.stat(path).st_mtime_ns):
            display(Image(filename=path))
        for number in plt.get_fignums():
            figure = plt.figure(number)
            if not written:
                buffer = io.BytesIO()
                figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
                display(Image(buffer.getvalue()))
            plt.close(figure)


_ppl_vae_figures = _PplVaeFigures()
get_ipython().events.register("pre_execute", _ppl_vae_figures.pre)
get_ipython().events.register("post_execute", _ppl_vae_figures.post)
'''

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}

#: Where tutorial 3 writes the explorer, relative to the repository root.
EXPLORER = "03_variational_inference/explorer.html"

#: Its name in the built site (explorer.html is the page that shows it).
SITE_NAME = "latent_explorer.html"


#: A tutorial's row in tutorials/README.md: its script and, in the last cell, its figures.
README_ROW = re.compile(r"^\| `(\d\d_\w+)\.py` \|.*\|([^|]*)\|$", re.M)


def read_tutorial(text: str, **_: object) -> nbformat.NotebookNode:
    """A jupytext percent script as a notebook, with the hidden prelude cell first."""
    notebook = jupytext.reads(text, fmt="py:percent")
    prelude = nbformat.v4.new_code_cell(PRELUDE, metadata={"tags": ["remove-cell"]})
    notebook.cells.insert(0, prelude)
    notebook.metadata["kernelspec"] = KERNELSPEC
    return notebook


def repository(app: Sphinx | Path) -> Path:
    """The checkout: the folder above the docs' source folder (``app`` or the source folder)."""
    return Path(app if isinstance(app, Path) else app.srcdir).resolve().parent


def outputs_folder(app: Sphinx) -> Path:
    """Where the tutorials write their figures in this build (smoke or full)."""
    outputs = repository(app) / "tutorials" / "outputs"
    return outputs / "smoke" if os.environ.get("PPL_VAE_SMOKE") == "1" else outputs


def tutorial_names(app: Sphinx | Path) -> list[str]:
    return sorted(path.stem for path in (repository(app) / "tutorials").glob("[0-9][0-9]_*.py"))


def first_figures(app: Sphinx | Path) -> dict[str, str]:
    """Each tutorial's first figure, as ``tutorials/README.md`` lists them."""
    text = (repository(app) / "tutorials" / "README.md").read_text()
    found = {}
    for name, figures in README_ROW.findall(text):
        names = re.findall(r"`([^`]+\.png)`", figures)
        if names:
            found[name] = names[0]
    return found


def title_of(path: Path) -> str:
    match = re.search(r"^# # (.+)$", path.read_text(), re.M)
    return match.group(1).strip() if match else path.stem


def strip_build_paths(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Cut the checkout's absolute path out of the text of every literal block (cell outputs)."""
    root = str(repository(app)) + os.sep
    for block in list(doctree.findall(nodes.literal_block)):
        text = block.astext()
        if root in text:
            block.children = [nodes.Text(text.replace(root, ""))]
            if "rawsource" in block.__dict__:
                block.rawsource = block.children[0]


class TutorialGallery(SphinxDirective):
    """A grid of every tutorial with the thumbnail of its first figure (raw HTML)."""

    def run(self) -> list[nodes.Node]:
        app = Path(self.env.srcdir)
        figures = first_figures(app)
        cards = []
        for name in tutorial_names(app):
            title = html.escape(title_of(repository(app) / "tutorials" / f"{name}.py"))
            image = (f'<img src="_static/thumbs/{name}.png" alt="the first figure of {title}" '
                     f'loading="lazy">' if name in figures else "")
            cards.append(f'<a href="tutorials/{name}.html">{image}<span>{title}</span></a>')
        raw = '<div class="ppl-vae-gallery">' + "".join(cards) + "</div>"
        return [nodes.raw("", raw, format="html")]


def add_downloads(app: Sphinx, pagename: str, templatename: str, context: dict,
                  doctree: object) -> None:
    name = pagename.removeprefix("tutorials/")
    if pagename.startswith("tutorials/") and name in tutorial_names(app):
        context["tutorial_downloads"] = [("script (.py)", f"downloads/{name}.py"),
                                         ("notebook (.ipynb)", f"downloads/{name}.ipynb")]
    else:
        context["tutorial_downloads"] = []


def copy_downloads_and_thumbnails(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    (out / "downloads").mkdir(exist_ok=True)
    (out / "_static" / "thumbs").mkdir(parents=True, exist_ok=True)
    executed = out.parent / "jupyter_execute" / "tutorials"
    figures = first_figures(app)
    for name in tutorial_names(app):
        shutil.copyfile(repository(app) / "tutorials" / f"{name}.py", out / "downloads" / f"{name}.py")
        notebook = executed / f"{name}.ipynb"
        if notebook.is_file():
            shutil.copyfile(notebook, out / "downloads" / f"{name}.ipynb")
        else:  # not executed in this build (e.g. only some pages built): the notebook of the script
            text = jupytext.writes(read_tutorial((repository(app) / "tutorials" / f"{name}.py")
                                                 .read_text()), fmt="ipynb")
            (out / "downloads" / f"{name}.ipynb").write_text(text)
        figure = outputs_folder(app) / name / figures.get(name, "")
        if name in figures and figure.is_file():
            shutil.copyfile(figure, out / "_static" / "thumbs" / f"{name}.png")


def copy_explorer(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    source = outputs_folder(app) / EXPLORER
    if not source.is_file():
        raise ExtensionError(f"{source} is missing: tutorial 3 writes it; delete the jupyter cache "
                             f"next to {app.outdir} so that the tutorial runs again")
    shutil.copyfile(source, Path(app.outdir) / SITE_NAME)


def setup(app: Sphinx) -> dict[str, object]:
    app.connect("build-finished", copy_explorer)
    app.connect("build-finished", copy_downloads_and_thumbnails)
    app.connect("doctree-resolved", strip_build_paths)
    app.connect("html-page-context", add_downloads)
    app.add_directive("tutorial-gallery", TutorialGallery)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
