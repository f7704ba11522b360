"""Every tutorial runs end to end in smoke mode, so none can be forgotten or left broken.

Where the docs tools are installed (``.[dev]``, as in CI) the tutorials run
once, as notebooks, in the smoke build of the documentation site
(``docs_smoke_build``, tests/_docs.py), and each test here reads its executed
notebook; elsewhere each script runs on its own.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _docs import missing_docs_tools, smoke_environment

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))


def test_there_are_tutorials():
    assert TUTORIALS, "no tutorials/NN_*.py found"


def _outputs(notebook: dict) -> tuple[list[dict], str]:
    outputs = [output for cell in notebook["cells"] if cell["cell_type"] == "code"
               for output in cell.get("outputs", [])]
    stdout = "".join("".join(output.get("text", "")) for output in outputs
                     if output["output_type"] == "stream" and output.get("name") == "stdout")
    return outputs, stdout


@pytest.mark.parametrize("script", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs_in_smoke_mode(script, request):
    if missing_docs_tools() is None:
        build = request.getfixturevalue("docs_smoke_build")
        notebook = build.notebook(script.stem)
        assert notebook is not None, f"the docs build did not execute {script.name}:\n{build.log[-3000:]}"
        code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
        assert all(cell.get("execution_count") for cell in code), "a cell did not run"
        outputs, stdout = _outputs(notebook)
        errors = [output for output in outputs if output["output_type"] == "error"]
        assert not errors, "\n".join(errors[0].get("traceback", []))[-3000:]
        assert "wrote" in stdout
        return
    completed = subprocess.run([sys.executable, str(script)], env=smoke_environment(),
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "wrote" in completed.stdout
