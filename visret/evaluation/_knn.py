"""k-NN evaluation: classification by neighbour vote and retrieval quality over rankings.

Queries are ranked against the whole collection (or to a ``depth``) in blocks whose size is
bounded (``RANKING_BLOCK_CELLS``), so memory does not grow with the square of the collection;
re-ranking, when asked, is applied to every query's ranking. Leave-one-out over an index whose
extractor learns from labels embeds every entry by an extractor fitted without it (cross-fitted
in folds), never by the one the index was built with.
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

from visret.images._folders import ImageRecord
from visret.images.loaders import find_images
from visret.index.distances import get_distance
from visret.errors import VisretError
from visret.embedding._extraction import extract_records, nothing_embedded
from visret.features._extractor import DEFAULT_EXTRACTOR, FeatureExtractor
from visret.embedding._fitting import fold_embeddings
from visret.index._index import Index, open_index
from visret.index._building import build_index
from visret.index._voting import WEIGHTINGS, vote
from visret.evaluation.metrics import (
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
from visret.evaluation._protocols import stratified_folds
from visret.index._rerank import Collection, Reranker
from visret.index._search import ArrayCollection

log = logging.getLogger("visret")
#: Cap on the ranked block held at once (queries x ranking depth), in matrix cells.
RANKING_BLOCK_CELLS = 1 << 22
#: Single queries timed for the latency figures.
LATENCY_SAMPLE = 200
#: Folds in which supervised extractors are refitted for leave-one-out.
CROSS_FIT_FOLDS = 5

Progress = Callable[[int, int], None]


@dataclass
class KnnReport:
    """What an evaluation measured; ``to_dict`` gives the JSON form, ``to_markdown`` a summary.

    ``accuracy``, ``balanced_accuracy`` and the confusion matrix come from the k-NN vote;
    ``map`` is over the full ranking (relevant = same class), or mAP@``depth`` when the ranking
    was cut at ``depth``; the ``*_at`` dicts are keyed by cut-off; ``pr_curve`` is the mean
    interpolated precision at recall 0, 0.1, ... 1. ``rerank`` is the re-ranking applied.
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
    depth: int | None = None
    rerank: str | None = None
    supervised: bool = False
    skipped: int = 0
    cost: dict[str, float | None] = field(default_factory=dict)

    @property
    def ranking(self) -> str:
        """How far each query's ranking went: ``full`` or ``top-N``."""
        return "full" if self.depth is None else f"top-{self.depth}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ranking": self.ranking}

    def summary(self) -> dict[str, float]:
        """The headline numbers, flat: accuracy, balanced accuracy, mAP, then P/R/mAP/nDCG at each cut-off."""
        row = {"accuracy": self.accuracy, "balanced_accuracy": self.balanced_accuracy, "map": self.map}
        for name, values in (("P", self.precision_at), ("R", self.recall_at), ("mAP", self.map_at), ("nDCG", self.ndcg_at)):
            row.update({f"{name}@{c}": v for c, v in values.items()})
        return row

    def describe(self) -> str:
        """One line: protocol, queries, ranking, re-ranking."""
        parts = [self.protocol, f"{self.n_queries} queries", f"{self.ranking} ranking"]
        if self.rerank:
            parts.append(f"re-ranked by {self.rerank}")
        return ", ".join(parts)

    def to_markdown(self) -> str:
        lines = [f"k-NN evaluation ({self.describe()})", "", "| metric | value |", "|---|---:|"]
        lines += [f"| {key} | {value:.4f} |" for key, value in self.summary().items()]
        lines.append(f"| queries | {self.n_queries} |")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{key}</td><td>{value:.4f}</td></tr>" for key, value in self.summary().items())
        return f"<p>k-NN evaluation ({self.describe()})</p><table><tr><th>metric</th><th>value</th></tr>{rows}</table>"


