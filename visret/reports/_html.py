"""One self-contained HTML page for a comparison: the leaderboard and its pictures, embedded."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from visret.evaluation._leaderboard import Leaderboard
from visret.reports._output_files import write_text


def write_html(out: str | Path, title: str, subtitle: str, leaderboard: Leaderboard, pictures: dict[str, Path] | None = None) -> Path:
    """Write the leaderboard (best per column in bold) and the PNG ``pictures`` (title -> file)."""
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
{leaderboard.to_html()}
{''.join(figures)}
</body></html>
"""
    return write_text(out, page)
