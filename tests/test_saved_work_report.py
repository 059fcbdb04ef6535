"""``visret report``: one page from saved pipelines, models and indexes, tested on one labelled folder."""

from __future__ import annotations

import json

import pytest

import visret


@pytest.fixture(scope="module")
def saved_work(digits, tmp_path_factory):
    """What the assignment's earlier commands leave: a feature pipeline, a CNN run (with its checkpoint
    and log) and two indexes, one of them the CNN's latent space."""
    root = tmp_path_factory.mktemp("work")
    hog = {"size": 32, "pixels_per_cell": 4}
    visret.train_pipeline(digits / "train", "hog", "knn", params=hog, out=root / "hog.pipeline", workers=1)
    visret.train_pipeline(digits / "train", model="cnn/lenet5", fine_tune=0, epochs=2, fine_tune_epochs=1, out=root / "lenet.keras")
    visret.build_index(digits / "train", "hog", root / "hog-index", params=hog, workers=1).close()
    visret.build_index(digits / "train", f"model:{root / 'lenet.keras'}", root / "latent-index", workers=1).close()
    return root


def test_one_report_holds_every_model_with_tta_rows_every_index_and_the_pictures(saved_work, digits, tmp_path, cli):
    root = saved_work
    result = cli("report", digits / "test", "--model", root / "hog.pipeline", "--model", root / "lenet.keras",
                 "--model", root / "lenet.best.keras", "--index", root / "hog-index", "--index", root / "latent-index",
                 "--tta", "2", "--show", "6", "--html", tmp_path / "r.html", "--markdown", tmp_path / "r.md", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = {row["model"]: row for row in report["classification"]}
    assert set(rows) == {"hog.pipeline", "lenet.keras", "lenet.best.keras", "hog.pipeline + 2 TTA views",
                         "lenet.keras + 2 TTA views", "lenet.best.keras + 2 TTA views"}
    scored = visret.load_pipeline(root / "hog.pipeline").evaluate(
        [r for r in visret.images.find_images(digits / "test") if r.label is not None], 0, None)
    assert rows["hog.pipeline"]["accuracy"] == pytest.approx(scored.test_accuracy)
    retrieval = {row["index"]: row for row in report["retrieval"]}
    assert retrieval["latent-index"]["extractor"] == "model:lenet.keras"
    with visret.open_index(root / "hog-index") as index:
        assert retrieval["hog-index"]["mAP"] == pytest.approx(visret.evaluate_knn(digits / "test", index, k=5).map)
    page = (tmp_path / "r.html").read_text()
    for caption in ("confusion matrix of lenet.keras", "training curves of lenet.keras", "training curves of lenet.best.keras",
                    "chosen test images, as"):
        assert caption in page
    assert page.count("<img") == 3 + 2 + 1 and "| hog-index | hog |" in (tmp_path / "r.md").read_text()
    assert result.stderr.strip().splitlines()[-1].startswith("report of 6 model rows and 2 indexes: best model ")


def test_a_report_without_models_or_indexes_is_one_line(digits, tmp_path, cli):
    result = cli("report", digits / "test", "--html", tmp_path / "r.html")
    assert result.exit_code == 1 and "give at least one saved model (--model) or index (--index)" in result.output
    assert not (tmp_path / "r.html").exists()


def test_models_and_indexes_of_one_file_name_keep_apart():
    from visret.reports.saved_work import _unique_names

    assert _unique_names(["a/run1/net.keras", "a/run2/net.keras", "b/x.pipeline"]) == ["run1/net.keras", "run2/net.keras", "b/x.pipeline"]
    assert _unique_names(["m/hog.pipeline", "m/cnn.keras"]) == ["hog.pipeline", "cnn.keras"]
