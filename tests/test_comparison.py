"""Comparing extractors: protocols give the same split to everyone, learned state never sees queries."""

import json

import numpy as np
import pytest

import visret
from visret import VisretError
from visret.evaluation._comparison import compare


def test_split_comparison_matches_evaluating_each_extractor_on_the_same_split(digits):
    from visret.images._folders import scan_folder
    from visret.images._decode import read_image
    from visret.evaluation._protocols import stratified_test_mask

    result = compare(digits / "train", ["pixels", "hog"], protocol="split", test_size=0.25, seed=2, k=3, at=(1, 5), workers=1)
    records = scan_folder(digits / "train")
    labels = np.array([r.label for r in records])
    is_test = stratified_test_mask(labels, 0.25, seed=2)
    for name in ("pixels", "hog"):
        extractor = visret.get_extractor(name)
        X = np.stack([extractor.extract([read_image(r.path, extractor.input_spec)[0]])[0] for r in records])
        direct = visret.evaluate_features(X[~is_test], labels[~is_test], X[is_test], labels[is_test], k=3, at=(1, 5))
        report = result.reports[name]
        assert report.n_queries == int(is_test.sum()) == 40
        assert report.map == pytest.approx(direct.map) and report.accuracy == pytest.approx(direct.accuracy)
        assert report.precision_at == pytest.approx(direct.precision_at)
    assert result.reports["hog"].map > result.reports["pixels"].map


def test_kfold_queries_every_image_once_and_loo_queries_all(digits):
    kfold = compare(digits / "train", ["pixels"], protocol="kfold", folds=3, workers=1).reports["pixels"]
    loo = compare(digits / "train", ["pixels"], protocol="loo", workers=1).reports["pixels"]
    assert kfold.n_queries == loo.n_queries == 150
    assert np.sum(kfold.confusion_matrix) == 150 and kfold.protocol == "kfold"
    assert loo.precision_at[1] > 0.9  # self excluded, yet the nearest other digit is mostly of the same class


def test_learned_extractors_are_fitted_on_the_collection_only(digits, tmp_path):
    """A codebook learned from one fold's collection differs from one learned from all images."""
    spec = {"name": "post", "params": {"extractor": {"name": "pixels", "params": {"size": 8}}, "steps": ["pca:3"]}}
    split = compare(digits / "train", [spec], protocol="split", seed=0, workers=1)
    name = visret.evaluation._comparison.spec_name(spec)
    from visret.images._folders import scan_folder
    from visret.images._decode import read_image
    from visret.evaluation._protocols import stratified_test_mask

    records = scan_folder(digits / "train")
    labels = np.array([r.label for r in records])
    is_test = stratified_test_mask(labels, 0.2, seed=0)
    pixels = visret.get_extractor("pixels", size=8)
    X = np.stack([pixels.extract([read_image(r.path, pixels.input_spec)[0]])[0] for r in records]).astype(np.float64)

    def pca_report(fit_rows):
        mean = X[fit_rows].mean(axis=0)
        components = np.linalg.svd(X[fit_rows] - mean, full_matrices=False)[2][:3]
        Z = (X - mean) @ components.T
        return visret.evaluate_features(Z[~is_test], labels[~is_test], Z[is_test], labels[is_test])

    fitted_on_collection = pca_report(~is_test)
    fitted_on_everything = pca_report(np.ones(len(X), bool))
    assert split.reports[name].map == pytest.approx(fitted_on_collection.map, abs=1e-4)
    assert fitted_on_collection.map != pytest.approx(fitted_on_everything.map, abs=1e-4)


def test_leaderboard_formats(digits):
    result = compare(digits / "train", ["pixels", "hog"], protocol="split", workers=1)
    data = json.loads(json.dumps(result.to_dict()))
    assert [row["extractor"] for row in data["leaderboard"]] == ["pixels", "hog"]
    assert {"accuracy", "balanced_accuracy", "map", "P@10", "R@10", "mAP@10", "nDCG@10", "query_ms_p50"} <= set(data["leaderboard"][0])
    markdown = result.to_markdown()
    best_map = max(r.map for r in result.reports.values())
    assert f"**{best_map:.4f}**" in markdown and markdown.count("\n") == 3
    csv_text = result.to_csv()
    assert csv_text.splitlines()[0].startswith("extractor,supervised,accuracy,balanced_accuracy,map")
    assert len(csv_text.splitlines()) == 3


