"""One self-contained HTML page for a comparison: the leaderboard and its pictures, embedded."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from visret.comparison import Comparison, _format
from visret.output_files import write_text


def write_html(comparison: Comparison, out: str | Path, pictures: dict[str, Path] | None = None) -> Path:
    """Write the leaderboard (best per column in bold) and the PNG ``pictures`` (title -> file)."""
    rows, best = comparison.rows(compact=True), comparison.best(compact=True)
    columns = list(rows[0]) if rows else ["extractor"]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            text = html.escape(_format(row[column]))
            cells.append(f"<td><b>{text}</b></td>" if column in best and row[column] == best[column] else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    figures = []
    for title, path in (pictures or {}).items():
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        figures.append(f'<h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">')
    settings = ", ".join(f"{k}={v}" for k, v in comparison.settings.items())
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>visret comparison</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
img{{max-width:100%}}</style></head><body>
<h1>visret comparison ({html.escape(comparison.protocol)})</h1>
<p>{html.escape(settings)}</p>
<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>
{''.join(figures)}
</body></html>
"""
    return write_text(out, page)
