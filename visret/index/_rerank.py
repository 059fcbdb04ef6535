"""Re-ranking at query time: query expansion, database-side augmentation, k-reciprocal re-ranking.

A spec is one method or several joined by ``+``, applied in order, each ``NAME[:KEY=VALUE,...]``:

- ``aqe:k=5``: average query expansion (Chum et al. 2007): the query is replaced by the mean of
  itself and its ``k`` nearest entries, and searched again.
- ``alpha-qe:k=10,alpha=3``: alpha-weighted query expansion (Radenovic et al. 2018): neighbours
  weighted by their cosine similarity to the query, raised to ``alpha``.
- ``dba:k=3,alpha=0``: database-side augmentation (Arandjelovic and Zisserman 2012): each candidate
  entry is replaced by the (similarity^alpha weighted) mean of itself and its ``k`` nearest entries.
- ``k-reciprocal:k1=20,k2=6,lambda=0.3``: k-reciprocal re-ranking (Zhong et al. 2017): candidates
  are re-scored by the Jaccard distance of their k-reciprocal neighbourhoods, mixed with the
  original distance by ``lambda``.

Every step works on a shortlist of the ``depth`` best candidates of the current ranking (default
100, or ``k`` if larger); query expansion before any augmentation searches the whole collection
again. Means are taken in the space of the stored vectors, weights from cosine similarities; the
reported distances are those of the index's metric to the expanded query or augmented entries,
and for k-reciprocal the mixed score. Only entries that the collection's own search returns are
ever used, so a removed entry never comes back, and the queries' own ids can be left out
(leave-one-out evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import faiss
import numpy as np

from visret.index.distances import Distance
from visret.errors import VisretError

#: Candidates re-ranked per query when the spec does not say.
DEPTH = 100
METHODS: dict[str, dict[str, Any]] = {
    "aqe": {"k": 5},
    "alpha-qe": {"k": 10, "alpha": 3.0},
    "dba": {"k": 3, "alpha": 0.0},
    "k-reciprocal": {"k1": 20, "k2": 6, "lambda": 0.3},
}


class Collection(Protocol):
    """What re-ranking needs of an index: its search, its stored vectors, its distance."""

    distance: Distance

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def vectors(self, ids) -> np.ndarray: ...


@dataclass(frozen=True)
class Step:
    method: str
    options: dict[str, float] = field(default_factory=dict)

    def __getitem__(self, key: str) -> float:
        return self.options[key]


def parse_rerank(spec: str | None) -> tuple[list[Step], int]:
    """``"dba:k=3+alpha-qe:k=10"`` -> steps and the shortlist depth (``depth=N`` in any step)."""
    if spec is None or spec.strip() in ("", "none"):
        return [], DEPTH
    steps, depth = [], DEPTH
    for part in spec.split("+"):
        name, _, rest = part.strip().partition(":")
        if name not in METHODS:
            raise VisretError(f"unknown re-ranking {name!r} (methods: {', '.join(METHODS)}; join several with +)")
        options = dict(METHODS[name])
        for pair in filter(None, (p.strip() for p in rest.split(","))):
            key, sep, value = pair.partition("=")
            key = key.strip()
            try:
                number = float(value)
            except ValueError:
                number = float("nan")
            if not sep or (key not in options and key != "depth") or not number >= 0:
                raise VisretError(f"re-ranking {name}: bad option {pair!r} (options: {', '.join([*options, 'depth'])}, non-negative numbers)")
            if key == "depth":
                depth = max(1, int(number))
            else:
                options[key] = number
        for key in ("k", "k1", "k2"):
            if key in options and int(options[key]) < 1:
                raise VisretError(f"re-ranking {name}: {key} must be at least 1")
        if name == "k-reciprocal" and not 0 <= options["lambda"] <= 1:
            raise VisretError("re-ranking k-reciprocal: lambda must be between 0 and 1")
        steps.append(Step(name, options))
    if [step.method for step in steps].count("dba") > 1:
        raise VisretError("re-ranking: dba can be applied once")
    return steps, depth


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _weighted_mean(centre: np.ndarray, others: np.ndarray, alpha: float) -> np.ndarray:
    """Mean of ``centre`` (weight 1) and ``others``, weighted by cosine similarity to it ^ ``alpha``."""
    if len(others) == 0:
        return centre
    weights = np.ones(len(others)) if alpha == 0 else np.maximum(_unit(others) @ _unit(centre), 0.0) ** alpha
    return (centre + weights @ others) / (1.0 + weights.sum())


def _distances(distance: Distance, queries: np.ndarray, entries: np.ndarray) -> np.ndarray:
    """The index's distance between every query and every entry (both stored-space vectors)."""
    raw = faiss.pairwise_distances(np.ascontiguousarray(queries, np.float32), np.ascontiguousarray(entries, np.float32), distance.faiss_metric)
    return distance.readable(raw)


