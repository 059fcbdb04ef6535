"""Printing a benchmark's results as JSON, and keeping a copy when asked."""

from __future__ import annotations

import json
from pathlib import Path


def emit(results: dict, out: Path | None) -> None:
    text = json.dumps(results, indent=2)
    print(text)
    if out is not None:
        out.write_text(text)
