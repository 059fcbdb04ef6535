"""How a leaderboard is printed: report formats, chosen by name (``visret compare --format NAME``).

Built in: ``table`` (a terminal table, the best of each column in green), ``json``, ``markdown``,
``csv`` and ``html`` (a table fragment; ``--html PATH`` writes the full report with pictures). A
plugin adds formats with the hook ``register_report_formats``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from visret.errors import VisretError
from visret.plugins._registry import ExtensionPoint


@dataclass
class LeaderboardView:
    """What a format renders: the comparison (``to_dict``, ``to_csv``, ``to_markdown``), its
    leaderboard, a title, short column names for terminals, and the column counted in bytes."""

    result: Any
    board: Any
    title: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    bytes_column: str | None = None


class ReportFormat:
    """Renders a ``LeaderboardView`` as text for stdout."""

    name: ClassVar[str] = ""

    def render(self, view: LeaderboardView) -> str:
        raise NotImplementedError


REPORT_FORMATS = ExtensionPoint("report format", "register_report_formats", ReportFormat, ("render",), table="report_formats")


def report_format(name: str) -> ReportFormat:
    """The registered format called ``name`` (a one-line error naming the others)."""
    formats = REPORT_FORMATS.classes()
    if name not in formats:
        raise VisretError(f"unknown report format {name!r} (available: {', '.join(sorted(formats))})")
    return formats[name][0]()


def chosen_format(name: str | None, as_json: bool = False, as_csv: bool = False, markdown: bool = False) -> str:
    """The format a command's options ask for (``--json``, ``--csv`` and ``--markdown`` are shortcuts),
    checked before any work."""
    asked = [n for n, flag in (("json", as_json), ("csv", as_csv), ("markdown", markdown)) if flag] + ([name] if name else [])
    if len(set(asked)) > 1:
        raise VisretError(f"choose one output format, not {' and '.join(asked)}")
    chosen = asked[0] if asked else "table"
    report_format(chosen)
    return chosen
