"""Report formats: the built-ins behind ``visret compare``'s output options, and a plugin's own."""

from __future__ import annotations

import json

import pytest

from visret import hookimpl
from visret.reports.formats import LeaderboardView, ReportFormat


class TsvFormat(ReportFormat):
    """Tab-separated values."""

    name = "tsv"

    def render(self, view: LeaderboardView) -> str:
        board = view.board
        lines = ["\t".join(board.columns)] + ["\t".join(str(row[c]) for c in board.columns) for row in board.rows]
        return "\n".join(lines) + "\n"


class TsvPlugin:
    @hookimpl
    def register_report_formats(self, register):
        register(TsvFormat)


COMPARE = ("compare", "--extractors", "pixels,color-moments", "--workers", "1")


def test_every_builtin_format_prints_the_same_leaderboard(digits, cli):
    outputs = {fmt: cli(*COMPARE, str(digits / "train"), "--format", fmt) for fmt in ("table", "json", "markdown", "csv", "html")}
    assert all(r.exit_code == 0 for r in outputs.values()), {k: r.output for k, r in outputs.items()}
    data = json.loads(outputs["json"].stdout)
    assert {row["extractor"] for row in data["leaderboard"]} == {"pixels", "color-moments"}
    assert outputs["markdown"].stdout.startswith("|") and outputs["html"].stdout.startswith("<table")
    assert outputs["csv"].stdout.splitlines()[0].startswith("extractor,")
    assert "pixels" in outputs["table"].stdout and "color-moments" in outputs["table"].stdout
    shortcut = cli(*COMPARE, str(digits / "train"), "--csv")
    quality = lambda text: [line.split(",")[:6] for line in text.splitlines()]  # noqa: E731 (timings differ run to run)
    assert quality(shortcut.stdout) == quality(outputs["csv"].stdout)


def test_a_plugin_format_is_used_by_name(register_plugin, digits, cli):
    register_plugin(TsvPlugin(), "tsv-format")
    result = cli(*COMPARE, str(digits / "train"), "--format", "tsv")
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.strip().splitlines()
    assert header.split("\t")[0] == "extractor" and len(rows) == 2


@pytest.mark.parametrize("args, message", [
    (("--format", "yaml"), "unknown report format 'yaml' (available: csv, html, json, markdown, table)"),
    (("--json", "--format", "csv"), "choose one output format, not json and csv"),
])
def test_a_bad_format_is_one_line_before_any_work(digits, cli, args, message):
    result = cli(*COMPARE, str(digits / "train"), *args)
    assert result.exit_code == 1 and message in result.output
    assert "comparing" not in result.output
