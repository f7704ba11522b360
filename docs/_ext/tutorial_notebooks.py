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

``setup`` copies the explorer page that tutorial 3 writes into the built site
as ``latent_explorer.html`` (``docs/explorer.md`` shows it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import jupytext
import nbformat
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

PRELUDE = '''\
import os as _os
__file__ = _os.path.join(_os.getcwd(), "tutorial.py")


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


def read_tutorial(text: str, **_: object) -> nbformat.NotebookNode:
    """A jupytext percent script as a notebook, with the hidden prelude cell first."""
    notebook = jupytext.reads(text, fmt="py:percent")
    prelude = nbformat.v4.new_code_cell(PRELUDE, metadata={"tags": ["remove-cell"]})
    notebook.cells.insert(0, prelude)
    notebook.metadata["kernelspec"] = KERNELSPEC
    return notebook


def copy_explorer(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    outputs = Path(app.srcdir).resolve().parent / "tutorials" / "outputs"
    source = outputs / ("smoke" if os.environ.get("PPL_VAE_SMOKE") == "1" else "") / EXPLORER
    if not source.is_file():
        raise ExtensionError(f"{source} is missing: tutorial 3 writes it; delete the jupyter cache "
                             f"next to {app.outdir} so that the tutorial runs again")
    shutil.copyfile(source, Path(app.outdir) / SITE_NAME)


def setup(app: Sphinx) -> dict[str, object]:
    app.connect("build-finished", copy_explorer)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
