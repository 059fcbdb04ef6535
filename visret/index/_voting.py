"""k-nearest-neighbour voting: how a query's neighbours become a prediction (the index's vote,
evaluation, and the ``knn`` head of the heads plugin).

Votes are uniform or weighted by inverse distance. Ties go to the tied class whose nearest
member ranks first, so predictions never depend on label order or hashing.
"""

from __future__ import annotations

import numpy as np

WEIGHTINGS = ("uniform", "distance")


def vote(codes: np.ndarray, distances: np.ndarray, n_classes: int, weights: str = "uniform") -> tuple[np.ndarray, np.ndarray]:
    """Vote over neighbours given as class codes ``(n, k)`` (``-1`` = no neighbour or no label).

    Returns ``(predicted codes (n,), vote distributions (n, n_classes))``; a row with no
    labelled neighbour predicts ``-1`` and has an all-zero distribution.
    """
    codes = np.atleast_2d(codes)
    n, k = codes.shape
    if weights == "distance":
        w = 1.0 / np.maximum(np.atleast_2d(distances).astype(np.float64), 1e-12)
    else:
        w = np.ones((n, k))
    valid = codes >= 0
    w = np.where(valid, w, 0.0)
    scores = np.zeros((n, n_classes))
    rows = np.repeat(np.arange(n), k)
    np.add.at(scores, (rows[valid.ravel()], codes[valid]), w[valid])
    # rank of each class's nearest member, for tie-breaking
    first_rank = np.full((n, n_classes), k, dtype=np.int64)
    ranks = np.tile(np.arange(k), n)
    np.minimum.at(first_rank, (rows[valid.ravel()], codes[valid]), ranks[valid.ravel()])
    best = scores.max(axis=1, keepdims=True)
    tied = np.isclose(scores, best) & (scores > 0)
    predicted = np.where(tied, first_rank, k + 1).argmin(axis=1)
    predicted[best[:, 0] <= 0] = -1
    totals = scores.sum(axis=1, keepdims=True)
    proba = np.divide(scores, totals, out=np.zeros_like(scores), where=totals > 0)
    return predicted, proba


def encode_labels(labels, classes: np.ndarray) -> np.ndarray:
    """Map labels to positions in sorted ``classes``; unknown or missing labels map to -1."""
    lookup = {label: i for i, label in enumerate(classes.tolist())}
    return np.array([lookup.get(label, -1) for label in labels], dtype=np.int64)
