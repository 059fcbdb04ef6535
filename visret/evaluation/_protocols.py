"""Evaluation protocols: which images are queries and which form the collection they search.

All splits are stratified by class and seeded, so every extractor in a comparison sees the
same split.
"""

from __future__ import annotations

import numpy as np

PROTOCOLS = ("holdout", "split", "kfold", "loo")


def stratified_test_mask(labels, test_size: float = 0.2, seed: int = 0) -> np.ndarray:
    """True for about ``test_size`` of each class (at least one, never all, of a class with two or more)."""
    if not 0 < test_size < 1:
        raise ValueError(f"test size must be between 0 and 1, got {test_size}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(len(members) * test_size))
        if len(members) >= 2:
            n_test = min(max(n_test, 1), len(members) - 1)
        mask[members[:n_test]] = True
    return mask


def stratified_folds(labels, folds: int = 5, seed: int = 0) -> np.ndarray:
    """The fold (0 .. folds-1) of each item: each class dealt round-robin after a seeded shuffle,
    so that every item is tested exactly once and classes spread evenly over folds."""
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    labels = np.asarray(labels)
    if len(labels) < folds:
        raise ValueError(f"{len(labels)} images cannot make {folds} folds")
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), np.int64)
    offset = 0
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        fold[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)  # keeps fold sizes even across classes
    return fold
