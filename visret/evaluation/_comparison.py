"""Comparing extractors on one labelled folder under one protocol: a leaderboard.

Every extractor sees the same split (or folds). Extractors that learn (codebooks, PCA, LDA) are
fitted on the collection side of each split or fold only, never on its queries; under
leave-one-out, extractors that learn from labels are refitted in folds (each image embedded by
an extractor fitted without it). Rows of such extractors are marked as supervised.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from visret.images._folders import ImageRecord, scan_folder
from visret.images.loaders import find_images
from visret.errors import VisretError
from visret.evaluation._knn import (
    CROSS_FIT_FOLDS, Counter, KnnReport, Progress, _Scores, check_settings, peak_rss_mib, query_latency_ms, score_features,
)
from visret.embedding._fitting import fold_embeddings
from visret.images._decode import DEFAULT_MAX_PIXELS
from visret.evaluation._leaderboard import Leaderboard
from visret.features._lookup import extractor_from_spec
from visret.evaluation._protocols import PROTOCOLS, stratified_folds, stratified_test_mask
from visret.index._rerank import Reranker

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
            rows.append({"extractor": name, "supervised": report.supervised, **metrics, **cost})
        return rows

    def leaderboard(self, compact: bool = False) -> Leaderboard:
        return Leaderboard(self.rows(compact), LOWER_IS_BETTER)

    def best(self, compact: bool = False) -> dict[str, float]:
        """For each numeric column, the best value (ties: every row holding it is best)."""
        return self.leaderboard(compact).best()

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "settings": self.settings,
            "leaderboard": self.rows(),
            "reports": {name: report.to_dict() for name, report in self.reports.items()},
        }

    def to_markdown(self, compact: bool = True) -> str:
        return self.leaderboard(compact).to_markdown()

    def to_csv(self) -> str:
        return self.leaderboard().to_csv()


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
    records = [r for r in find_images(data) if r.label is not None]
    if len(records) < 2:
        raise VisretError(f"{data} needs labelled images in class sub-folders to compare extractors")
    return records, None


#: The settings each protocol uses, and only those: a report's header never shows one that played no part.
PROTOCOL_SETTINGS = {
    "split": lambda test_size, folds, seed: {"test_size": test_size, "seed": seed},
    "kfold": lambda test_size, folds, seed: {"folds": folds, "seed": seed},
    "loo": lambda test_size, folds, seed: {},
    "holdout": lambda test_size, folds, seed: {},
}


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
    depth: int | None = None,
    rerank: str | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: Progress | None = None,
) -> Comparison:
    """Evaluate each extractor on ``data`` under one protocol (``holdout``: ``data/train`` and
    ``data/test``; ``split``: a stratified split; ``kfold``; ``loo``: leave-one-out).
    ``progress(done, total)`` counts images embedded and queries ranked over all extractors."""
    if protocol not in PROTOCOLS:
        raise VisretError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if not extractors:
        raise VisretError("name at least one extractor to compare")
    check_settings(k, weights, at, depth)
    reranker = Reranker(rerank)
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
    created = [(spec_name(spec), extractor_from_spec(spec), spec) for spec in extractors]  # all names checked first
    comparison = Comparison(
        protocol,
        {"images": len(records), **PROTOCOL_SETTINGS[protocol](test_size, folds, seed), "k": k, "at": list(at),
         "weights": weights, "metric": metric, "depth": depth, "rerank": reranker.spec if reranker else None},
    )
    work = Counter(progress, len(created) * 2 * len(records))
    for name, extractor, spec in created:
        comparison.reports[name] = _evaluate_extractor(
            extractor, spec, records, labels, groups, protocol, k, at, weights, metric, depth, reranker,
            batch_size, workers, max_pixels, seed, work,
        )
    return comparison


def _evaluate_extractor(extractor, spec, records, labels, groups, protocol, k, at, weights, metric, depth, reranker,
                        batch_size, workers, max_pixels, seed, work: Counter):
    classes = np.array(sorted(set(labels.tolist())))
    scores = _Scores(classes, k, weights, at, depth)
    cross_fit = protocol == "loo" and extractor.supervised
    if cross_fit:  # each image embedded by an extractor fitted without it
        fold = stratified_folds(labels, min(CROSS_FIT_FOLDS, len(records)), seed)
        groups = [fold == f for f in range(fold.max() + 1)]
    training = [None if queries is None else ~queries for queries in groups]
    embeddings = fold_embeddings(spec, records, training, batch_size=batch_size, workers=workers, max_pixels=max_pixels,
                                 seed=seed, progress=work.advance)
    seconds, images, skipped, previous = 0.0, 0, set(), None
    for queries, embedded in zip(groups, embeddings):
        if embedded is not previous:  # a shared embedding is counted once
            seconds, images = seconds + embedded.seconds, images + embedded.images
        previous = embedded
        features, rows = embedded.features, embedded.rows
        skipped |= set(range(len(records))) - set(rows.tolist())
        ok_labels = labels[rows]
        if queries is None:
            held = score_features(scores, features, ok_labels, None, None, metric, reranker, work.ranking())
            latency_queries = held.vectors(np.arange(min(len(held), 200)))
        elif cross_fit:
            held = _score_cross_fitted(scores, features, ok_labels, queries[rows], metric, reranker, work)
            latency_queries = held.vectors(np.arange(min(len(held), 200)))
        else:
            is_query = queries[rows]
            held = score_features(scores, features[~is_query], ok_labels[~is_query], features[is_query], ok_labels[is_query],
                                  metric, reranker, work.ranking())
            latency_queries = held.distance.prepare(features[is_query])
    suffix = f" (fitted without the queries, in {len(groups)} folds)" if cross_fit else ""
    report = scores.report(at, protocol + suffix, reranker.spec if reranker else None)
    report.supervised = bool(extractor.supervised)
    report.skipped = len(skipped)
    collection_size = len(features) if groups[0] is None or cross_fit else int((~groups[0][rows]).sum())
    report.cost = {
        "extraction_images_per_s": images / seconds if seconds else None,
        **query_latency_ms(held.search, latency_queries, max(at)),
        "index_bytes": int(collection_size * features.shape[1] * 4),
        "peak_rss_mib": peak_rss_mib(),
    }
    return report


def _score_cross_fitted(scores, features, labels, is_query, metric, reranker, work):
    """Leave-one-out for one fold's embedding: its queries search every other image."""
    from visret.index.distances import get_distance
    from visret.evaluation._knn import _codes, rank_and_score
    from visret.index._search import ArrayCollection

    distance = get_distance(metric)
    held = ArrayCollection(distance.prepare(features), distance)
    codes = _codes(np.asarray(labels, str), scores.classes)
    own = np.flatnonzero(is_query)
    rank_and_score(scores, held, np.append(codes, -1), held.vectors(own), codes[own], own, reranker, work.advance)
    return held
