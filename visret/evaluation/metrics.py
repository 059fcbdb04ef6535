"""Classification and retrieval metrics on ranked neighbour lists.

Retrieval metrics take a boolean matrix ``relevant`` of shape ``(n_queries, n_ranked)`` whose
row ``q`` says, rank by rank, whether the retrieved item has the query's class.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def average_precision(relevant: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """AP per query over the whole ranking: mean of precision@i at each relevant rank i.

    ``n_relevant`` is the number of relevant items in the collection for each query; items
    never retrieved count as missed. Queries with no relevant item get NaN.
    """
    relevant = np.atleast_2d(relevant).astype(np.float64)
    hits = np.cumsum(relevant, axis=1)
    precision = hits / np.arange(1, relevant.shape[1] + 1)
    total = (precision * relevant).sum(axis=1)
    n_relevant = np.asarray(n_relevant, dtype=np.float64)
    return np.divide(total, n_relevant, out=np.full(len(total), np.nan), where=n_relevant > 0)


def precision_at_k(relevant: np.ndarray, k: int) -> np.ndarray:
    """Fraction of the first ``k`` retrieved items that are relevant, per query."""
    return np.atleast_2d(relevant)[:, :k].mean(axis=1)


def recall_at_k(relevant: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Fraction of all relevant items found in the first ``k``, per query (NaN without any)."""
    hits = np.atleast_2d(relevant)[:, :k].sum(axis=1).astype(np.float64)
    n_relevant = np.asarray(n_relevant, dtype=np.float64)
    return np.divide(hits, n_relevant, out=np.full(len(hits), np.nan), where=n_relevant > 0)


def average_precision_at_k(relevant: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """AP truncated at rank ``k``: sum of precision@i at relevant ranks i <= k, over min(k, n_relevant)."""
    top = np.atleast_2d(relevant)[:, :k].astype(np.float64)
    precision = np.cumsum(top, axis=1) / np.arange(1, top.shape[1] + 1)
    total = (precision * top).sum(axis=1)
    denominator = np.minimum(np.asarray(n_relevant, dtype=np.float64), k)
    return np.divide(total, denominator, out=np.full(len(total), np.nan), where=denominator > 0)


def ndcg_at_k(relevant: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Normalised discounted cumulative gain at ``k`` with binary gains (1 / log2(rank + 1))."""
    top = np.atleast_2d(relevant)[:, :k].astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    dcg = (top * discounts).sum(axis=1)
    ideal_hits = np.minimum(np.asarray(n_relevant), top.shape[1]).astype(int)
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[ideal_hits]
    return np.divide(dcg, ideal, out=np.full(len(dcg), np.nan), where=ideal > 0)


RECALL_LEVELS = np.linspace(0.0, 1.0, 11)


def interpolated_precision(relevant: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """Precision at the 11 standard recall levels (0, 0.1, ... 1), interpolated as the best
    precision at any recall at least that level; one row per query (NaN rows without relevant items)."""
    relevant = np.atleast_2d(relevant).astype(np.float64)
    hits = np.cumsum(relevant, axis=1)
    n_relevant = np.asarray(n_relevant, dtype=np.float64)[:, None]
    recall = np.divide(hits, n_relevant, out=np.zeros_like(hits), where=n_relevant > 0)
    precision = hits / np.arange(1, relevant.shape[1] + 1)
    # best precision from each rank onwards (recall only grows along the ranking)
    best_after = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    out = np.zeros((len(relevant), len(RECALL_LEVELS)))
    for j, level in enumerate(RECALL_LEVELS):
        reached = recall >= level - 1e-12
        first = np.where(reached.any(axis=1), reached.argmax(axis=1), -1)
        out[:, j] = np.where(first >= 0, best_after[np.arange(len(relevant)), np.maximum(first, 0)], 0.0)
    out[n_relevant[:, 0] <= 0] = np.nan
    return out


def confusion_matrix(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Counts with true classes as rows and predicted classes as columns.

    A prediction outside ``classes`` (an abstention, e.g. no labelled neighbour) is not counted.
    """
    position = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        if p in position:
            matrix[position[t], position[p]] += 1
    return matrix


def balanced_accuracy(matrix: np.ndarray) -> float:
    """Mean recall over the classes that have test images."""
    support = matrix.sum(axis=1)
    recall = np.diag(matrix)[support > 0] / support[support > 0]
    return float(recall.mean()) if recall.size else 0.0


def per_class_scores(matrix: np.ndarray, classes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Precision, recall, F1 and support per class from a confusion matrix (0 where undefined)."""
    tp = np.diag(matrix).astype(np.float64)
    predicted, support = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return {
        c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
        for i, c in enumerate(classes)
    }
