"""Close pairs without an all-pairs matrix: FAISS range search in chunks, then union-find groups.

Bits (perceptual hashes) are packed eight to a byte and searched by Hamming distance with a
FAISS binary index; float features are L2-normalised and searched by cosine distance. Memory is
the vectors plus at most ``MAX_PAIRS_PER_IMAGE`` pairs an image, whatever the number of images.
"""

from __future__ import annotations

from typing import Callable

import faiss
import numpy as np

#: Queries per range search: bounds the temporary result lists.
CHUNK = 1024
#: Pairs kept per image, its closest ones: a folder of 10,000 blank frames is one group of
#: 10,000, not 50 million pairs; groups stay connected through each member's closest twins.
MAX_PAIRS_PER_IMAGE = 64


def distance_name(binary: bool) -> str:
    return "hamming" if binary else "cosine"


def searchable(features: np.ndarray, binary: bool) -> np.ndarray:
    """Features in the form ``close_pairs`` searches: packed bits, or unit-length float32 rows."""
    if binary:
        return np.packbits(np.asarray(features) > 0.5, axis=1)
    x = np.ascontiguousarray(features, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _index(vectors: np.ndarray, binary: bool):
    index = faiss.IndexBinaryFlat(vectors.shape[1] * 8) if binary else faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index


def close_pairs(
    vectors: np.ndarray, binary: bool, threshold: float, progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``i < j`` within ``threshold`` (bits, or cosine distance) of each other, each image's
    closest ``MAX_PAIRS_PER_IMAGE`` at most: ``(i, j, distance)``."""
    n = len(vectors)
    found_i, found_j, found_d = [], [], []
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    index = _index(vectors, binary)
    for start in range(0, n, CHUNK):
        chunk = vectors[start : start + CHUNK]
        if binary:  # FAISS keeps distances strictly below the radius
            limits, distances, ids = index.range_search(chunk, int(np.floor(threshold)) + 1)
            distances = distances.astype(np.float32)
        else:  # inner product: FAISS keeps similarities strictly above the radius
            limits, similarities, ids = index.range_search(chunk, float(1.0 - threshold) - 1e-6)
            distances = np.maximum(1.0 - similarities, 0.0).astype(np.float32)
        limits = limits.astype(np.int64)
        rows = np.repeat(np.arange(start, start + len(chunk)), np.diff(limits))
        others = rows != ids
        rows, ids, distances = rows[others], ids[others].astype(np.int64), distances[others]
        order = np.lexsort((ids, distances, rows))
        rows, ids, distances = rows[order], ids[order], distances[order]
        first = np.searchsorted(rows, rows)  # where each row's sorted list starts
        keep = np.arange(len(rows)) - first < MAX_PAIRS_PER_IMAGE
        found_i.append(np.minimum(rows, ids)[keep])
        found_j.append(np.maximum(rows, ids)[keep])
        found_d.append(distances[keep])
        if progress is not None:
            progress(min(start + CHUNK, n), n)
    i, j, d = np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_d)
    _, once = np.unique(i * n + j, return_index=True)  # a pair found from both ends counts once
    return i[once], j[once], d[once]


def nearest_distances(vectors: np.ndarray, binary: bool) -> np.ndarray:
    """Each item's distance to its nearest other item (for choosing and drawing thresholds)."""
    if len(vectors) < 2:
        return np.empty(0, np.float32)
    index = _index(vectors, binary)
    out = np.empty(len(vectors), np.float32)
    for start in range(0, len(vectors), CHUNK):
        chunk = vectors[start : start + CHUNK]
        scores, ids = index.search(chunk, 2)
        own = ids == np.arange(start, start + len(chunk))[:, None]
        # the item itself is usually first; when a twin ties with it, either column is the other
        other = np.where(own[:, 0], scores[:, 1], scores[:, 0])
        out[start : start + len(chunk)] = other if binary else np.maximum(1.0 - other, 0.0)
    return out


def random_pair_distances(vectors: np.ndarray, binary: bool, pairs: int = 20_000, seed: int = 0) -> np.ndarray:
    """Distances of a seeded sample of pairs of distinct items: what "not a duplicate" looks like."""
    n = len(vectors)
    if n < 2:
        return np.empty(0, np.float32)
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, pairs)
    b = (a + rng.integers(1, n, pairs)) % n
    if binary:
        return np.unpackbits(vectors[a] ^ vectors[b], axis=1).sum(axis=1).astype(np.float32)
    return np.maximum(1.0 - np.einsum("ij,ij->i", vectors[a], vectors[b]), 0.0).astype(np.float32)


class UnionFind:
    """Connected components of the pairs: near duplicates of near duplicates form one group.

    A ``guard`` (``allows(root_a, root_b)``, ``joined(root, other)``) may refuse a join: pairs
    taken closest first then make single-linkage groups under cannot-link constraints.
    """

    def __init__(self, n: int):
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return int(root)

    def union(self, i: int, j: int, guard=None) -> bool:
        """Join the groups of ``i`` and ``j``; False when the guard refuses (they stay apart)."""
        a, b = self.find(i), self.find(j)
        if a == b:
            return guard is None or guard.allows_pair(i, j)
        if guard is not None and not guard.allows(a, b):
            return False
        root, other = min(a, b), max(a, b)
        self.parent[other] = root
        if guard is not None:
            guard.joined(root, other)
        return True

    def groups(self) -> list[list[int]]:
        """Components of two or more items, each sorted, in order of their first item."""
        members: dict[int, list[int]] = {}
        for i in range(len(self.parent)):
            members.setdefault(self.find(i), []).append(i)
        return sorted((m for m in members.values() if len(m) > 1), key=lambda m: m[0])
