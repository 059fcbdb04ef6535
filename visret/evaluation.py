"""k-NN evaluation: classification by neighbour vote and retrieval quality over full rankings.

Queries are ranked against the whole collection in blocks whose size is bounded
(``RANKING_BLOCK_CELLS``), so memory does not grow with the square of the collection.
"""

from __future__ import annotations

import logging
import resource
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from visret.dataset import scan_folder
from visret.distances import get_distance
from visret.errors import VisretError
from visret.extraction import extract_records
from visret.extractor import FeatureExtractor
from visret.extractor import DEFAULT_EXTRACTOR
from visret.index import Index, open_index
from visret.indexing import build_index
from visret.knn import WEIGHTINGS, vote
from visret.search import ExactSearch
from visret.metrics import (
    RECALL_LEVELS,
    average_precision,
    average_precision_at_k,
    balanced_accuracy,
    confusion_matrix,
    interpolated_precision,
    ndcg_at_k,
    per_class_scores,
    precision_at_k,
    recall_at_k,
)

log = logging.getLogger("visret")
#: Cap on the ranked block held at once (queries x collection), in matrix cells.
RANKING_BLOCK_CELLS = 1 << 22
#: Single queries timed for the latency figures.
LATENCY_SAMPLE = 200


@dataclass
class KnnReport:
    """What an evaluation measured; ``to_dict`` gives the JSON form, ``to_markdown`` a summary.

    ``accuracy``, ``balanced_accuracy`` and the confusion matrix come from the k-NN vote;
    ``map`` is over the full ranking (relevant = same class); the ``*_at`` dicts are keyed by
    cut-off; ``pr_curve`` is the mean interpolated precision at recall 0, 0.1, ... 1.
    """

    k: int
    n_queries: int
    accuracy: float
    balanced_accuracy: float
    map: float
    precision_at_k: float
    precision_at: dict[int, float]
    recall_at: dict[int, float]
    map_at: dict[int, float]
    ndcg_at: dict[int, float]
    pr_curve: dict[str, list[float]]
    classes: list[str]
    confusion_matrix: list[list[int]]
    per_class: dict[str, dict[str, Any]]
    protocol: str = "holdout"
    skipped: int = 0
    cost: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, float]:
        """The headline numbers, flat: accuracy, balanced accuracy, mAP, then P/R/mAP/nDCG at each cut-off."""
        row = {"accuracy": self.accuracy, "balanced_accuracy": self.balanced_accuracy, "map": self.map}
        for name, values in (("P", self.precision_at), ("R", self.recall_at), ("mAP", self.map_at), ("nDCG", self.ndcg_at)):
            row.update({f"{name}@{c}": v for c, v in values.items()})
        return row

    def to_markdown(self) -> str:
        lines = ["| metric | value |", "|---|---:|"]
        lines += [f"| {key} | {value:.4f} |" for key, value in self.summary().items()]
        lines.append(f"| queries | {self.n_queries} |")
        return "\n".join(lines)


class _Scores:
    """Accumulates per-query results over blocks (and folds) of ranked collections."""

    def __init__(self, classes: np.ndarray, k: int, weights: str, cutoffs: Sequence[int]):
        self.classes, self.k, self.weights, self.cutoffs = classes, k, weights, sorted(set(cutoffs) | {k})
        self.true: list[np.ndarray] = []
        self.predicted: list[np.ndarray] = []
        self.ap: list[np.ndarray] = []
        self.at: dict[str, dict[int, list[np.ndarray]]] = {m: {c: [] for c in self.cutoffs} for m in ("P", "R", "mAP", "nDCG")}
        self.curves: list[np.ndarray] = []

    def add(self, distances: np.ndarray, ranked: np.ndarray, true: np.ndarray, n_relevant: np.ndarray) -> None:
        """``ranked``: class codes of the ranked collection (-1 = unlabelled or no item), best first."""
        relevant = ranked == true[:, None]
        k = min(self.k, ranked.shape[1])
        self.predicted.append(vote(ranked[:, :k], distances[:, :k], len(self.classes), self.weights)[0])
        self.true.append(true)
        self.ap.append(average_precision(relevant, n_relevant))
        for c in self.cutoffs:
            self.at["P"][c].append(precision_at_k(relevant, c))
            self.at["R"][c].append(recall_at_k(relevant, n_relevant, c))
            self.at["mAP"][c].append(average_precision_at_k(relevant, n_relevant, c))
            self.at["nDCG"][c].append(ndcg_at_k(relevant, n_relevant, c))
        self.curves.append(interpolated_precision(relevant, n_relevant))

    def report(self, at: Sequence[int], protocol: str) -> KnnReport:
        true, predicted = np.concatenate(self.true), np.concatenate(self.predicted)
        ap = np.concatenate(self.ap)
        if np.isnan(ap).any():
            log.warning("%d queries have no relevant item in their collection; left out of retrieval metrics", int(np.isnan(ap).sum()))

        def mean(parts: list[np.ndarray]) -> float:
            values = np.concatenate(parts)
            return float(np.nanmean(values)) if not np.isnan(values).all() else 0.0

        matrix = confusion_matrix(true, predicted, range(len(self.classes)))
        wanted = sorted(set(at))
        curve = np.concatenate(self.curves)
        curve = np.nanmean(curve, axis=0) if not np.isnan(curve).all() else np.zeros(len(RECALL_LEVELS))
        return KnnReport(
            k=self.k,
            n_queries=len(true),
            accuracy=float(np.mean(predicted == true)),
            balanced_accuracy=balanced_accuracy(matrix),
            map=mean(self.ap),
            precision_at_k=mean(self.at["P"][self.k]),
            precision_at={c: mean(self.at["P"][c]) for c in wanted},
            recall_at={c: mean(self.at["R"][c]) for c in wanted},
            map_at={c: mean(self.at["mAP"][c]) for c in wanted},
            ndcg_at={c: mean(self.at["nDCG"][c]) for c in wanted},
            pr_curve={"recall": RECALL_LEVELS.round(2).tolist(), "precision": curve.tolist()},
            classes=self.classes.tolist(),
            confusion_matrix=matrix.tolist(),
            per_class=per_class_scores(matrix, self.classes.tolist()),
            protocol=protocol,
        )


