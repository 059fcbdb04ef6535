"""One self-contained HTML page of a duplicate report: the distance histogram with its threshold,
then each group's thumbnails (the kept file first), every image embedded."""

from __future__ import annotations

import base64
import html
import io
import tempfile
from pathlib import Path

from visret.duplicates.report import DuplicateReport
from visret.reports._output_files import write_text

#: Groups drawn on the page; the JSON or CSV output lists them all.
MAX_GROUPS = 500
THUMBNAIL = 128


def _thumbnail_uri(path: str) -> str:
    from PIL import Image

    from visret.reports.plots import _thumbnail

    buffer = io.BytesIO()
    Image.fromarray(_thumbnail(path, THUMBNAIL)).save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _histogram_uri(report: DuplicateReport) -> str:
    from visret.reports.plots import save_distance_histogram

    with tempfile.TemporaryDirectory(prefix="visret-page-") as tmp:
        picture = save_distance_histogram(report.nearest, report.threshold, report.distance, Path(tmp) / "histogram.png")
        return "data:image/png;base64," + base64.b64encode(picture.read_bytes()).decode("ascii")


def write_page(report: DuplicateReport, out: str | Path) -> Path:
    from visret.reports.plots import MAX_GROUP_TILES

    sections = []
    for number, group in enumerate(report.groups[:MAX_GROUPS], start=1):
        closest = {path: pair.distance for path, pair in group.closest().items()}
        files, removable = group.ordered(), set(group.removable)
        tiles = []
        for path, role in files[:MAX_GROUP_TILES]:
            role = " ".join(filter(None, (role, f"d={closest.get(path, 0):g}" if path != group.keep else "")))
            tiles.append(
                f'<figure class="{"copy" if path in removable else "keep"}"><img alt="" src="{_thumbnail_uri(path)}">'
                f"<figcaption>{html.escape(role)}<br>{html.escape(path)}</figcaption></figure>"
            )
        more = f"<p>and {len(files) - MAX_GROUP_TILES} more</p>" if len(files) > MAX_GROUP_TILES else ""
        sections.append(f"<h2>group {number}: {group.kind}, {len(files)} files</h2><div>{''.join(tiles)}</div>{more}")
    hidden = f"<p>The first {MAX_GROUPS} of {len(report.groups)} groups are shown; --json or --csv lists them all.</p>" if len(report.groups) > MAX_GROUPS else ""
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>visret duplicates</title>
<style>body{{font-family:sans-serif;margin:2em}}figure{{display:inline-block;width:{THUMBNAIL + 40}px;margin:4px;vertical-align:top}}
figcaption{{font-size:11px;word-break:break-all}}img{{border:4px solid #777}}.keep img{{border-color:#1a9850}}</style></head><body>
<h1>visret duplicates</h1>
<p>{html.escape(report.summary())}</p>
<img alt="distance to the nearest other image" src="{_histogram_uri(report)}" style="border:none;max-width:100%">
{hidden}{''.join(sections)}
</body></html>
"""
    return write_text(out, page)
