"""The built-in report formats, registered through the same hook as third-party ones."""

from __future__ import annotations

import io
import json
import shutil
import sys
from typing import ClassVar

from visret.plugins.hookspecs import hookimpl
from visret.reports.formats import LeaderboardView, ReportFormat


class TableFormat(ReportFormat):
    """A terminal table, the best value of each column in green (colours only on a terminal)."""

    name: ClassVar[str] = "table"

    def render(self, view: LeaderboardView) -> str:
        from rich.console import Console
        from rich.table import Table

        from visret.cli.console import cell, shown

        board = view.board
        best = board.best()
        table = Table(*[view.headers.get(c, c) for c in board.columns], title=shown(view.title), title_justify="left")
        table.columns[0].overflow = "fold"
        for row in board.rows:
            cells = {c: shown(cell(v / 2**20 if c == view.bytes_column and v else v)) for c, v in row.items()}
            table.add_row(*[f"[bold green]{cells[c]}[/]" if board.is_best(row, c, best) else cells[c] for c in row])
        buffer = io.StringIO()
        terminal = sys.stdout.isatty()
        Console(file=buffer, force_terminal=terminal, width=shutil.get_terminal_size().columns if terminal else 160).print(table)
        return buffer.getvalue()


class JsonFormat(ReportFormat):
    """Everything the comparison measured, as JSON."""

    name: ClassVar[str] = "json"

    def render(self, view: LeaderboardView) -> str:
        return json.dumps(view.result.to_dict(), indent=2) + "\n"


class MarkdownFormat(ReportFormat):
    """A Markdown table."""

    name: ClassVar[str] = "markdown"

    def render(self, view: LeaderboardView) -> str:
        return view.result.to_markdown() + "\n"


class CsvFormat(ReportFormat):
    """CSV, one row per entry of the leaderboard."""

    name: ClassVar[str] = "csv"

    def render(self, view: LeaderboardView) -> str:
        return view.result.to_csv()


class HtmlFormat(ReportFormat):
    """An HTML table (a fragment to paste into a page)."""

    name: ClassVar[str] = "html"

    def render(self, view: LeaderboardView) -> str:
        return view.board.to_html() + "\n"


@hookimpl
def register_report_formats(register):
    for cls in (TableFormat, JsonFormat, MarkdownFormat, CsvFormat, HtmlFormat):
        register(cls)
