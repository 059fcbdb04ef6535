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
