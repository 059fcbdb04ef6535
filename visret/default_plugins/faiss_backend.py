"""The built-in index backend: FAISS, any index-factory string (``visret.index._vectors`` holds the FAISS
details), registered through the same hook as third-party backends."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from visret.index import _vectors as vectors
from visret.index.backends import IndexBackend, SearchStructure
from visret.index.distances import Distance
from visret.plugins.hookspecs import hookimpl


class FaissStructure(SearchStructure):
    def __init__(self, index):
        self.index = index

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def d(self) -> int:
        return int(self.index.d)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def add(self, shards: Sequence[np.ndarray | Path], ids: np.ndarray) -> None:
        vectors.add(self.index, shards, ids)

    def remove(self, ids: np.ndarray) -> bool:
        if not vectors.supports_removal(self.index):
            return False
        self.index.remove_ids(np.asarray(ids, dtype=np.int64))
        return True

    def write(self, path: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(path))

    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        vectors.set_search_params(self.index, nprobe, ef_search)


class FaissBackend(IndexBackend):
    """FAISS: IVF, PQ, HNSW, OPQ... trained on a seeded sample, filled shard by shard."""

    name: ClassVar[str] = "faiss"

    def check(self, spec: str, vector_dim: int, distance: Distance, n_vectors: int) -> None:
        vectors.check_factory(spec, vector_dim, distance, n_vectors)

    def build(self, spec, vector_dim, distance, shards, ids) -> FaissStructure:
        index = vectors.new_index(vector_dim, distance, spec)
        vectors.fill(index, shards, ids)
        return FaissStructure(index)

    def read(self, path: Path, distance: Distance, mmap: bool = False) -> FaissStructure:
        return FaissStructure(vectors.read(path, mmap))


@hookimpl
def register_index_backends(register):
    register(FaissBackend)
