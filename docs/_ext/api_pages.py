"""The API reference, written from the package itself: one page per module of ``ppl_vae``.

Every module gets a page with its docstring (most state the mathematics) and
its public members. The packages (``PACKAGES``) also list the names they export in ``__all__``, linked
to where each is documented. A reference to an exported name
(``ppl_vae.inference.elbo``) resolves to the documented one
(``ppl_vae.inference.importance.elbo``) through ``resolve_reexport``, so
docstrings may use either; a name that resolves to nothing fails the build.

The pages are generated into ``docs/api/`` (git-ignored) each build, from
``__all__`` and the modules on disk, so a renamed function cannot leave a stale page.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx

PACKAGE = "ppl_vae"
PACKAGES = ("ppl_vae", "ppl_vae.data", "ppl_vae.models", "ppl_vae.inference", "ppl_vae.inference.mcmc",
            "ppl_vae.training", "ppl_vae.evaluation")
#: Not library API: the command line has its own page (cli.md).
SKIP = {"ppl_vae.cli"}


def modules() -> list[str]:
    root = importlib.import_module(PACKAGE)
    names = [info.name for info in pkgutil.walk_packages(root.__path__, PACKAGE + ".")]
    return sorted(name for name in names if name not in SKIP and name not in PACKAGES
                  and not name.rsplit(".", 1)[-1].startswith("_"))


def canonical(obj: Any) -> str | None:
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if module and qualname and module.startswith(PACKAGE):
        return f"{module}.{qualname}"
    return None


def constants(name: str) -> list[str]:
    """Public UPPER_CASE names a module assigns at top level (autodoc's :members: skips most)."""
    source = inspect.getsource(importlib.import_module(name))
    found = []
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        for target in targets:
            if isinstance(target, ast.Name) and target.id.isupper() and not target.id.startswith("_"):
                found.append(target.id)
    return found


def _autodata(name: str, names: list[str]) -> list[str]:
    return [line for constant in names for line in (f".. autodata:: {name}.{constant}", "")]


def _package_page(name: str) -> str:
    package = importlib.import_module(name)
    defined_here = [public for public in getattr(package, "__all__", [])
                    if canonical(getattr(package, public)) == f"{name}.{public}"]
    lines = [f"# `{name}`", "", "```{eval-rst}", f".. automodule:: {name}", "   :no-members:", ""]
    for public in defined_here:
        kind = "autoclass" if inspect.isclass(getattr(package, public)) else "autofunction"
        lines += [f".. {kind}:: {name}.{public}", ""]
    lines += _autodata(name, constants(name))
    lines += ["```", "", "| name | what it is | documented at |", "| --- | --- | --- |"]
    for public in sorted(getattr(package, "__all__", [])):
        obj = getattr(package, public)
        target = canonical(obj)
        role = "class" if inspect.isclass(obj) else "func" if callable(obj) else "data"
        where = f"{{py:{role}}}`{target}`" if target else f"`{name}.{public}` (a constant)"
        lines.append(f"| `{public}` | {summary(obj)} | {where} |")
    return "\n".join(lines) + "\n"


def summary(obj: Any) -> str:
    """The first sentence of an object's docstring, for a table cell (empty for a constant)."""
    if not (inspect.isclass(obj) or callable(obj) or inspect.ismodule(obj)):
        return ""
    doc = inspect.getdoc(obj) or ""
    first = doc.split("\n\n", 1)[0].replace("\n", " ").strip()
    # an RST role (:func:`~ppl_vae.x.name`) as plain code: the table is Markdown, outside its module
    first = re.sub(r":[\w:]+:`~?([^`]*?)`", lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", first)
    return first.replace("|", "\\|")


def _module_page(name: str) -> str:
    data = constants(name)
    lines = [f"# `{name}`", "", "```{eval-rst}", f".. automodule:: {name}", "   :members:"]
    if data:
        lines.append(f"   :exclude-members: {', '.join(data)}")
    lines += ["", *_autodata(name, data), "```", ""]
    return "\n".join(lines)


def _index_page(names: list[str]) -> str:
    groups = {
        "Packages": list(PACKAGES),
        "Data": [n for n in names if n.startswith("ppl_vae.data.")],
        "Models": [n for n in names if n.startswith("ppl_vae.models.")],
        "Inference": [n for n in names if n.startswith("ppl_vae.inference.")],
        "Training": [n for n in names if n.startswith("ppl_vae.training.")],
        "Evaluation": [n for n in names if n.startswith("ppl_vae.evaluation.")],
        "Checkpoints, files written safely, checks, random numbers, threads and the explorer": [
            n for n in names if n.count(".") == 1],
    }
    lines = ["# API reference", "",
             "Generated from the numpydoc docstrings of every public module. The packages list",
             "the names they export; each name is documented once, in the module that defines it.", ""]
    for title, members in groups.items():
        lines += [f"## {title}", "", "```{toctree}", ":maxdepth: 1", ""]
        lines += [member for member in members] + ["```", ""]
    return "\n".join(lines)


def write_if_changed(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)


def write_api_pages(folder: Path) -> None:
    """Write ``index.md`` and one page per module into ``folder``; remove pages of gone modules."""
    folder.mkdir(parents=True, exist_ok=True)
    names = modules()
    pages = {"index": _index_page(names)}
    pages |= {name: _package_page(name) for name in PACKAGES}
    pages |= {name: _module_page(name) for name in names}
    for stale in folder.glob("*.md"):
        if stale.stem not in pages:
            stale.unlink()
    for name, text in pages.items():
        write_if_changed(folder / f"{name}.md", text)


def _lookup(path: str) -> Any:
    """The object a dotted path names, importing its module; None if there is none."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                obj = getattr(obj, attribute)
        except AttributeError:
            return None
        return obj
    return None


def resolve_reexport(app: Sphinx, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve a reference that Sphinx did not find, to where its object is documented.

    * ``ppl_vae.inference.elbo`` (an export) -> ``ppl_vae.inference.importance.elbo``;
    * ``CheckpointError`` in a module that imported it -> ``ppl_vae.errors.CheckpointError``;
    * ``model`` in a class that inherits it -> the base class's method;
    * else a name that ends exactly one documented ``ppl_vae`` object (``train``).

    Anything else stays unresolved, and ``nitpicky`` turns it into an error.
    """
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target or target.startswith(("torch", "pyro")):
        return None
    module, cls = node.get("py:module"), node.get("py:class")
    candidates = [target] if target.startswith(PACKAGE + ".") else [
        ".".join(filter(None, (module, cls, target))), ".".join(filter(None, (module, target)))]
    domain = env.get_domain("py")
    for candidate in candidates:
        home = canonical(_lookup(candidate)) if candidate.startswith(PACKAGE) else None
        if home and home != target:
            found = domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], home,
                                        node, contnode)
            if found is not None:
                return found
    matches = [name for name, _ in domain.find_obj(env, None, None, target.rsplit(".", 1)[-1]
                                                   if "." not in target else target, None, 1)
               if name.startswith(PACKAGE + ".")]
    if len(matches) == 1:
        return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], matches[0],
                                   node, contnode)
    return None


def setup(app: Sphinx) -> dict[str, object]:
    app.connect("missing-reference", resolve_reexport)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
