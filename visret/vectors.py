"""FAISS indexes over embeddings: creation per metric, search, and distances users can read.

Distances returned are Euclidean for ``l2`` (FAISS gives squares), ``1 - cosine similarity``
for ``cosine`` and the L1 norm for ``l1``.
"""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np

METRICS = ("l2", "cosine", "l1")
_FAISS_METRIC = {"l2": faiss.METRIC_L2, "cosine": faiss.METRIC_INNER_PRODUCT, "l1": faiss.METRIC_L1}


def check_metric(metric: str, factory: str = "Flat") -> None:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if metric == "l1" and factory != "Flat":
        raise ValueError("metric l1 works with the Flat index only")


def new_index(dim: int, metric: str, factory: str = "Flat") -> faiss.Index:
    """An empty FAISS index whose ids are ours (the entries table's ids)."""
    check_metric(metric, factory)
    try:
        inner = faiss.index_factory(dim, factory, _FAISS_METRIC[metric])
    except RuntimeError:
        raise ValueError(f"{factory!r} is not a FAISS index-factory string for {dim}-d vectors") from None
    return faiss.IndexIDMap2(inner)


def choose_factory(n: int, dim: int, max_memory: int | None = None) -> str:
    """An index type for ``n`` vectors, in the spirit of autofaiss: exact search below 50,000
    vectors, then IVF-Flat, or IVF-PQ when ``max_memory`` (bytes) cannot hold the raw vectors."""
    raw = n * dim * 4
    if n < 50_000 and (max_memory is None or raw <= max_memory):
        return "Flat"
    nlist = int(2 ** round(np.log2(4 * np.sqrt(n))))
    if max_memory is None or raw * 1.1 <= max_memory:
        return f"IVF{nlist},Flat"
    per_vector = max_memory * 0.8 / n  # bytes each vector's PQ code may take
    choices = [m for m in (1, 2, 4, 8, 16, 32, 64, 128) if dim % m == 0]
    fitting = [m for m in choices if m <= per_vector]
    return f"IVF{nlist},PQ{max(fitting) if fitting else choices[0]}"


def train_and_add(index: faiss.Index, vectors: np.ndarray, ids: np.ndarray, metric: str, seed: int = 0) -> None:
    """Train ``index`` on a seeded sample when its type needs training, then add the vectors."""
    prepared = as_search_vectors(vectors, metric)
    if not index.is_trained:
        sample = min(len(prepared), 100_000)
        rows = np.sort(np.random.default_rng(seed).choice(len(prepared), sample, replace=False))
        index.train(prepared[rows])
    index.add_with_ids(prepared, np.asarray(ids, dtype=np.int64))


def inner_index(index: faiss.Index) -> faiss.Index:
    """The index under the id map and any pre-transform (OPQ, PCA), downcast to its type."""
    inner = faiss.downcast_index(index.index if isinstance(index, faiss.IndexIDMap) else index)
    while isinstance(inner, faiss.IndexPreTransform):
        inner = faiss.downcast_index(inner.index)
    return inner


def set_search_params(index: faiss.Index, nprobe: int | None = None, ef_search: int | None = None) -> None:
    """Query-time knobs: inverted lists probed (IVF) and the HNSW search beam."""
    inner = inner_index(index)
    if nprobe is not None and hasattr(inner, "nprobe"):
        inner.nprobe = int(nprobe)
    if ef_search is not None and hasattr(inner, "hnsw"):
        inner.hnsw.efSearch = int(ef_search)


def supports_removal(index: faiss.Index) -> bool:
    return not hasattr(inner_index(index), "hnsw")


def read(path: Path, mmap: bool = False) -> faiss.Index:
    """Read an index file, memory-mapped (read-only) when asked."""
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
    return faiss.read_index(str(path), flags)


def as_search_vectors(vectors: np.ndarray, metric: str) -> np.ndarray:
    """float32, C-contiguous, 2-D; L2-normalised for cosine."""
    vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
    if metric == "cosine":
        vectors = vectors.copy()
        faiss.normalize_L2(vectors)
    return vectors


def add(index: faiss.Index, vectors: np.ndarray, ids: np.ndarray, metric: str) -> None:
    index.add_with_ids(as_search_vectors(vectors, metric), np.asarray(ids, dtype=np.int64))


def search(index: faiss.Index, vectors: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours as ``(distances, ids)``; missing neighbours have id -1.

    A single query runs on one thread (spawning a thread team costs more than it saves);
    batches use every core.
    """
    queries = as_search_vectors(vectors, metric)
    faiss.omp_set_num_threads(1 if len(queries) == 1 else os.cpu_count() or 1)
    raw, ids = index.search(queries, min(k, max(index.ntotal, 1)))
    if metric == "l2":
        distances = np.sqrt(np.maximum(raw, 0.0))
    elif metric == "cosine":
        distances = 1.0 - raw
    else:
        distances = raw
    return distances.astype(np.float32), ids
