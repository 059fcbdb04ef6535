"""The ``visret report`` command: one page from saved pipelines, models and indexes and a labelled test folder."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from visret.cli._options import AsJson, Workers
from visret.cli.console import ProgressBar, err, out, pictures_written, print_json, shown
from visret.errors import VisretError


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_command(
        test_dir: Annotated[Path, typer.Argument(help="Labelled test images: a folder with one sub-folder per class, or an image list.")],
        model: Annotated[Optional[list[Path]], typer.Option("--model", help="A saved pipeline folder or .keras model (a checkpoint too); repeatable.")] = None,
        index: Annotated[Optional[list[Path]], typer.Option("--index", help="An index to score by retrieval with the test images as queries; repeatable.")] = None,
        tta: Annotated[int, typer.Option(min=0, help="Also test every model with N test-time views, as rows of their own [default: 0].")] = 0,
        show: Annotated[int, typer.Option(min=0, help="Test images drawn with the best model's predictions (seeded, classes in turn) [default: 12].")] = 12,
        image: Annotated[Optional[list[Path]], typer.Option("--image", help="A test image to draw instead (repeatable).")] = None,
        html: Annotated[Optional[Path], typer.Option(help="Write the report as one HTML page (tables and pictures) [default: report.html].")] = None,
        markdown: Annotated[Optional[Path], typer.Option(help="Also write the tables as Markdown here.")] = None,
        seed: Annotated[int, typer.Option(help="Seed of the images drawn [default: 0].")] = 0,
        workers: Workers = None,
        as_json: AsJson = False,
    ) -> None:
        """One report from work already done: every saved model tested on the same labelled folder (TTA
        as rows), every index scored by retrieval, confusion matrices, training curves, chosen images."""
        from visret.reports.saved_work import build_report

        target = html or Path("report.html")
        if target.exists() and target.is_dir():
            raise VisretError(f"{target} is a folder; --html names the page to write")
        with ProgressBar("reporting") as bar, tempfile.TemporaryDirectory(prefix="visret-report-") as scratch:
            report = build_report(test_dir, model or [], index or [], tta=tta, show=show, images=image or [],
                                  pictures_dir=scratch, workers=workers, seed=seed, progress=bar.stages)
            written = [report.write_html(target)]
        if markdown is not None:
            markdown.write_text(report.to_markdown())
            written.append(markdown)
        if as_json:
            print_json(report.to_dict())
        else:
            out.print(report.to_markdown(), markup=False, highlight=False, soft_wrap=True)
        pictures_written(written)
        best = max(report.classification, key=lambda row: row["accuracy"] or 0.0, default=None)
        summary = f"best model {best['model']} ({best['accuracy']:.4f})" if best else "no model"
        if report.retrieval:
            top = max(report.retrieval, key=lambda row: row["mAP"])
            summary += f"; best index {top['index']} (mAP {top['mAP']:.4f})"
        err.print(shown(f"report of {len(report.classification)} model rows and {len(report.retrieval)} indexes: {summary}"), soft_wrap=True)
