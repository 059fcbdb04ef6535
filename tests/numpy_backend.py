"""A third-party index backend for the tests: exact search in numpy, saved as one ``.npz`` (no pickle).

``--factory numpy:exact`` picks it; it removes by id and keeps vectors in memory.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from visret import hookimpl
from visret.index.backends import IndexBackend, SearchStructure


class NumpyStructure(SearchStructure):
    def __init__(self, X: np.ndarray, ids: np.ndarray, similarity: bool):
        self.X, self.ids, self.similarity = X.astype(np.float32), ids.astype(np.int64), similarity

    @property
    def ntotal(self):
        return len(self.ids)

    @property
    def d(self):
        return self.X.shape[1]

    def search(self, queries, k):
        if self.similarity:
            scores = queries @ self.X.T
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        else:
            scores = ((queries[:, None, :] - self.X[None]) ** 2).sum(-1)
            order = np.argsort(scores, axis=1, kind="stable")[:, :k]
        found = np.take_along_axis(scores, order, 1).astype(np.float32)
        ids = self.ids[order]
        if order.shape[1] < k:  # fewer vectors than asked for
            pad = k - order.shape[1]
            found = np.pad(found, ((0, 0), (0, pad)), constant_values=np.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        return found, ids

    def add(self, shards, ids):
        new = [np.load(s) if isinstance(s, Path) else np.asarray(s) for s in shards]
        if new:
            self.X = np.concatenate([self.X, *new]).astype(np.float32)
            self.ids = np.concatenate([self.ids, ids]).astype(np.int64)

    def remove(self, ids):
        keep = ~np.isin(self.ids, ids)
        self.X, self.ids = self.X[keep], self.ids[keep]
        return True

    def write(self, path):
        buffer = io.BytesIO()
        np.savez(buffer, X=self.X, ids=self.ids, similarity=np.array(self.similarity))
        Path(path).write_bytes(buffer.getvalue())


class NumpyBackend(IndexBackend):
    name = "numpy"

    def check(self, spec, vector_dim, distance, n_vectors):
        if spec != "exact":
            from visret import VisretError

            raise VisretError(f"the numpy backend knows 'exact' only, not {spec!r}")

    def build(self, spec, vector_dim, distance, shards, ids):
        structure = NumpyStructure(np.zeros((0, vector_dim), np.float32), np.zeros(0, np.int64), distance.similarity)
        structure.add(shards, ids)
        return structure

    def read(self, path, distance, mmap=False):
        with np.load(path, allow_pickle=False) as data:
            return NumpyStructure(data["X"], data["ids"], bool(data["similarity"]))


class NumpyBackendPlugin:
    @hookimpl
    def register_index_backends(self, register):
        register(NumpyBackend)
