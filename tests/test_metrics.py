"""Metrics on hand-computed examples."""

import numpy as np
import pytest

from visret.evaluation.metrics import average_precision, confusion_matrix, per_class_scores, precision_at_k


def test_average_precision_by_hand():
    # relevant at ranks 1, 3, 6 of 6; 4 relevant items in the collection (one never retrieved)
    relevant = np.array([[1, 0, 1, 0, 0, 1]], bool)
    expected = (1 / 1 + 2 / 3 + 3 / 6) / 4
    assert average_precision(relevant, [4])[0] == pytest.approx(expected)
    assert average_precision(relevant, [3])[0] == pytest.approx((1 + 2 / 3 + 0.5) / 3)


def test_average_precision_extremes():
    assert average_precision(np.array([[1, 1, 0, 0]], bool), [2])[0] == 1.0
    assert average_precision(np.array([[0, 0, 0]], bool), [2])[0] == 0.0
    assert np.isnan(average_precision(np.array([[0, 0]], bool), [0])[0])


def test_average_precision_equals_scikit_learn_on_a_full_ranking():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(3)
    truth = rng.random(50) < 0.3
    scores = rng.random(50)
    ranked = truth[np.argsort(-scores)]
    assert average_precision(ranked[None], [truth.sum()])[0] == pytest.approx(average_precision_score(truth, scores))


def test_precision_at_k():
    relevant = np.array([[1, 0, 1, 1], [0, 0, 0, 1]], bool)
    np.testing.assert_allclose(precision_at_k(relevant, 2), [0.5, 0.0])
    np.testing.assert_allclose(precision_at_k(relevant, 4), [0.75, 0.25])


def test_confusion_and_per_class_scores():
    classes = ["cat", "dog", "fox"]
    true = ["cat", "cat", "cat", "dog", "dog", "fox"]
    pred = ["cat", "dog", "cat", "dog", "cat", ""]  # the fox query abstained
    matrix = confusion_matrix(true, pred, classes)
    assert matrix.tolist() == [[2, 1, 0], [1, 1, 0], [0, 0, 0]]
    scores = per_class_scores(matrix, classes)
    assert scores["cat"] == {"precision": 2 / 3, "recall": 2 / 3, "f1": pytest.approx(2 / 3), "support": 3}
    assert scores["dog"]["precision"] == 0.5 and scores["dog"]["recall"] == 0.5
    assert scores["fox"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_recall_map_at_k_and_ndcg_by_hand():
    from visret.evaluation.metrics import average_precision_at_k, ndcg_at_k, recall_at_k

    # relevant at ranks 1 and 3; 4 relevant items exist
    relevant = np.array([[1, 0, 1, 0, 0]], bool)
    assert recall_at_k(relevant, [4], 3)[0] == pytest.approx(2 / 4)
    assert average_precision_at_k(relevant, [4], 3)[0] == pytest.approx((1 + 2 / 3) / 3)
    assert average_precision_at_k(relevant, [1], 3)[0] == pytest.approx((1 + 2 / 3) / 1)
    dcg = 1 / np.log2(2) + 1 / np.log2(4)
    ideal = 1 / np.log2(2) + 1 / np.log2(3) + 1 / np.log2(4)
    assert ndcg_at_k(relevant, [4], 3)[0] == pytest.approx(dcg / ideal)
    assert ndcg_at_k(np.array([[1, 1, 0]], bool), [2], 3)[0] == pytest.approx(1.0)
    assert np.isnan(recall_at_k(relevant, [0], 3)[0])


def test_balanced_accuracy_weighs_classes_equally():
    from visret.evaluation.metrics import balanced_accuracy

    matrix = np.array([[90, 10], [5, 5]])  # accuracy 0.86, but the small class is at 0.5
    assert balanced_accuracy(matrix) == pytest.approx((0.9 + 0.5) / 2)
    assert balanced_accuracy(np.array([[3, 0], [0, 0]])) == 1.0  # a class without test images is left out


def test_interpolated_precision_at_standard_recall_levels():
    from visret.evaluation.metrics import RECALL_LEVELS, interpolated_precision

    # ranks: R N R N ; 2 relevant -> recall 0.5 at precision 1 (rank 1), recall 1 at precision 0.5 (rank 3)
    curve = interpolated_precision(np.array([[1, 0, 1, 0]], bool), [2])[0]
    expected = np.where(RECALL_LEVELS <= 0.5, 1.0, 2 / 3)
    np.testing.assert_allclose(curve, expected)
