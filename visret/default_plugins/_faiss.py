"""The built-in index backend: FAISS, any index-factory string (``visret.index._vectors`` holds the FAISS
details); ``visret.default_plugins.faiss_backend`` registers it."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from visret.index import _vectors as vectors
from visret.index._faiss_structure import FaissStructure
from visret.index.backends import IndexBackend
from visret.index.distances import Distance


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