def _k_reciprocal(matrix: np.ndarray, k1: int, k2: int, lam: float) -> np.ndarray:
    """Zhong et al.'s re-ranked distances from the query (row 0) to the candidates (rows 1..), given
    the distance matrix among the query and its candidates."""
    n = len(matrix)
    original = matrix / np.maximum(matrix.max(axis=1, keepdims=True), 1e-12)
    rank = np.argsort(original, axis=1, kind="stable")
    k1, k2 = min(int(k1), n - 1), min(int(k2), n)

    def reciprocal(i: int, k: int) -> np.ndarray:
        forward = rank[i, : k + 1]
        return forward[(rank[forward, : k + 1] == i).any(axis=1)]

    encoding = np.zeros((n, n))
    half = max(1, int(round(k1 / 2)))
    for i in range(n):
        found = reciprocal(i, k1)
        expanded = [found]
        for candidate in found:
            theirs = reciprocal(candidate, half)
            if len(np.intersect1d(theirs, found)) > 2 / 3 * len(theirs):
                expanded.append(theirs)
        members = np.unique(np.concatenate(expanded))
        weights = np.exp(-original[i, members])
        encoding[i, members] = weights / weights.sum()
    if k2 > 1:  # local query expansion over each row's k2 nearest
        encoding = encoding[rank[:, :k2]].mean(axis=1)
    shared = np.minimum(encoding[0], encoding[1:]).sum(axis=1)
    jaccard = 1.0 - shared / np.maximum(2.0 - shared, 1e-12)
    return (1 - lam) * jaccard + lam * original[0, 1:]


class _Augmentation:
    """Database-side augmentation of a set of candidate entries, computed on demand.

    Each entry's vector becomes the mean of itself and its ``k`` nearest entries. In
    leave-one-out evaluation the query must not help describe its own candidates, so a query's
    id is left out of their neighbourhoods (and the next nearest entry taken instead).
    """

    def __init__(self, collection: Collection, candidates: np.ndarray, k: int, alpha: float):
        self.collection, self.k, self.alpha = collection, k, alpha
        unique = np.unique(candidates[candidates >= 0])
        own = collection.vectors(unique)
        self.own = {int(i): v for i, v in zip(unique, own)}
        neighbours = collection.search(own, k + 2)[1] if len(unique) else np.zeros((0, k + 2), np.int64)
        self.neighbours = {int(i): [int(n) for n in row if n >= 0 and n != i] for i, row in zip(unique, neighbours)}
        self._cache: dict[tuple[int, int | None], np.ndarray] = {}

    def vector(self, entry: int, query_id: int | None = None) -> np.ndarray:
        found = self.neighbours[entry][: self.k + 1]
        if query_id not in found:
            query_id = None  # the usual neighbourhood: shared by every query
        key = (entry, query_id)
        if key not in self._cache:
            kept = [n for n in found if n != query_id][: self.k]
            others = self.collection.vectors(np.array(kept, np.int64)) if kept else np.zeros((0, len(self.own[entry])), np.float32)
            self._cache[key] = self.collection.distance.project(_weighted_mean(self.own[entry], others, self.alpha))[0]
        return self._cache[key]

    def vectors(self, entries: np.ndarray, query_id: int | None) -> np.ndarray:
        return np.stack([self.vector(int(i), query_id) for i in entries])


