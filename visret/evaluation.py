"""k-NN evaluation of an index against a labelled test folder: accuracy and retrieval quality."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from visret import vectors
from visret.dataset import scan_folder
from visret.errors import VisretError
from visret.extraction import extract_records
from visret.extractor import FeatureExtractor
from visret.index import Index, build_index, open_index
from visret.knn import WEIGHTINGS, encode_labels, vote
from visret.metrics import average_precision, confusion_matrix, per_class_scores, precision_at_k

log = logging.getLogger("visret")
#: Cap on the ranked-distance block held at once (queries x collection), in matrix cells.
RANKING_BLOCK_CELLS = 1 << 24


@dataclass
class KnnReport:
    """What ``evaluate_knn`` measured; ``to_dict`` gives the JSON form.

    ``accuracy`` and the confusion matrix come from the k-NN vote; ``map`` is over the full
    ranking of the collection (relevant = same class); ``precision_at_k`` is at ``k`` and
    ``precision_at`` at each requested cut-off.
    """

    k: int
    n_queries: int
    accuracy: float
    map: float
    precision_at_k: float
    precision_at: dict[int, float]
    classes: list[str]
    confusion_matrix: list[list[int]]
    per_class: dict[str, dict[str, Any]]
    skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(k: int, weights: str, at: Sequence[int]) -> None:
    if k < 1 or any(c < 1 for c in at):
        raise VisretError(f"k and cut-offs must be at least 1, got k={k}, at={list(at)}")
    if weights not in WEIGHTINGS:
        raise VisretError(f"weights must be one of {', '.join(WEIGHTINGS)}, got {weights!r}")


def evaluate_knn(
    test: str | Path,
    index: Index | str | Path | None = None,
    *,
    train: str | Path | None = None,
    extractor: str | FeatureExtractor = "color-hist",
    params: dict[str, Any] | None = None,
    k: int = 5,
    weights: str = "uniform",
    metric: str = "l2",
    at: Sequence[int] = (1, 5, 10),
    batch_size: int = 32,
    workers: int | None = None,
) -> KnnReport:
    """Classify every labelled image of ``test`` by k-NN over ``index`` and rank the whole index.

    Pass an index (object or path), or ``train`` (a labelled folder) with an ``extractor`` to
    build a temporary one.
    """
    _check(k, weights, at)
    if train is not None:
        if index is not None:
            raise VisretError("pass either an index or a training folder, not both")
        with tempfile.TemporaryDirectory(prefix="visret-eval-") as tmp:
            built = build_index(train, extractor, Path(tmp) / "index", metric, params, batch_size, workers)
            with built:
                return _evaluate(built, test, k, weights, at, batch_size, workers)
    opened = index if isinstance(index, Index) else open_index(index)
    return _evaluate(opened, test, k, weights, at, batch_size, workers)


def evaluate_features(
    collection: np.ndarray,
    collection_labels: Sequence[str],
    queries: np.ndarray,
    query_labels: Sequence[str],
    *,
    k: int = 5,
    weights: str = "uniform",
    metric: str = "l2",
    at: Sequence[int] = (1, 5, 10),
) -> KnnReport:
    """The same report from embeddings already computed (e.g. to compare or tune features)."""
    _check(k, weights, at)
    faiss_index = vectors.new_index(collection.shape[1], metric)
    ids = np.arange(1, len(collection) + 1)
    vectors.add(faiss_index, collection, ids, metric)
    return score_rankings(
        lambda block, n: vectors.search(faiss_index, block, n, metric),
        ids, np.asarray(collection_labels, dtype=str), np.asarray(queries, np.float32),
        np.asarray(query_labels, dtype=str), k, weights, at,
    )


def _evaluate(index: Index, test, k: int, weights: str, at, batch_size: int, workers: int | None) -> KnnReport:
    if not len(index.classes):
        raise VisretError(f"index at {index.path} has no labels; build it from an ImageFolder layout")
    records = [r for r in scan_folder(test) if r.label is not None]
    if not records:
        raise VisretError(f"no labelled images in {test}: put each class in its own sub-folder")
    extracted = extract_records(index.extractor, records, batch_size, workers)
    if not extracted.records:
        raise VisretError(f"none of the images in {test} could be read")
    true = np.array([r.label for r in extracted.records], dtype=str)
    ids, labels = index.labelled_ids()
    report = score_rankings(index.search, ids, labels, extracted.features, true, k, weights, at)
    report.skipped = len(extracted.skipped)
    return report


def score_rankings(search, ids, labels, queries, true, k: int, weights: str, at: Sequence[int]) -> KnnReport:
    """Rank the whole collection for every query, in blocks of bounded size, and score it.

    ``search(features, n)`` returns ``(distances, ids)`` of the ``n`` nearest collection items;
    ``ids`` and ``labels`` describe the collection (``""`` = unlabelled).
    """
    # one spare "" slot at the end, which FAISS's -1 (no neighbour) indexes
    label_of_id = np.full(int(ids.max()) + 2, "", dtype=labels.dtype)
    label_of_id[ids] = labels
    classes = np.array(sorted((set(labels.tolist()) - {""}) | set(true.tolist())), dtype=str)
    collection_counts = {c: int(n) for c, n in zip(*np.unique(labels, return_counts=True))}
    n_relevant = np.array([collection_counts.get(t, 0) for t in true])
    n = len(ids)
    cutoffs = sorted(set(at) | {k})
    step = max(1, RANKING_BLOCK_CELLS // max(n, 1))
    predicted, ap, precision = [], [], {c: [] for c in cutoffs}
    for start in range(0, len(true), step):
        block = slice(start, start + step)
        distances, ranked = search(queries[block], n)
        ranked_labels = label_of_id[np.where(ranked >= 0, ranked, -1)]
        relevant = ranked_labels == true[block, None]
        codes = encode_labels(ranked_labels[:, :k].ravel(), classes).reshape(-1, min(k, n))
        predicted.append(vote(codes, distances[:, :k], len(classes), weights)[0])
        ap.append(average_precision(relevant, n_relevant[block]))
        for c in cutoffs:
            precision[c].append(precision_at_k(relevant, c))
    codes = np.concatenate(predicted)
    pred = np.where(codes >= 0, classes[np.maximum(codes, 0)], "")
    ap_all = np.concatenate(ap)
    if np.isnan(ap_all).any():
        log.warning("%d test images have a class absent from the index; excluded from mAP", int(np.isnan(ap_all).sum()))
    matrix = confusion_matrix(true, pred, classes.tolist())
    precision_at = {c: float(np.mean(np.concatenate(precision[c]))) for c in cutoffs}
    return KnnReport(
        k=k,
        n_queries=len(true),
        accuracy=float(np.mean(pred == true)),
        map=float(np.nanmean(ap_all)) if not np.isnan(ap_all).all() else 0.0,
        precision_at_k=precision_at[k],
        precision_at={c: precision_at[c] for c in sorted(set(at))},
        classes=classes.tolist(),
        confusion_matrix=matrix.tolist(),
        per_class=per_class_scores(matrix, classes.tolist()),
    )
