"""A FAISS index as the ``SearchStructure`` of an index: what the built-in backend builds and reads,
and what ``import-index`` attaches."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

import faiss
import numpy as np

from visret.index import _vectors as vectors
from visret.index.backends import SearchStructure


class FaissStructure(SearchStructure):
    def __init__(self, index):
        self.index = index
        self._direct_map = False
        self._mapping = threading.Lock()  # a server's threads may ask for vectors at once

    @property
    def holds_codes(self) -> bool:
        """IVF lists of codes smaller than the vectors (SQ, PQ): they decode and forget removed ids."""
        inner = vectors.inner_index(self.index)
        return isinstance(inner, faiss.IndexIVF) and vectors.supports_removal(self.index) and inner.code_size < 4 * inner.d

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        with self._mapping:
            if not self._direct_map:  # id -> place in the lists, built on first use
                faiss.extract_index_ivf(self.index).set_direct_map_type(faiss.DirectMap.Hashtable)
                self._direct_map = True
        return self.index.reconstruct_batch(ids) if len(ids) else np.zeros((0, self.d), np.float32)

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
        if self._direct_map:  # a map of every id, in memory only: rebuilt by whoever reads the file and needs it
            faiss.extract_index_ivf(self.index).set_direct_map_type(faiss.DirectMap.NoMap)
            self._direct_map = False
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
