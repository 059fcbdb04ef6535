"""k-NN evaluation reports, checked against an independent computation."""

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

import visret
from visret import VisretError, evaluate_knn, get_extractor, open_index
from visret.images._folders import scan_folder
from visret.images._decode import read_image
from visret.evaluation.metrics import average_precision

HOG32 = {"size": 32, "pixels_per_cell": 4}


def without_cost(report) -> dict:
    """The report's results, without timings and memory (which differ from run to run)."""
    return {key: value for key, value in report.to_dict().items() if key != "cost"}


def features(folder, extractor):
    records = scan_folder(folder)
    images = [read_image(r.path, extractor.input_spec)[0] for r in records]
    return extractor.extract(images), np.array([r.label for r in records])


def test_report_matches_an_independent_brute_force_computation(digits, digits_index):
    report = evaluate_knn(digits / "test", digits_index, k=5, workers=1)
    extractor = get_extractor("hog", **HOG32)
    X_train, y_train = features(digits / "train", extractor)
    X_test, y_test = features(digits / "test", extractor)
    knn = KNeighborsClassifier(5, algorithm="brute").fit(X_train, y_train)
    distances = np.linalg.norm(X_test[:, None] - X_train[None], axis=-1)
    order = np.argsort(distances, axis=1, kind="stable")
    relevant = y_train[order] == y_test[:, None]
    assert report.n_queries == 50 and report.k == 5
    assert report.accuracy == pytest.approx(np.mean(knn.predict(X_test) == y_test), abs=0.021)  # one tie may differ
    assert report.map == pytest.approx(np.mean(average_precision(relevant, [15] * 50)), abs=1e-4)
    assert report.precision_at_k == pytest.approx(relevant[:, :5].mean(), abs=1e-6)
    assert np.array(report.confusion_matrix).sum() == 50
    assert np.trace(report.confusion_matrix) == round(report.accuracy * 50)
    assert set(report.per_class) == {str(d) for d in range(10)}
    assert report.accuracy > 0.85


def test_training_folder_and_extractor_give_the_same_report_as_a_saved_index(digits, digits_index):
    from_index = without_cost(evaluate_knn(digits / "test", digits_index, k=3, workers=1))
    from_folder = evaluate_knn(digits / "test", train=digits / "train", extractor="hog", params=HOG32, k=3, workers=1)
    assert without_cost(from_folder) == from_index


def test_evaluation_needs_labels(digits_index, tmp_path):
    from PIL import Image

    Image.new("L", (8, 8)).save(tmp_path / "unlabelled.png")
    with pytest.raises(VisretError, match="no labelled images"):
        evaluate_knn(tmp_path, digits_index)
    with pytest.raises(VisretError, match="either an index or a training folder"):
        evaluate_knn(tmp_path, digits_index, train=tmp_path)
    with open_index(digits_index) as index:
        with pytest.raises(VisretError, match="k, cut-offs and depth must be at least 1"):
            evaluate_knn(tmp_path, index, k=0)


def test_evaluating_embeddings_directly_equals_evaluating_the_index(digits, digits_index):
    extractor = get_extractor("hog", **HOG32)
    X_train, y_train = features(digits / "train", extractor)
    X_test, y_test = features(digits / "test", extractor)
    direct = visret.evaluate_features(X_train, y_train, X_test, y_test, k=5, at=(1, 10))
    via_index = evaluate_knn(digits / "test", digits_index, k=5, at=(1, 10), workers=1)
    assert without_cost(direct) == without_cost(via_index)
    assert set(direct.precision_at) == {1, 10}
    relevant = y_train[np.argsort(np.linalg.norm(X_test[:, None] - X_train[None], axis=-1), axis=1, kind="stable")]
    assert direct.precision_at[10] == pytest.approx(np.mean(relevant[:, :10] == y_test[:, None]), abs=1e-6)


def test_leave_one_out_excludes_each_query_itself(digits, digits_index):
    extractor = get_extractor("hog", **HOG32)
    X, y = features(digits / "train", extractor)
    report = visret.evaluate_features(X, y, k=1, at=(1, 5))
    distances = np.linalg.norm(X[:, None] - X[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    order = np.argsort(distances, axis=1, kind="stable")[:, :-1]  # self (inf) ranks last: drop it
    relevant = y[order] == y[:, None]
    assert report.protocol == "loo" and report.n_queries == 150
    assert report.accuracy == pytest.approx(np.mean(relevant[:, 0]), abs=1 / 150)
    assert report.map == pytest.approx(np.mean(average_precision(relevant, [14] * 150)), abs=1e-4)
    via_index = evaluate_knn(index=digits_index, k=1, at=(1, 5))
    assert without_cost(via_index) == without_cost(report)


def test_ranking_a_large_collection_stays_in_bounded_memory():
    import tracemalloc

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 32)).astype(np.float32) * 3
    labels = rng.integers(0, 10, 100_000)
    collection = centres[labels] + rng.normal(size=(100_000, 32)).astype(np.float32)
    query_labels = rng.integers(0, 10, 250)
    queries = centres[query_labels] + rng.normal(size=(250, 32)).astype(np.float32)
    tracemalloc.start()
    report = visret.evaluate_features(collection, labels.astype(str), queries, query_labels.astype(str), k=5)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert report.n_queries == 250 and report.accuracy > 0.95
    # ranking all 250 queries at once would hold 25M cells of distances, ids and class codes
    # (20 bytes a cell: 500 MB) before any metric; blocks of RANKING_BLOCK_CELLS keep it lower
    assert peak < 400 * 2**20


@pytest.mark.parametrize("depth", [None, 7])
def test_held_out_queries_read_only_the_labels_their_rankings_return(digits, digits_index, monkeypatch, depth):
    """A held-out evaluation looks up the labels of the ids it ranks and the class sizes, never every entry's
    label (10 s for 100 queries at 10M entries): the same report as ranking the embeddings directly."""
    from visret.index._reader import IndexReader

    extractor = get_extractor("hog", **HOG32)
    X_train, y_train = features(digits / "train", extractor)
    X_test, y_test = features(digits / "test", extractor)
    direct = visret.evaluate_features(X_train, y_train, X_test, y_test, k=5, at=(1, 5), depth=depth)

    def every_label(self):
        raise AssertionError("read every entry's label")

    monkeypatch.setattr(IndexReader, "labelled_ids", every_label)
    via_index = evaluate_knn(digits / "test", digits_index, k=5, at=(1, 5), depth=depth, workers=1)
    assert without_cost(direct) == without_cost(via_index)
