"""The command line reference, written from the argparse parsers themselves (``docs/cli_reference.md``).

One section per command of ``ppl-vae``: its description and a table of every
option with its default and help text, exactly as ``ppl-vae COMMAND --help``
knows them, so a new option cannot be missing from the site. The page is
generated each build (git-ignored), like the API pages.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sphinx.application import Sphinx

#: Help texts argparse fills in at print time.
_DEFAULT = "%(default)s"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _option_row(action: argparse.Action) -> str | None:
    if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
        return None
    if action.option_strings:
        names = ", ".join(f"`{name}`" for name in action.option_strings)
        if action.nargs != 0:
            names += f" `{action.metavar or action.dest.upper()}`"
    else:
        names = f"`{action.metavar or action.dest}` (required)"
    default = action.default
    shown = "" if default in (None, argparse.SUPPRESS) or action.nargs == 0 else f"`{default}`"
    if action.choices is not None and not isinstance(action.choices, dict):
        shown += (" " if shown else "") + "one of " + ", ".join(f"`{c}`" for c in action.choices)
    help_text = (action.help or "").replace(_DEFAULT, str(default))
    return f"| {names} | {_cell(shown)} | {_cell(help_text)} |"


def reference_page() -> str:
    from ppl_vae.cli import build_parser

    parser = build_parser()
    lines = ["# Command line reference", "",
             "Every command and option of `ppl-vae`, generated from its argparse parsers when this",
             "site was built (the same text as `ppl-vae COMMAND --help`). Errors are one line with",
             "exit status 2; {doc}`cli` shows the commands at work.", ""]
    commands = next(action for action in parser._actions
                    if isinstance(action, argparse._SubParsersAction))
    for name, command in commands.choices.items():
        lines += [f"## `ppl-vae {name}`", "", _cell(command.description or ""), "",
                  "| option | default | what it does |", "| --- | --- | --- |"]
        lines += [row for row in map(_option_row, command._actions) if row]
        lines.append("")
    return "\n".join(lines)


def write_reference(app: Sphinx) -> None:
    path = Path(app.srcdir) / "cli_reference.md"
    text = reference_page()
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)


def setup(app: Sphinx) -> dict[str, object]:
    app.connect("builder-inited", write_reference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
