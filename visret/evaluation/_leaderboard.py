"""A leaderboard: rows of one comparison, the best value of each column, and its text forms.

Retrieval comparisons (extractors) and classification comparisons (pipelines) print the same way:
a Markdown table with the best of each column in bold, CSV, and the table of the HTML report.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any


def format_value(value: Any, digits: int = 4, whole_above: float = 1000) -> str:
    """A cell's text: ``yes`` or nothing for flags, floats to ``digits`` places (whole numbers from
    ``whole_above`` up), nothing for None."""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < whole_above else f"{value:.0f}"
    return "" if value is None else str(value)


@dataclass
class Leaderboard:
    """``rows`` share their columns; the first column names the row; ``lower_is_better`` columns
    are best at their minimum, the other numeric ones at their maximum."""

    rows: list[dict[str, Any]]
    lower_is_better: set[str] = field(default_factory=set)

    @property
    def columns(self) -> list[str]:
        return list(self.rows[0]) if self.rows else []

    def best(self) -> dict[str, float]:
        """For each numeric column, the best value (ties: every row holding it is best)."""
        best = {}
        for column in self.columns[1:]:
            values = [row[column] for row in self.rows if isinstance(row[column], (int, float)) and not isinstance(row[column], bool)]
            if values:
                best[column] = min(values) if column in self.lower_is_better else max(values)
        return best

    def is_best(self, row: dict[str, Any], column: str, best: dict[str, float] | None = None) -> bool:
        best = self.best() if best is None else best
        return column in best and row[column] == best[column] and not isinstance(row[column], bool)

    def to_markdown(self) -> str:
        best, columns = self.best(), self.columns
        lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|"]
        for row in self.rows:
            cells = [format_value(row[c]) for c in columns]
            lines.append("| " + " | ".join(f"**{t}**" if self.is_best(row, c, best) else t for t, c in zip(cells, columns)) + " |")
        return "\n".join(lines)

    def to_html(self) -> str:
        """The table alone, best of each column in bold, every cell escaped."""
        import html

        best, columns = self.best(), self.columns
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        rows = []
        for row in self.rows:
            cells = []
            for column in columns:
                text = html.escape(format_value(row[column]))
                cells.append(f"<td><b>{text}</b></td>" if self.is_best(row, column, best) else f"<td>{text}</td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns)
        writer.writeheader()
        writer.writerows(self.rows)
        return buffer.getvalue()
