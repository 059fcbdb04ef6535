"""One self-contained HTML page for a comparison or a report: its tables and pictures, embedded."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Sequence

from visret.evaluation._leaderboard import Leaderboard
from visret.reports._output_files import write_text


def write_html(out: str | Path, title: str, subtitle: str, leaderboard: Leaderboard, pictures: dict[str, Path] | None = None) -> Path:
    """Write the leaderboard (best per column in bold) and the PNG ``pictures`` (title -> file)."""
    return write_sections(out, title, subtitle, [("", leaderboard)], pictures)


def write_sections(out: str | Path, title: str, subtitle: str, sections: Sequence[tuple[str, Leaderboard]],
                   pictures: dict[str, Path] | None = None) -> Path:
    """Write one page: each (heading, leaderboard) section, then the PNG ``pictures`` (title -> file)."""
    tables = "".join((f"<h2>{html.escape(heading)}</h2>" if heading else "") + board.to_html() for heading, board in sections)
    figures = []
    for caption, path in (pictures or {}).items():
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        figures.append(f'<h2>{html.escape(caption)}</h2><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">')
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
img{{max-width:100%}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(subtitle)}</p>
{tables}
{''.join(figures)}
</body></html>
"""
    return write_text(out, page)
