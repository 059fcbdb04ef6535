"""k-nearest-neighbour voting, and the k-NN classifier head built on it.

Votes are uniform or weighted by inverse distance. Ties go to the tied class whose nearest
member ranks first, so predictions never depend on label order or hashing.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from visret.classifier import Classifier
from visret.distances import get_distance
from visret.params import check_choice, check_positive_int
from visret.search import ExactSearch

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


class KNNClassifier(Classifier):
    """k-nearest neighbours over embeddings, searched with FAISS."""

    name: ClassVar[str] = "knn"
    search_space: ClassVar[dict[str, tuple]] = {"k": (1, 3, 5, 10), "weights": ("uniform", "distance")}

    def __init__(self, k: int = 5, weights: str = "uniform", metric: str = "l2"):
        self.k = k
        self.weights = weights
        self.metric = metric

    def validate(self) -> None:
        check_positive_int("k", self.k)
        check_choice("weights", self.weights, WEIGHTINGS)
        get_distance(self.metric)

    def fit(self, X: np.ndarray, y) -> KNNClassifier:
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y).astype(str)
        if len(X) != len(y) or len(X) == 0:
            raise ValueError(f"X and y must be non-empty and of equal length, got {len(X)} and {len(y)}")
        self.classes_, self.codes_ = np.unique(y, return_inverse=True)
        self.X_ = X
        distance = get_distance(self.metric)
        self.search_ = ExactSearch([distance.prepare(X)], np.arange(len(X)), distance)
        return self

    def kneighbors(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(distances, ids)`` of the k nearest training vectors."""
        return self.search_.search(get_distance(self.metric).prepare(X), self.k)

    def _vote(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        distances, ids = self.kneighbors(X)
        codes = np.where(ids >= 0, self.codes_[np.maximum(ids, 0)], -1)
        return vote(codes, distances, len(self.classes_), self.weights)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._vote(X)[1]

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self._vote(X)[0]]

    def get_state(self) -> dict[str, np.ndarray]:
        return {"X": self.X_, "y": self.classes_[self.codes_]}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.fit(state["X"], state["y"])
