"""MkDocs hook: the command line reference, generated from the typer app (plugins' commands included).

A page containing ``<!-- visret-cli -->`` gets every command's usage, help and options in its place,
so the reference cannot drift from the code.
"""

from __future__ import annotations

MARKER = "<!-- visret-cli -->"


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


def on_page_markdown(markdown: str, **_) -> str:
    return markdown.replace(MARKER, reference()) if MARKER in markdown else markdown
