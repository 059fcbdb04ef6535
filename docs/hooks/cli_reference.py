"""The command line reference, ``docs/cli.md``, generated from the typer app with visret's own plugins.

Run ``.venv/bin/python docs/hooks/cli_reference.py`` after changing a command; ``tests/test_docs.py``
fails while the page in the repository differs from what the code says, so it cannot drift.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "cli.md"
HEADER = ("# Command line reference\n\nEvery command of `visret` with its usage, help and options, generated from the code "
          "(`python docs/hooks/cli_reference.py`); commands that third-party plugins add are listed by `visret --help`.\n\n")
#: The plugins that ship with visret: the reference shows what a fresh install has.
OWN_PLUGINS = "handcrafted,heads,keras,compose"


def _option_row(param) -> str:
    names = ", ".join(f"`{name}`" for name in [*param.opts, *param.secondary_opts])
    help_text = (getattr(param, "help", None) or "").replace("|", "\\|").replace("\n", " ")
    default = getattr(param, "default", None)
    shown = "" if default in (None, False, (), []) or getattr(param, "show_default", True) is False else f" Default: `{default}`."
    return f"| {names} | {help_text}{shown} |"


def _command(name: str, command, parent) -> str:
    context = type(parent)(command, info_name=name, parent=parent)
    lines = [f"## `visret {name}`", "", (command.help or "").strip(), "", "```", command.get_usage(context), "```", ""]
    arguments = [p for p in command.params if p.param_type_name == "argument"]  # typer ships its own click: no isinstance
    options = [p for p in command.params if p.param_type_name == "option" and p.name != "help"]
    if arguments:
        lines += ["| argument | |", "|---|---|"]
        lines += [f"| `{(p.metavar or p.name).upper()}` | {(getattr(p, 'help', None) or '').replace('|', chr(92) + '|')} |" for p in arguments]
        lines.append("")
    if options:
        lines += ["| option | |", "|---|---|", *(_option_row(p) for p in options), ""]
    return "\n".join(lines)


def reference() -> str:
    import typer

    from visret.cli._app import add_plugin_commands, app

    add_plugin_commands()
    group = typer.main.get_command(app)
    root = group.make_context("visret", [], resilient_parsing=True)
    return "\n\n".join(_command(name, group.get_command(root, name), root) for name in group.list_commands(root))


def generated() -> str:
    """The page as the code says it, made in a process that loads visret's own plugins only."""
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import cli_reference; print(cli_reference.HEADER + cli_reference.reference(), end='')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "VISRET_LOAD_PLUGINS": OWN_PLUGINS, "COLUMNS": "100"})
    return done.stdout + "\n"


if __name__ == "__main__":
    PAGE.write_text(generated())
    print(f"wrote {PAGE}")