class _Scores:
    """Accumulates per-query results over blocks (and folds) of ranked collections."""

    def __init__(self, classes: np.ndarray, k: int, weights: str, cutoffs: Sequence[int], depth: int | None = None):
        self.classes, self.k, self.weights, self.depth = classes, k, weights, depth
        self.cutoffs = sorted(set(cutoffs) | {k})
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
        if self.depth is None:
            self.ap.append(average_precision(relevant, n_relevant))
        else:
            self.ap.append(average_precision_at_k(relevant, n_relevant, self.depth))
        for c in self.cutoffs:
            self.at["P"][c].append(precision_at_k(relevant, c))
            self.at["R"][c].append(recall_at_k(relevant, n_relevant, c))
            self.at["mAP"][c].append(average_precision_at_k(relevant, n_relevant, c))
            self.at["nDCG"][c].append(ndcg_at_k(relevant, n_relevant, c))
        self.curves.append(interpolated_precision(relevant, n_relevant))

    def report(self, at: Sequence[int], protocol: str, rerank: str | None = None) -> KnnReport:
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
            depth=self.depth,
            rerank=rerank,
        )


def rank_and_score(
    scores: _Scores,
    collection: Collection,
    code_of_id: np.ndarray,
    queries: np.ndarray,
    true: np.ndarray,
    exclude_ids: np.ndarray | None = None,
    reranker: Reranker | None = None,
    progress: Callable[[int], None] | None = None,
    class_sizes: np.ndarray | None = None,
) -> None:
    """Rank the collection for every query, block by block, and add the results to ``scores``.

    ``code_of_id[ids]`` gives the class codes of collection items: an array indexed by id (its last
    slot, -1, serves the "no item" id -1), or a lookup such as ``_StoredClasses`` with the items per
    class in ``class_sizes``. With ``exclude_ids`` each query's own item is left out of its ranking
    (leave-one-out). ``progress(n)`` is called as each block of ``n`` queries is ranked.
    """
    counts = np.bincount(code_of_id[code_of_id >= 0], minlength=len(scores.classes)) if class_sizes is None else class_sizes
    n_relevant = counts[true] - (1 if exclude_ids is not None else 0)
    n = len(collection) - (1 if exclude_ids is not None else 0)
    depth = n if scores.depth is None else min(scores.depth, n)
    reranker = reranker or Reranker(None)
    step = max(1, RANKING_BLOCK_CELLS // max(depth, 1))
    for start in range(0, len(true), step):
        block = slice(start, start + step)
        exclude = None if exclude_ids is None else exclude_ids[block]
        distances, ids = reranker.search(collection, queries[block], depth, exclude)
        scores.add(distances, code_of_id[ids], true[block], n_relevant[block])
        if progress is not None:
            progress(len(true[block]))


class _StoredClasses:
    """Class codes of an index's entries, read for the ids a ranking returns: a hundred held-out queries
    ranked to depth 100 read 10,000 labels, not every entry's (10 s at 10M entries)."""

    def __init__(self, index: Index, classes: np.ndarray):
        self.index, self.lookup = index, {c: i for i, c in enumerate(classes.tolist())}

    def __getitem__(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        label_of = {row[0]: row[2] for row in self.index.rows_for("labels", np.unique(ids).tolist())}
        codes = [self.lookup.get(label_of.get(i), -1) for i in ids.ravel().tolist()]
        return np.array(codes, np.int64).reshape(ids.shape)


def _codes(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    return np.array([lookup.get(label, -1) for label in labels.tolist()], dtype=np.int64)


def check_settings(k: int, weights: str, at: Sequence[int], depth: int | None = None) -> None:
    if k < 1 or any(c < 1 for c in at) or (depth is not None and depth < 1):
        raise VisretError(f"k, cut-offs and depth must be at least 1, got k={k}, at={list(at)}, depth={depth}")
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


class Counter:
    """Progress counted in work units (images embedded, queries ranked) for a ``progress(done,
    total)`` callback; the total grows when more work turns up (a refit per fold)."""

    def __init__(self, progress: Progress | None, total: int):
        self.progress, self.total, self.done = progress, total, 0
        self.advance(0)

    def advance(self, n: int) -> None:
        self.done += n
        self.total = max(self.total, self.done)
        if self.progress is not None:
            self.progress(self.done, self.total)

    def ranking(self) -> Progress:
        """A ``progress(done, total)`` callback for one ranking pass, feeding this counter."""
        seen = 0

        def update(done: int, total: int) -> None:
            nonlocal seen
            self.advance(done - seen)
            seen = done

        return update


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
    depth: int | None = None,
    rerank: str | None = None,
    progress: Progress | None = None,
) -> KnnReport:
    """Evaluate embeddings already computed: queries against a collection, or leave-one-out
    over the collection when no queries are given (each item queries all the others)."""
    check_settings(k, weights, at, depth)
    reranker = Reranker(rerank)
    loo = queries is None
    query_labels = collection_labels if loo else query_labels
    classes = np.array(sorted(set(np.asarray(collection_labels, str).tolist()) | set(np.asarray(query_labels, str).tolist())))
    scores = _Scores(classes, k, weights, at, depth)
    held = score_features(scores, collection, collection_labels, queries, query_labels, metric, reranker, progress)
    report = scores.report(at, "loo" if loo else "holdout", reranker.spec if reranker else None)
    report.cost = {
        **query_latency_ms(held.search, held.vectors(np.arange(len(held)))[:LATENCY_SAMPLE] if loo else get_distance(metric).prepare(queries), max(at)),
        "index_bytes": int(np.asarray(collection, np.float32).nbytes),
        "peak_rss_mib": peak_rss_mib(),
    }
    return report


def score_features(
    scores: _Scores, collection, collection_labels, queries, query_labels, metric: str,
    reranker: Reranker | None = None, progress: Progress | None = None,
) -> ArrayCollection:
    """Rank ``collection`` for each query (leave-one-out when ``queries`` is None) into ``scores``;
    return the collection as searched."""
    distance = get_distance(metric)
    held = ArrayCollection(distance.prepare(collection), distance)
    loo = queries is None
    query_vectors = held.vectors(np.arange(len(held))) if loo else distance.prepare(queries)
    query_labels = collection_labels if loo else query_labels
    code_of_id = np.append(_codes(np.asarray(collection_labels, str), scores.classes), -1)
    query_codes = _codes(np.asarray(query_labels, str), scores.classes)
    exclude = np.arange(len(held)) if loo else None
    rank_and_score(scores, held, code_of_id, query_vectors, query_codes, exclude, reranker, Counter(progress, len(query_codes)).advance)
    return held


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
    depth: int | None = None,
    rerank: str | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    return_embeddings: bool = False,
    progress: Progress | None = None,
):
    """Classify every labelled image of ``test`` by k-NN over an index and rank the index.

    Pass an index (object or path), or ``train`` (a labelled folder) with an ``extractor`` to
    build a temporary one. Without ``test``, each indexed image queries all the others
    (leave-one-out). ``depth`` cuts each ranking (``map`` is then mAP@depth); ``rerank`` is a
    re-ranking spec (default: the index's own; ``"none"`` for none). With ``return_embeddings``
    the result is ``(report, embeddings, labels)`` of the queries, e.g. for a t-SNE picture.
    ``progress(done, total)`` is called as queries are ranked.
    """
    check_settings(k, weights, at, depth)
    if train is not None:
        if index is not None:
            raise VisretError("pass either an index or a training folder, not both")
        with tempfile.TemporaryDirectory(prefix="visret-eval-") as tmp:
            with build_index(train, extractor, Path(tmp) / "index", metric=metric, params=params, batch_size=batch_size, workers=workers) as built:
                return _evaluate(built, test, k, weights, at, depth, rerank, batch_size, workers, return_embeddings, progress)
    opened = index if isinstance(index, Index) else open_index(index)
    return _evaluate(opened, test, k, weights, at, depth, rerank, batch_size, workers, return_embeddings, progress)


def _evaluate(index: Index, test, k, weights, at, depth, rerank, batch_size, workers, return_embeddings, progress):
    if not len(index.classes):
        raise VisretError(f"index at {index.path} has no labels; build it from an ImageFolder layout")
    reranker = Reranker(index.manifest.get("rerank") if rerank is None else rerank)
    if test is None:
        ids, labels = index.labelled_ids()
        labelled = labels != ""  # unlabelled entries stay in the collection, never relevant, and never query
        if labelled.sum() < 2:
            raise VisretError(f"leave-one-out needs at least two labelled entries; the index at {index.path} has fewer")
        if not index.has_extractor:
            log.warning(f"{index.manifest['extractor']['name']} cannot be created here, so leave-one-out ranks the stored vectors "
                        "as they are (fair unless that extractor learned from the labels)")
        elif index.extractor.supervised:
            return _cross_fitted_loo(index, k, weights, at, depth, reranker, batch_size, workers, return_embeddings, progress)
        queries, true, skipped, rate = index.vectors(ids[labelled]), labels[labelled], 0, None
        classes = np.array(sorted(set(labels.tolist()) - {""}), dtype=str)
        code_of_id = np.full(int(ids.max()) + 2, -1, np.int64)  # the spare last slot serves the "no item" id -1
        code_of_id[ids] = _codes(labels, classes)
        sizes, exclude = None, ids[labelled]
    else:
        records = [r for r in find_images(test) if r.label is not None]
        if not records:
            raise VisretError(f"no labelled images in {test}: put each class in its own sub-folder")
        start = time.perf_counter()
        extracted = extract_records(index.extractor, records, batch_size, workers)
        rate = len(records) / (time.perf_counter() - start)
        if not extracted.records:
            raise nothing_embedded(test, extracted.skipped)
        queries, skipped, exclude = index.distance.prepare(extracted.features), len(extracted.skipped), None
        true = np.array([r.label for r in extracted.records], dtype=str)
        counts = index.label_counts()
        classes = np.array(sorted(set(counts) | set(true.tolist())), dtype=str)
        code_of_id, sizes = _StoredClasses(index, classes), np.array([counts.get(c, 0) for c in classes.tolist()], np.int64)
    scores = _Scores(classes, k, weights, at, depth)
    rank_and_score(scores, index, code_of_id, queries, _codes(true, classes), exclude, reranker, Counter(progress, len(true)).advance,
                   class_sizes=sizes)
    report = scores.report(at, "loo" if test is None else "holdout", reranker.spec if reranker else None)
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


def _cross_fitted_loo(index: Index, k, weights, at, depth, reranker, batch_size, workers, return_embeddings, progress):
    """Leave-one-out for an extractor that learns from labels: in each of ``CROSS_FIT_FOLDS``
    folds, a fresh extractor fitted on the other folds embeds every entry, and the fold's
    entries query all the others."""
    rows = index.rows("labelled files")
    records = [ImageRecord(Path(path), label) for _, path, label in rows]
    labels = np.array([r.label for r in records], dtype=str)
    fold = stratified_folds(labels, min(CROSS_FIT_FOLDS, len(records)), seed=0)
    classes = np.array(sorted(set(labels.tolist())), dtype=str)
    scores = _Scores(classes, k, weights, at, depth)
    parts = range(fold.max() + 1)
    work = Counter(progress, 2 * len(records))  # embedding (once or per fold), then ranking
    embeddings = fold_embeddings(index.manifest["extractor"], records, [fold != f for f in parts], batch_size=batch_size,
                                 workers=workers, progress=work.advance)
    query_vectors, true = [], []
    for f, embedded in zip(parts, embeddings):
        collection = ArrayCollection(index.distance.prepare(embedded.features), index.distance)
        codes = _codes(labels[embedded.rows], classes)
        is_query = fold[embedded.rows] == f
        own = np.flatnonzero(is_query)
        rank_and_score(scores, collection, np.append(codes, -1), collection.vectors(own), codes[own], own, reranker, work.advance)
        query_vectors.append(collection.vectors(own))
        true.append(labels[embedded.rows][own])
    report = scores.report(at, f"loo (fitted without the queries, in {len(parts)} folds)", reranker.spec if reranker else None)
    report.supervised = True
    report.skipped = len(records) - len(embedded.rows)
    report.cost = {"extraction_images_per_s": None, "index_bytes": index.info()["bytes"], "peak_rss_mib": peak_rss_mib()}
    if return_embeddings:
        return report, np.concatenate(query_vectors), np.concatenate(true)
    return report
