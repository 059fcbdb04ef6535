"""A FAISS index as the ``SearchStructure`` of an index: what the built-in backend builds and reads,
and what ``import-index`` attaches."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from visret.index import _vectors as vectors
from visret.index.backends import SearchStructure


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
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        inner = vectors.inner_index(self.index)
        if hasattr(inner, "hnsw") and inner.hnsw.efSearch < k:
            import faiss

            # A beam narrower than the results asked for returns fewer of them (FAISS pads with -1): 12 of 30
            # on a small graph with a beam of 8. Widened for this search only (shared state is not touched).
            return self.index.search(queries, k, params=faiss.SearchParametersHNSW(efSearch=k))
        return self.index.search(queries, k)

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

    def search_knobs(self) -> dict[str, int]:
        inner = vectors.inner_index(self.index)
        if hasattr(inner, "nprobe"):
            return {"nprobe": int(inner.nlist)}
        if hasattr(inner, "hnsw"):
            return {"ef_search": max(1, int(inner.ntotal))}
        return {}