class Reranker:
    """A parsed re-ranking spec, applied to searches of a ``Collection``."""

    def __init__(self, spec: str | None):
        self.spec = spec
        self.steps, self.depth = parse_rerank(spec)

    def __bool__(self) -> bool:
        return bool(self.steps)

    def search(
        self, collection: Collection, queries: np.ndarray, k: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best entries for each query after re-ranking; ``exclude`` (one id per query,
        or None) is left out of that query's results and of its candidates' neighbourhoods."""
        search = _excluding(collection.search, exclude)
        queries = np.ascontiguousarray(np.atleast_2d(queries), np.float32)
        depth = max(k, self.depth) if self.steps else k
        distances, ids = search(queries, depth)
        head = min(self.depth, distances.shape[1])
        own = [None] * len(queries) if exclude is None else [int(i) for i in exclude]
        augmentation: _Augmentation | None = None
        for step in self.steps:
            if step.method in ("aqe", "alpha-qe"):
                alpha = 0.0 if step.method == "aqe" else step["alpha"]
                queries = collection.distance.project(np.stack([
                    _weighted_mean(queries[q], self._vectors(collection, _valid(ids[q, : min(int(step["k"]), head)]), augmentation, own[q]), alpha)
                    for q in range(len(queries))
                ]))
                if augmentation is None:  # search the whole collection with the expanded queries
                    distances, ids = search(queries, depth)
                    continue
            elif step.method == "dba":
                augmentation = _Augmentation(collection, ids[:, :head], int(step["k"]), step["alpha"])
            distances, ids = distances.copy(), ids.copy()
            for q in range(len(queries)):
                top = _valid(ids[q, :head])
                if len(top) < 2:
                    continue
                vectors = self._vectors(collection, top, augmentation, own[q])
                if step.method == "k-reciprocal":
                    points = np.concatenate([queries[q : q + 1], vectors])
                    scores = _k_reciprocal(_distances(collection.distance, points, points), step["k1"], step["k2"], step["lambda"])
                else:
                    scores = _distances(collection.distance, queries[q : q + 1], vectors)[0]
                order = np.argsort(scores, kind="stable")
                distances[q, : len(top)], ids[q, : len(top)] = scores[order], top[order]
        return distances[:, :k], ids[:, :k]

    @staticmethod
    def _vectors(collection: Collection, ids: np.ndarray, augmentation: _Augmentation | None, query_id: int | None) -> np.ndarray:
        if len(ids) == 0:
            return np.zeros((0, 0), np.float32)  # no neighbour: an expansion keeps the vector as it is
        if augmentation is not None:
            return augmentation.vectors(ids, query_id)
        return collection.vectors(ids)


def _valid(ids: np.ndarray) -> np.ndarray:
    return ids[ids >= 0]


def _excluding(search: Callable, exclude: np.ndarray | None) -> Callable:
    """A search that leaves each query's own id (``exclude[q]``) out of its results."""
    if exclude is None:
        return search

    def wrapped(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        distances, ids = search(queries, k + 1)
        keep = ids != np.asarray(exclude)[:, None]
        out_d = np.full((len(ids), k), np.inf, np.float32)
        out_i = np.full((len(ids), k), -1, np.int64)
        for q in range(len(ids)):
            kept = np.flatnonzero(keep[q])[:k]
            out_d[q, : len(kept)], out_i[q, : len(kept)] = distances[q, kept], ids[q, kept]
        return out_d, out_i

    return wrapped
