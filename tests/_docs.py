"""One smoke build of the documentation site per test session, shared by the docs and tutorial tests.

The build runs Sphinx exactly as ``make docs-smoke`` does (``-W --keep-going``,
tutorials executed with ``PPL_VAE_SMOKE=1``), but into a temporary folder, so
it never touches ``docs/_build``; the tutorials write their smoke figures to
``tutorials/outputs/smoke/`` as they do when run as scripts. Executing the
tutorials here is the test that they run: ``tests/docs/test_tutorials.py`` reads
the executed notebooks instead of running every script a second time.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS_TOOLS = ("sphinx", "myst_nb", "pydata_sphinx_theme", "numpydoc", "sphinx_design", "jupytext",
              "sphinx_copybutton", "sphinx-mathjax-offline")

#: Generous: the ten smoke tutorials and the API pages take ~3 minutes on 2 busy cores.
BUILD_TIMEOUT_S = 1200


def missing_docs_tools() -> str | None:
    """Why the docs cannot be built here, or None."""
    missing = [name for name in DOCS_TOOLS if importlib.util.find_spec(name) is None]
    if missing:
        return f"the docs tools are missing ({', '.join(missing)}): pip install -e '.[docs]'"
    return None


def sphinx_command(source: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", str(source),
            str(out / "html"), "-d", str(out / "doctrees")]


def smoke_environment() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PPL_VAE_SMOKE": "1", "MPLBACKEND": "Agg", "PYTHONPATH": path}


@dataclass(frozen=True)
class DocsBuild:
    """A finished smoke build: its folder, Sphinx's exit status and its log."""

    root: Path
    returncode: int
    log: str

    @property
    def html(self) -> Path:
        return self.root / "html"

    def notebook(self, name: str) -> dict | None:
        """The executed notebook of tutorial ``name`` (e.g. ``03_variational_inference``)."""
        path = self.root / "jupyter_execute" / "tutorials" / f"{name}.ipynb"
        return json.loads(path.read_text()) if path.is_file() else None


@pytest.fixture(scope="session")
def docs_smoke_build(tmp_path_factory) -> DocsBuild:
    reason = missing_docs_tools()
    if reason:
        pytest.skip(reason)
    reuse = os.environ.get("PPL_VAE_DOCS_BUILD")
    if reuse:  # a smoke build made by hand (sphinx_command into this folder): look at it again
        built = Path(reuse)
        if not (built / "html" / "index.html").is_file():
            pytest.fail(f"PPL_VAE_DOCS_BUILD={reuse} holds no finished build (html/index.html)")
        return DocsBuild(built, 0, "")
    out = tmp_path_factory.mktemp("docs")
    completed = subprocess.run(sphinx_command(ROOT / "docs", out), cwd=ROOT, env=smoke_environment(),
                               capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    return DocsBuild(out, completed.returncode, completed.stdout + completed.stderr)
