"""Evaluation protocols: stratified splits and folds never leak and cover what they should."""

import numpy as np
import pytest

from visret.evaluation._protocols import stratified_folds, stratified_test_mask


def labels_of(counts):
    return np.repeat([f"c{i}" for i in range(len(counts))], counts)


def test_split_is_stratified_seeded_and_disjoint():
    labels = labels_of([50, 30, 7, 2])
    mask = stratified_test_mask(labels, 0.2, seed=3)
    assert np.array_equal(mask, stratified_test_mask(labels, 0.2, seed=3))
    assert not np.array_equal(mask, stratified_test_mask(labels, 0.2, seed=4))
    for label, expected in zip(["c0", "c1", "c2", "c3"], [10, 6, 1, 1]):
        members = labels == label
        assert mask[members].sum() == expected and (~mask[members]).sum() >= 1  # every class keeps training images


def test_folds_are_seeded_shuffled_and_balanced_within_every_class():
    labels = labels_of([23, 11, 6])
    fold = stratified_folds(labels, 5, seed=0)
    assert np.array_equal(fold, stratified_folds(labels, 5, seed=0))
    assert len({tuple(stratified_folds(labels, 5, seed=s)) for s in range(5)}) == 5
    assert len({int(stratified_folds(labels, 5, seed=s)[0]) for s in range(20)}) > 1  # shuffled, not dealt in input order
    sizes = np.bincount(fold, minlength=5)
    assert sizes.max() - sizes.min() <= 1
    for label in np.unique(labels):
        per_fold = np.bincount(fold[labels == label], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1


@pytest.mark.parametrize("call, message", [
    (lambda: stratified_test_mask(["a", "b"], 1.5), "test size must be between 0 and 1"),
    (lambda: stratified_folds(["a", "b"], 5), "2 images cannot make 5 folds"),
    (lambda: stratified_folds(["a"] * 9, 1), "folds must be at least 2"),
])
def test_bad_protocol_settings(call, message):
    with pytest.raises(ValueError, match=message):
        call()
