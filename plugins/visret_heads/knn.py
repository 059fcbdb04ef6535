"""The ``knn`` head: k-nearest neighbours over embeddings, searched exactly with FAISS."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from visret.features import Classifier
from visret.features.params import check_choice, check_positive_int

# The index package (FAISS) is imported where the head works, not when plugins load: `visret --help` needs none of it.


class KNNClassifier(Classifier):
    """k-nearest neighbours over embeddings, searched with FAISS."""

    name: ClassVar[str] = "knn"
    search_space: ClassVar[dict[str, tuple]] = {"k": (1, 3, 5, 10), "weights": ("uniform", "distance")}

    def __init__(self, k: int = 5, weights: str = "uniform", metric: str = "l2"):
        self.k = k
        self.weights = weights
        self.metric = metric

    def validate(self) -> None:
        from visret.index import WEIGHTINGS
        from visret.index.distances import get_distance

        check_positive_int("k", self.k)
        check_choice("weights", self.weights, WEIGHTINGS)
        get_distance(self.metric)

    def fit(self, X: np.ndarray, y) -> KNNClassifier:
        from visret.index import ExactSearch
        from visret.index.distances import get_distance

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
        from visret.index.distances import get_distance

        return self.search_.search(get_distance(self.metric).prepare(X), self.k)

    def _vote(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from visret.index import vote

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
