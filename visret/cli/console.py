"""Terminal helpers shared by visret's commands and plugin commands: one-line errors, JSON, progress
bars on stderr, parameters from ``--param``, sizes like ``512M``, user text made safe for rich."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from visret.errors import VisretError

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def fail(message: str) -> None:
    from visret.images._decode import display_path

    err.print(f"error: {display_path(message)}", markup=False, soft_wrap=True)
    raise typer.Exit(1) from None


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def parse_cli_params(pairs: list[str] | None) -> dict[str, Any]:
    from visret.features.params import parse_params

    try:
        return parse_params(pairs or [])
    except ValueError as exc:
        raise VisretError(str(exc)) from None


def memory_size(text: str | None) -> int | None:
    """``512M``, ``2G``, ``1.5G`` or a number of bytes."""
    if text is None:
        return None
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    number, unit = (text[:-1], text[-1].upper()) if text[-1:].upper() in units else (text, "")
    try:
        size = int(float(number) * units.get(unit, 1))
    except ValueError:
        size = 0
    if size <= 0:
        raise VisretError(f"a size must be positive, like 512M or 2G, got {text!r}")
    return size


class ProgressBar:
    """Progress on stderr; ``update(done, total)`` is the progress callback. On a terminal, a transient rich
    bar; elsewhere (a log file, a pipe, a scheduler's output) nobody sees a bar, so plain lines: one per
    step of a short count (epochs, pipelines), one every ``LINE_EVERY_S`` for a long one (images), each
    with the time spent and an estimate of what is left, once a stage has run ``QUIET_FIRST_S``."""

    QUIET_FIRST_S, LINE_EVERY_S, SHORT_COUNT = 2.0, 10.0, 100

    def __init__(self, label: str):
        self.label = label
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=err, transient=True, disable=not err.is_terminal,
        )
        self.lines = not err.is_terminal
        self._stage_start = self._last_line = time.monotonic()
        self._last_shown: tuple[int, int | None] | None = None

    def __enter__(self):
        self.progress.__enter__()
        self.task = self.progress.add_task(self.label, total=None)
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def update(self, done: int, total: int) -> None:
        self.progress.update(self.task, completed=done, total=total)
        if self.lines:
            self._line(done, total)

    def stages(self, stage: str, done: int, total: int) -> None:
        """A ``progress(stage, done, total)`` callback: the bar's label follows the stage."""
        if stage != self.label:
            self.label = stage
            self._stage_start = time.monotonic()
            self._last_shown = None
            self.progress.update(self.task, description=stage)
        self.update(done, total)

    def _line(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        elapsed = now - self._stage_start
        finished = total is not None and done >= total
        due = finished or (total is not None and total <= self.SHORT_COUNT) or now - self._last_line >= self.LINE_EVERY_S
        if done <= 0 or elapsed < self.QUIET_FIRST_S or not due or self._last_shown == (done, total):
            return
        self._last_line, self._last_shown = now, (done, total)
        count = f"{done}/{total} ({100 * done / total:.0f} %)" if total else str(done)
        left = "" if finished or not total else f", about {_duration(elapsed / done * (total - done))} left"
        err.print(f"{self.label}: {count}, {_duration(elapsed)}{left}", markup=False, highlight=False, soft_wrap=True)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def read_limits(max_pixels: int | None, max_bytes: str | None) -> dict[str, int]:
    from visret.images._decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS

    return {"max_pixels": max_pixels or DEFAULT_MAX_PIXELS, "max_bytes": memory_size(max_bytes) or DEFAULT_MAX_BYTES}


def shown(text: Any) -> str:
    """User text (paths, labels, names) for rich output: markup escaped, control characters too."""
    from rich.markup import escape

    from visret.images._decode import display_path

    return escape(display_path(text))


def pictures_written(paths: list[Path]) -> None:
    for path in paths:
        err.print(f"wrote {shown(path)}")


def print_leaderboard(result, board, report_format: str, title: str, headers: dict[str, str], mib: str) -> None:
    """A comparison on stdout in a registered report format (``visret.reports.formats``); ``headers``
    shorten column names in the terminal table and column ``mib`` is shown there in MiB."""
    from visret.reports.formats import LeaderboardView, report_format as format_called

    text = format_called(report_format).render(LeaderboardView(result, board, title, headers, mib))
    sys.stdout.write(text)
    sys.stdout.flush()


def cell(value) -> str:
    """A table cell in a terminal: three decimals, whole numbers from 100 up."""
    from visret.evaluation._leaderboard import format_value

    return format_value(value, digits=3, whole_above=100)
