"""Comparing extractors on one labelled folder under one protocol: a leaderboard.

Every extractor sees the same split (or folds). Extractors that learn (codebooks, PCA) are
fitted on the training part of each split or fold only, never on its queries.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from visret.dataset import ImageRecord, scan_folder
from visret.errors import VisretError
from visret.evaluation import KnnReport, _check, _Scores, peak_rss_mib, query_latency_ms, score_features
from visret.extraction import extract_records
from visret.indexing import fit_extractor
from visret.images import DEFAULT_MAX_PIXELS
from visret.plugins import extractor_from_spec
from visret.protocols import PROTOCOLS, stratified_folds, stratified_test_mask

#: Leaderboard columns where lower is better.
LOWER_IS_BETTER = {"query_ms_p50", "query_ms_p95", "index_bytes", "peak_rss_mib"}


def spec_name(spec: str | dict[str, Any]) -> str:
    """A row name for an extractor spec: its name, with parameters when given."""
    if isinstance(spec, str):
        return spec
    params = spec.get("params") or {}
    return spec["name"] + (json.dumps(params, separators=(",", ":"), sort_keys=True) if params else "")


@dataclass
class Comparison:
    """One report per extractor, under the same protocol and split."""

    protocol: str
    settings: dict[str, Any]
    reports: dict[str, KnnReport] = field(default_factory=dict)

    def rows(self, compact: bool = False) -> list[dict[str, Any]]:
        """One row per extractor; ``compact`` keeps accuracy, mAP, P@k, the largest cut-off's
        recall and nDCG, and speed (the full set has every cut-off of every metric)."""
        rows = []
        for name, report in self.reports.items():
            metrics = report.summary()
            if compact:
                last = max(report.precision_at)
                keep = {"accuracy", "balanced_accuracy", "map", f"R@{last}", f"nDCG@{last}"}
                metrics = {key: value for key, value in metrics.items() if key in keep or key.startswith("P@")}
            cost = {key: report.cost.get(key) for key in ("extraction_images_per_s", "query_ms_p50", "index_bytes")}
            rows.append({"extractor": name, **metrics, **cost})
        return rows

    def best(self, compact: bool = False) -> dict[str, float]:
        """For each numeric column, the best value (ties: every row holding it is best)."""
        rows, best = self.rows(compact), {}
        for column in rows[0] if rows else []:
            values = [row[column] for row in rows if isinstance(row[column], (int, float))]
            if values and column != "extractor":
                best[column] = min(values) if column in LOWER_IS_BETTER else max(values)
        return best

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "settings": self.settings,
            "leaderboard": self.rows(),
            "reports": {name: report.to_dict() for name, report in self.reports.items()},
        }

    def to_markdown(self, compact: bool = True) -> str:
        rows, best = self.rows(compact), self.best(compact)
        columns = list(rows[0]) if rows else ["extractor"]
        lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" if c == "extractor" else "---:" for c in columns) + "|"]
        for row in rows:
            cells = []
            for column in columns:
                text = _format(row[column])
                cells.append(f"**{text}**" if column in best and row[column] == best[column] else text)
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def to_csv(self) -> str:
        rows = self.rows()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["extractor"])
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.0f}"
    return "" if value is None else str(value)


def _records(data: Path, protocol: str) -> tuple[list[ImageRecord], np.ndarray | None]:
    """All labelled records, and for ``holdout`` which of them are queries (``data/test``)."""
    if protocol == "holdout":
        if not (data / "train").is_dir() or not (data / "test").is_dir():
            raise VisretError(f"holdout needs labelled images in {data}/train and {data}/test")
        train = [r for r in scan_folder(data / "train") if r.label is not None]
        test = [r for r in scan_folder(data / "test") if r.label is not None]
        if not train or not test:
            raise VisretError(f"holdout needs labelled images in {data}/train and {data}/test")
        return train + test, np.array([False] * len(train) + [True] * len(test))
    records = [r for r in scan_folder(data) if r.label is not None]
    if len(records) < 2:
        raise VisretError(f"{data} needs labelled images in class sub-folders to compare extractors")
    return records, None


def compare(
    data: str | Path,
    extractors: Sequence[str | dict[str, Any]],
    *,
    protocol: str = "split",
    test_size: float = 0.2,
    folds: int = 5,
    seed: int = 0,
    k: int = 5,
    at: Sequence[int] = (1, 5, 10),
    weights: str = "uniform",
    metric: str = "l2",
    batch_size: int = 32,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Comparison:
    """Evaluate each extractor on ``data`` under one protocol (``holdout``: ``data/train`` and
    ``data/test``; ``split``: a stratified split; ``kfold``; ``loo``: leave-one-out)."""
    if protocol not in PROTOCOLS:
        raise VisretError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if not extractors:
        raise VisretError("name at least one extractor to compare")
    _check(k, weights, at)
    data = Path(data)
    records, is_test = _records(data, protocol)
    labels = np.array([r.label for r in records])
    try:
        if protocol == "split":
            is_test = stratified_test_mask(labels, test_size, seed)
        fold = stratified_folds(labels, folds, seed) if protocol == "kfold" else None
    except ValueError as exc:
        raise VisretError(str(exc)) from None
    groups = [fold == f for f in range(folds)] if protocol == "kfold" else [is_test] if is_test is not None else [None]
    for queries in groups:
        if queries is not None and (not queries.any() or queries.all()):
            raise VisretError(
                f"the {protocol} protocol leaves a part without queries or without a collection on {len(records)} images; "
                "give each class at least two images, or use --protocol loo"
            )
    created = [(spec_name(spec), extractor_from_spec(spec)) for spec in extractors]  # all names checked first
    comparison = Comparison(
        protocol,
        {"images": len(records), "test_size": test_size, "folds": folds, "seed": seed, "k": k, "at": list(at),
         "weights": weights, "metric": metric},
    )
    for (name, extractor), spec in zip(created, extractors):
        comparison.reports[name] = _evaluate_extractor(
            extractor, spec, records, labels, groups, protocol, k, at, weights, metric, batch_size, workers, max_pixels
        )
    return comparison


def _evaluate_extractor(extractor, spec, records, labels, groups, protocol, k, at, weights, metric, batch_size, workers, max_pixels):
    classes = np.array(sorted(set(labels.tolist())))
    scores = _Scores(classes, k, weights, at)
    extraction_seconds, extracted_images, skipped = 0.0, 0, set()
    shared = None
    for queries in groups:
        if extractor.requires_fit or shared is None:
            current = extractor_from_spec(spec) if extractor.requires_fit else extractor
            if current.requires_fit:  # fitted on the collection side only: queries never leak in
                training = records if queries is None else [r for r, q in zip(records, queries) if not q]
                fit_extractor(current, training, max_pixels)
            start = time.perf_counter()
            extracted = extract_records(current, records, batch_size, workers, max_pixels)
            extraction_seconds += time.perf_counter() - start
            extracted_images += len(records)
            skipped |= {path for path, _ in extracted.skipped}
            position = {r.path: i for i, r in enumerate(records)}
            rows = np.array([position[r.path] for r in extracted.records], dtype=np.int64)
            shared = (extracted.features, rows)
        features, rows = shared
        ok_labels = labels[rows]
        if queries is None:
            search = score_features(scores, features, ok_labels, None, None, metric)
            latency_queries = features
        else:
            is_query = queries[rows]
            search = score_features(scores, features[~is_query], ok_labels[~is_query], features[is_query], ok_labels[is_query], metric)
            latency_queries = features[is_query]
    report = scores.report(at, protocol)
    report.skipped = len(skipped)
    collection_size = len(features) if groups[0] is None else int((~groups[0][rows]).sum())
    report.cost = {
        "extraction_images_per_s": extracted_images / extraction_seconds if extraction_seconds else None,
        **query_latency_ms(search, latency_queries, max(at)),
        "index_bytes": int(collection_size * features.shape[1] * 4),
        "peak_rss_mib": peak_rss_mib(),
    }
    return report
