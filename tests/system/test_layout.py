"""The import direction of the package: data -> models -> inference -> training, evaluation -> CLI.

Every module under ``ppl_vae/`` is parsed (not imported) and every import
statement in it counts, also those inside functions; only imports under
``if TYPE_CHECKING:`` are exempt (they never run). Each module belongs to a
layer, and may import only from its own layer or a lower one. The "Layout"
section of ``docs/contributing.md`` draws the same picture.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ppl_vae"

#: Layers from the bottom up; a module may import from its own layer and those below it.
#: ``training`` and ``evaluation`` share a rank but may not import each other.
LAYERS: dict[str, int] = {
    "base": 0,          # errors, validation, rng, devices, threads, safe_files, storage, checkpoint
    "data": 1,          # ppl_vae/data/: loaders, binarization, synthetic sets, corruptions
    "models": 2,        # ppl_vae/models/
    "inference": 3,     # ppl_vae/inference/: ELBOs, importance sampling, MCMC, local q*
    "training": 4,      # ppl_vae/training/: the SVI loop, checkpoints' state, run folders
    "evaluation": 4,    # ppl_vae/evaluation/: diagnostics, comparisons, metrics, plots
    "explorer": 5,      # ppl_vae/explorer.py: the latent-space page, built from the above
    "package": 6,       # ppl_vae/__init__.py: the public names
    "cli": 7,           # ppl_vae/cli.py: argparse -> configs -> library calls
}
SIBLINGS = {frozenset({"training", "evaluation"})}

#: Top-level modules that are not in a layer of their own name.
TOP_LEVEL = {"__init__": "package", "explorer": "explorer", "cli": "cli"}

#: Arrows that run the wrong way today, each with the reason it is still here.
ALLOWED = {
    # MCMCResult.to_inference_data(), a convenience method, converts the draws with the one
    # ArviZ module (evaluation/diagnostics.py); the import runs only when the method is called.
    ("ppl_vae.inference.mcmc.api", "ppl_vae.evaluation.diagnostics"),
}

#: Outside the package: only the CLI may import its console entry point; nothing imports
#: the tutorials, benchmarks or tests.
OUTSIDE = {"ppl_vae_console": {"ppl_vae.cli"}, "tutorials": set(), "benchmarks": set(),
           "tests": set(), "helpers": set()}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    if parts[1] in LAYERS and parts[1] not in TOP_LEVEL:
        return parts[1]
    return TOP_LEVEL.get(parts[1], "base")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(path: Path, text: str | None = None) -> list[tuple[str, int]]:
    """Every module an import statement of ``path`` (or ``text``, as if at ``path``) names, with its line.

    Imports under ``if TYPE_CHECKING:`` are skipped; relative imports are resolved.
    """
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((base, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text() if text is None else text, str(path)))
    return found


def wrong_way(source: str, target: str) -> str | None:
    """Why ``source`` may not import ``target``; None if it may."""
    top = target.split(".")[0]
    if top in OUTSIDE:
        return None if source in OUTSIDE[top] else f"{target} is outside the library"
    if top != "ppl_vae" or (source, target) in ALLOWED:
        return None
    mine, theirs = layer(source), layer(target)
    if frozenset({mine, theirs}) in SIBLINGS:
        return f"{mine} and {theirs} do not import each other"
    if LAYERS[theirs] > LAYERS[mine]:
        return f"{mine} (layer {LAYERS[mine]}) imports {theirs} (layer {LAYERS[theirs]})"
    return None


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_is_parsed():
    names = {module_name(path) for path in MODULES}
    assert {"ppl_vae.cli", "ppl_vae.data.loaders", "ppl_vae.models.vae",
            "ppl_vae.inference.mcmc.batched_nuts", "ppl_vae.training.loop",
            "ppl_vae.evaluation.diagnostics"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda path: module_name(path))
def test_imports_run_one_way(path):
    source = module_name(path)
    problems = [f"line {line}: {source} -> {target}: {reason}" for target, line in imports(path)
                if (reason := wrong_way(source, target))]
    assert not problems, "\n".join(problems)


def test_every_allowed_exception_is_still_needed():
    """An entry of ALLOWED that no module uses any more is removed, so the list stays true."""
    used = {(module_name(path), target) for path in MODULES for target, _ in imports(path)}
    assert not ALLOWED - used, ALLOWED - used


@pytest.mark.parametrize(("source", "target", "fails"), [
    ("ppl_vae.models.vae", "ppl_vae.inference.importance", True),
    ("ppl_vae.models.vae", "ppl_vae.training", True),
    ("ppl_vae.models.mixture", "ppl_vae.evaluation.diagnostics", True),
    ("ppl_vae.data.loaders", "ppl_vae.models", True),
    ("ppl_vae.data.synthetic", "ppl_vae.inference", True),
    ("ppl_vae.inference.importance", "ppl_vae.evaluation", True),
    ("ppl_vae.training.loop", "ppl_vae.evaluation.plots", True),
    ("ppl_vae.evaluation.compare", "ppl_vae.training", True),
    ("ppl_vae.explorer", "ppl_vae.cli", True),
    ("ppl_vae.checkpoint", "ppl_vae.data", True),
    ("ppl_vae.checkpoint", "ppl_vae.training.run_folder", True),
    ("ppl_vae.storage", "ppl_vae.training", True),
    ("ppl_vae.training.loop", "ppl_vae_console", True),
    ("ppl_vae.inference.mcmc.api", "benchmarks.peers", True),
    ("ppl_vae.evaluation.compare", "ppl_vae.inference.mcmc", False),
    ("ppl_vae.inference.importance", "ppl_vae.models.base", False),
    ("ppl_vae.models.vae", "ppl_vae.validation", False),
    ("ppl_vae.checkpoint", "ppl_vae.storage", False),
    ("ppl_vae.cli", "ppl_vae_console", False),
    ("ppl_vae", "ppl_vae.training", False),
])
def test_the_rule_itself(source, target, fails):
    """The checker catches a wrong arrow and passes a right one (a check that cannot fail proves nothing)."""
    assert (wrong_way(source, target) is not None) == fails


def test_imports_in_functions_count_and_type_checking_blocks_do_not():
    code = ("from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from ppl_vae.inference import elbo\n"
            "def f():\n    from ppl_vae.training import train\n"
            "from . import base\n")
    found = imports(PACKAGE / "models" / "probe.py", code)
    assert [target for target, _ in found] == ["typing", "ppl_vae.training", "ppl_vae.models"]


def test_the_documented_layout_names_every_module():
    """The Layout section of docs/contributing.md stays true: every module file of the package
    appears in it."""
    page = (PACKAGE.parent / "docs" / "contributing.md").read_text()
    section = page.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    missing = [str(path.relative_to(PACKAGE)) for path in MODULES
               if path.name != "__init__.py" and path.name not in section]
    assert not missing, f"the Layout section of docs/contributing.md does not mention {missing}"
    assert all(f"{folder}/" in section for folder in ("data", "models", "inference", "mcmc",
                                                       "training", "evaluation"))
