"""The ``visret`` command line (typer); ``visret.cli.console`` is what plugin commands print with."""

from visret.cli._app import app, main

__all__ = ["app", "main"]