@pytest.mark.parametrize("kwargs, message", [
    ({"protocol": "bootstrap"}, "protocol must be one of"),
    ({"extractors": []}, "name at least one extractor"),
    ({"extractors": ["nope"]}, "unknown extractor 'nope'"),
    ({"protocol": "holdout"}, "holdout needs labelled images"),
])
def test_bad_comparisons_are_one_clear_error(digits, kwargs, message):
    arguments = {"extractors": ["pixels"], **kwargs}
    with pytest.raises(VisretError, match=message):
        compare(digits / "train", **arguments)


def test_compare_pipelines_keeps_each_result_as_it_finishes_and_a_rerun_trains_only_what_is_missing(digits, tmp_path, cli):
    import json

    names = ["hog(size=32,pixels_per_cell=8)+knn", "color-hist+knn"]
    pipelines = ",".join(names)
    args = ["compare", digits / "train", "--pipelines", pipelines, "--save-dir", tmp_path / "models", "--html", tmp_path / "r.html", "--json"]
    first = cli(*args)
    assert first.exit_code == 0, first.output
    reports = sorted(p.name for p in (tmp_path / "models").glob("*.report.json"))
    assert len(reports) == 2 and (tmp_path / "r.html").is_file()
    # as if killed after the first pipeline: the second's result is gone
    second_report = tmp_path / "models" / reports[1]
    lost = json.loads(second_report.read_text())["report"]["pipeline"]
    second_report.unlink()
    again = cli(*args)
    assert again.exit_code == 0, again.output
    board = {row["pipeline"]: row["accuracy"] for row in json.loads(again.stdout)["leaderboard"]}
    assert board == {row["pipeline"]: row["accuracy"] for row in json.loads(first.stdout)["leaderboard"]}
    assert json.loads(again.stdout)["reused"] == [name for name in names if name != lost]
    assert "taken from" in again.stderr and second_report.is_file()
    changed = cli(*args[:-1], "--seed", "1", "--json")  # other settings: nothing is taken
    assert changed.exit_code == 0 and json.loads(changed.stdout)["reused"] == []


def test_a_comparison_header_states_only_the_protocol_it_used(digits, tmp_path):
    from visret.classification._comparison import compare_pipelines
    from visret.evaluation._comparison import compare

    result = compare_pipelines(digits / "train", "hog(size=32,pixels_per_cell=8)+knn", test_data=digits / "test", workers=1)
    assert result.settings["test"] == str(digits / "test") and "test_split" not in result.settings and "test_data" not in result.settings
    holdout = compare(digits, ["hog"], protocol="holdout", workers=1)
    assert "test_size" not in holdout.settings and "folds" not in holdout.settings
    kfold = compare(digits / "train", ["hog"], protocol="kfold", folds=3, workers=1)
    assert kfold.settings["folds"] == 3 and "test_size" not in kfold.settings


def test_a_cnn_cut_short_by_the_budget_is_trained_again_not_taken_from_its_report(digits, tmp_path):
    from visret.classification._comparison import compare_pipelines

    first = compare_pipelines(digits / "train", "cnn/lenet5", save_dir=tmp_path, budget_minutes=0.0001, epochs=50, patience=100)
    assert first.reports["cnn/lenet5"].stopped.startswith("time budget") and not list(tmp_path.glob("*.report.json"))
    again = compare_pipelines(digits / "train", "cnn/lenet5", save_dir=tmp_path, budget_minutes=0.0001, epochs=50, patience=100)
    assert again.reused == [] and again.reports["cnn/lenet5"].resumed  # the run goes on from its last epoch
