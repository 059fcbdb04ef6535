"""k-NN voting and the k-NN classifier head."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.neighbors import KNeighborsClassifier

from visret import VisretError, get_classifier
from visret.index._voting import vote
from visret_heads.knn import KNNClassifier


def test_majority_vote():
    codes = np.array([[0, 1, 1, 2, 1]])
    predicted, proba = vote(codes, np.ones((1, 5)), 3)
    assert predicted.tolist() == [1]
    np.testing.assert_allclose(proba, [[0.2, 0.6, 0.2]])


def test_ties_go_to_the_class_whose_nearest_member_ranks_first():
    codes = np.array([[2, 0, 0, 2], [0, 2, 2, 0]])
    predicted, _ = vote(codes, np.ones((2, 4)), 3)
    assert predicted.tolist() == [2, 0]


def test_distance_weighting_can_overturn_the_majority():
    codes = np.array([[1, 0, 0]])
    distances = np.array([[0.1, 1.0, 1.0]])
    assert vote(codes, distances, 2, "uniform")[0].tolist() == [0]
    predicted, proba = vote(codes, distances, 2, "distance")
    assert predicted.tolist() == [1]
    np.testing.assert_allclose(proba, [[2 / 12, 10 / 12]])


def test_missing_neighbours_and_unlabelled_entries_do_not_vote():
    predicted, proba = vote(np.array([[-1, 1, -1], [-1, -1, -1]]), np.ones((2, 3)), 2)
    assert predicted.tolist() == [1, -1]
    assert proba[1].tolist() == [0.0, 0.0]


def test_knn_head_agrees_with_scikit_learn():
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    train, test = slice(0, 1400), slice(1400, None)
    ours = get_classifier("knn", k=5).fit(X[train], y[train])
    theirs = KNeighborsClassifier(n_neighbors=5, algorithm="brute").fit(X[train], y[train])
    agreement = np.mean(ours.predict(X[test]) == theirs.predict(X[test]).astype(str))
    assert agreement > 0.99  # exact agreement except where sklearn breaks ties by label order
    assert np.mean(ours.predict(X[test]) == y[test].astype(str)) > 0.95
    assert ours.predict_proba(X[test]).shape == (397, 10)


def test_knn_head_round_trips_through_its_file(tmp_path):
    X, y = load_digits(return_X_y=True)
    head = KNNClassifier(k=3, weights="distance", metric="cosine").fit(X[:300], y[:300])
    head.save(tmp_path / "head.npz")
    again = KNNClassifier.load(tmp_path / "head.npz")
    assert again.get_params() == head.get_params()
    np.testing.assert_array_equal(again.predict_proba(X[300:400]), head.predict_proba(X[300:400]))
    np.testing.assert_array_equal(again.classes_, head.classes_)


@pytest.mark.parametrize("params, message", [({"k": 0}, "k must be an integer"), ({"weights": "x"}, "weights must be one of")])
def test_bad_head_parameters(params, message):
    with pytest.raises(VisretError, match=message):
        get_classifier("knn", **params)