def rank_and_score(
    scores: _Scores,
    search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]],
    code_of_id: np.ndarray,
    n_collection: int,
    queries: np.ndarray,
    true: np.ndarray,
    exclude_ids: np.ndarray | None = None,
) -> None:
    """Rank the collection for every query, block by block, and add the results to ``scores``.

    ``code_of_id[id]`` is the class code of a collection item (its last slot, -1, serves FAISS's
    "no item" id -1). With ``exclude_ids`` each query's own item is removed from its ranking
    (leave-one-out).
    """
    counts = np.bincount(code_of_id[code_of_id >= 0], minlength=len(scores.classes))
    n_relevant = counts[true] - (1 if exclude_ids is not None else 0)
    step = max(1, RANKING_BLOCK_CELLS // max(n_collection, 1))
    for start in range(0, len(true), step):
        block = slice(start, start + step)
        distances, ids = search(queries[block], n_collection)
        if exclude_ids is not None:
            keep = ids != exclude_ids[block, None]
            if not (keep.sum(axis=1) == n_collection - 1).all():
                raise RuntimeError("leave-one-out: a query was not found in its own collection")
            distances = distances[keep].reshape(len(ids), -1)
            ids = ids[keep].reshape(len(ids), -1)
        scores.add(distances, code_of_id[ids], true[block], n_relevant[block])


def _codes(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    return np.array([lookup.get(label, -1) for label in labels.tolist()], dtype=np.int64)


def _check(k: int, weights: str, at: Sequence[int]) -> None:
    if k < 1 or any(c < 1 for c in at):
        raise VisretError(f"k and cut-offs must be at least 1, got k={k}, at={list(at)}")
    if weights not in WEIGHTINGS:
        raise VisretError(f"weights must be one of {', '.join(WEIGHTINGS)}, got {weights!r}")


def query_latency_ms(search: Callable[[np.ndarray, int], Any], queries: np.ndarray, k: int) -> dict[str, float]:
    """p50 / p95 of single-query search time (embedding excluded), on up to ``LATENCY_SAMPLE`` queries."""
    times = []
    for query in queries[:LATENCY_SAMPLE]:
        start = time.perf_counter()
        search(query[None], k)
        times.append((time.perf_counter() - start) * 1000)
    if not times:
        return {"query_ms_p50": None, "query_ms_p95": None}
    return {"query_ms_p50": float(np.percentile(times, 50)), "query_ms_p95": float(np.percentile(times, 95))}


def peak_rss_mib() -> float:
    """This process's peak resident memory so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def evaluate_features(
    collection: np.ndarray,
    collection_labels: Sequence[str],
    queries: np.ndarray | None = None,
    query_labels: Sequence[str] | None = None,
    *,
    k: int = 5,
    weights: str = "uniform",
    metric: str = "l2",
    at: Sequence[int] = (1, 5, 10),
) -> KnnReport:
    """Evaluate embeddings already computed: queries against a collection, or leave-one-out
    over the collection when no queries are given (each item queries all the others)."""
    _check(k, weights, at)
    loo = queries is None
    query_labels = collection_labels if loo else query_labels
    classes = np.array(sorted(set(np.asarray(collection_labels, str).tolist()) | set(np.asarray(query_labels, str).tolist())))
    scores = _Scores(classes, k, weights, at)
    search = score_features(scores, collection, collection_labels, queries, query_labels, metric)
    report = scores.report(at, "loo" if loo else "holdout")
    report.cost = {
        **query_latency_ms(search, np.asarray(collection if loo else queries, np.float32), max(at)),
        "index_bytes": int(np.asarray(collection, np.float32).nbytes),
        "peak_rss_mib": peak_rss_mib(),
    }
    return report


def score_features(scores: _Scores, collection, collection_labels, queries, query_labels, metric: str):
    """Rank ``collection`` for each query (leave-one-out when ``queries`` is None) into ``scores``;
    return the search function of the flat FAISS index built for it."""
    distance = get_distance(metric)
    collection = distance.prepare(collection)
    loo = queries is None
    queries = collection if loo else distance.prepare(queries)
    query_labels = collection_labels if loo else query_labels
    ids = np.arange(len(collection))
    search = ExactSearch([collection], ids, distance).search
    code_of_id = np.append(_codes(np.asarray(collection_labels, str), scores.classes), -1)

    query_codes = _codes(np.asarray(query_labels, str), scores.classes)
    rank_and_score(scores, search, code_of_id, len(collection), queries, query_codes, ids if loo else None)
    return search


def evaluate_knn(
    test: str | Path | None = None,
    index: Index | str | Path | None = None,
    *,
    train: str | Path | None = None,
    extractor: str | FeatureExtractor = DEFAULT_EXTRACTOR,
    params: dict[str, Any] | None = None,
    k: int = 5,
    weights: str = "uniform",
    metric: str = "l2",
    at: Sequence[int] = (1, 5, 10),
    batch_size: int = 32,
    workers: int | None = None,
    return_embeddings: bool = False,
):
    """Classify every labelled image of ``test`` by k-NN over an index and rank the whole index.

    Pass an index (object or path), or ``train`` (a labelled folder) with an ``extractor`` to
    build a temporary one. Without ``test``, each indexed image queries all the others
    (leave-one-out). With ``return_embeddings`` the result is ``(report, embeddings, labels)``
    of the queries, e.g. for a t-SNE picture.
    """
    _check(k, weights, at)
    if train is not None:
        if index is not None:
            raise VisretError("pass either an index or a training folder, not both")
        with tempfile.TemporaryDirectory(prefix="visret-eval-") as tmp:
            with build_index(train, extractor, Path(tmp) / "index", metric, params, batch_size, workers) as built:
                return _evaluate(built, test, k, weights, at, batch_size, workers, return_embeddings)
    opened = index if isinstance(index, Index) else open_index(index)
    return _evaluate(opened, test, k, weights, at, batch_size, workers, return_embeddings)


def _evaluate(index: Index, test, k, weights, at, batch_size, workers, return_embeddings):
    if not len(index.classes):
        raise VisretError(f"index at {index.path} has no labels; build it from an ImageFolder layout")
    ids, labels = index.labelled_ids()
    if test is None:
        queries, true, skipped, rate = index.vectors(ids), labels, 0, None
        exclude = ids
    else:
        records = [r for r in scan_folder(test) if r.label is not None]
        if not records:
            raise VisretError(f"no labelled images in {test}: put each class in its own sub-folder")
        start = time.perf_counter()
        extracted = extract_records(index.extractor, records, batch_size, workers)
        rate = len(records) / (time.perf_counter() - start)
        if not extracted.records:
            raise VisretError(f"none of the images in {test} could be read")
        queries, skipped, exclude = index.distance.prepare(extracted.features), len(extracted.skipped), None
        true = np.array([r.label for r in extracted.records], dtype=str)
    classes = np.array(sorted((set(labels.tolist()) - {""}) | set(true.tolist())), dtype=str)
    code_of_id = np.full(int(ids.max()) + 2, -1, np.int64)  # the spare last slot serves FAISS's -1
    code_of_id[ids] = _codes(labels, classes)
    scores = _Scores(classes, k, weights, at)
    rank_and_score(scores, index.search, code_of_id, len(ids), queries, _codes(true, classes), exclude)
    report = scores.report(at, "loo" if test is None else "holdout")
    report.skipped = skipped
    report.cost = {
        "extraction_images_per_s": rate,
        **query_latency_ms(index.search, queries, max(at)),
        "index_bytes": index.info()["bytes"],
        "peak_rss_mib": peak_rss_mib(),
    }
    if return_embeddings:
        return report, queries, true
    return report
