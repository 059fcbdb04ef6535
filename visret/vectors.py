"""FAISS indexes over embeddings: creation per metric, search, and distances users can read.

Distances returned are Euclidean for ``l2`` (FAISS gives squares), ``1 - cosine similarity``
for ``cosine`` and the L1 norm for ``l1``.
"""

from __future__ import annotations

import os

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
    return faiss.IndexIDMap2(faiss.index_factory(dim, factory, _FAISS_METRIC[metric]))


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
