"""Searching stored vectors: exactly, straight from the memory-mapped shards, or through a FAISS index.

Both searchers take search vectors (features already mapped by the index's ``Distance``) and
return ``(distances (n, k) float32, ids (n, k) int64)``, nearest first, padded with ``inf`` / -1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import faiss
import numpy as np

from visret.index import _vectors as vectors
from visret.index.distances import Distance

#: Distances held at once when a whole collection is ranked (queries x entries): 64 MiB of float32.
RANK_ALL_CELLS = 2**24


class _Searcher:
    """The shared part of a search: float32 queries, padded results, threads by batch size."""

    def __len__(self) -> int:
        raise NotImplementedError

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(k, max(len(self), 1))  # memory follows the collection, never the k asked for
        out_d, out_i = np.full((len(queries), k), np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        if len(self) and len(queries):
            vectors.use_threads(len(queries))
            self._search(queries, k, out_d, out_i)
        return out_d, out_i

    def _search(self, queries: np.ndarray, k: int, out_d: np.ndarray, out_i: np.ndarray) -> None:
        """Fill ``out_d`` and ``out_i`` with the ``k`` nearest of each query."""
        raise NotImplementedError


class ExactSearch(_Searcher):
    """Brute force over the shards in place (no second copy of the vectors, in memory or on disk); shards
    given as ``.npy`` files are read one at a time and let go (``vectors.read_shard``)."""

    def __init__(self, shards: Sequence[np.ndarray | Path], ids: np.ndarray, distance: Distance):
        self.shards, self.ids, self.distance = list(shards), ids, distance
        self.offsets = np.cumsum([0] + [vectors.shard_rows(s) for s in self.shards])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _search(self, queries, k, out_d, out_i) -> None:
        if k >= len(self):
            self._rank_all(queries, out_d, out_i)
            return
        # A short list per query: merge shard by shard in a heap (memory queries x k). A ranking of
        # most of the collection: sort every shard's list at once.
        merged = faiss.ResultHeap(len(queries), k, keep_max=False) if 2 * k < len(self) else None
        found_d, found_i = [], []
        for shard, start, end in zip(self.shards, self.offsets[:-1], self.offsets[1:]):
            depth = min(k, int(end - start))
            if depth == 0:
                continue
            raw, rows = faiss.knn(queries, vectors.read_shard(shard), depth, metric=self.distance.faiss_metric)
            distances, ids = self.distance.readable(raw), np.ascontiguousarray(self.ids[start + rows], dtype=np.int64)
            if merged is not None:
                merged.add_result(distances, ids)
            else:
                found_d.append(distances)
                found_i.append(ids)
        if merged is not None:
            merged.finalize()
            distances, ids = merged.D, merged.I
        else:
            distances, ids = np.concatenate(found_d, axis=1), np.concatenate(found_i, axis=1)
        order = np.lexsort((ids, distances), axis=1)[:, :k]  # by distance, then id: ties are deterministic
        distances, ids = np.take_along_axis(distances, order, 1), np.take_along_axis(ids, order, 1)
        depth = min(k, distances.shape[1])
        out_d[:, :depth], out_i[:, :depth] = distances[:, :depth], ids[:, :depth]

    def _rank_all(self, queries, out_d, out_i) -> None:
        """Every stored vector for every query (a full leave-one-out ranking): the distance
        matrix, a chunk of queries at a time, then each row sorted over columns in id order, so
        that ties go by id."""
        by_id = np.argsort(self.ids, kind="stable")
        in_order = bool(np.all(by_id == np.arange(len(by_id))))
        ids, n = self.ids[by_id], len(self)
        rows = max(1, RANK_ALL_CELLS // n)
        for start in range(0, len(queries), rows):
            chunk = queries[start : start + rows]
            parts = [faiss.pairwise_distances(chunk, vectors.read_shard(shard), self.distance.faiss_metric) for shard in self.shards]
            raw = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
            distances, order = _sort_rows(self.distance.readable(raw if in_order else raw[:, by_id]))
            out_d[start : start + len(chunk), :n] = distances
            out_i[start : start + len(chunk), :n] = ids[order]


def _sort_rows(distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row sorted by distance, ties by column, and the columns' order. One sort of 64-bit
    keys (a non-negative float's bits keep its order; then the column): faster than a stable
    argsort, and the sorted distances come back from the keys without a gather. Distances below
    zero (a cosine's rounding, -1e-7) count as zero."""
    bits = np.maximum(distances, 0.0, dtype=np.float32).view(np.uint32).astype(np.uint64)
    keys = (bits << np.uint64(32)) | np.arange(distances.shape[1], dtype=np.uint64)
    keys.sort(axis=1)
    restored = (keys >> np.uint64(32)).astype(np.uint32).view(np.float32)
    return restored, (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)


class StructureSearch(_Searcher):
    """An index backend's structure (FAISS IVF, HNSW, PQ...); entries it cannot forget (HNSW) are
    tombstones, filtered out."""

    def __init__(self, structure, distance: Distance, tombstones: np.ndarray):
        self.structure, self.distance = structure, distance
        self.tombstones = np.asarray(tombstones, np.int64)

    def __len__(self) -> int:
        return int(self.structure.ntotal) - len(self.tombstones)

    def _search(self, queries, k, out_d, out_i) -> None:
        depth = min(k + len(self.tombstones), self.structure.ntotal)
        raw, ids = self.structure.search(queries, depth)
        distances = self.distance.readable(raw)
        alive = (ids >= 0) & ~np.isin(ids, self.tombstones)
        for q in range(len(queries)):
            keep = np.flatnonzero(alive[q])[:k]
            out_d[q, : len(keep)], out_i[q, : len(keep)] = distances[q, keep], ids[q, keep]


class ArrayCollection:
    """Search vectors held in memory, searched exactly; ids are row numbers."""

    def __init__(self, search_vectors: np.ndarray, distance: Distance):
        self._vectors = np.ascontiguousarray(search_vectors, dtype=np.float32)
        self.distance = distance
        self._search = ExactSearch([self._vectors], np.arange(len(self._vectors), dtype=np.int64), distance)

    def __len__(self) -> int:
        return len(self._vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._search.search(queries, k)

    def vectors(self, ids) -> np.ndarray:
        return self._vectors[np.asarray(ids, dtype=np.int64)]
