"""Classification pipelines: the shared split, heads chosen on validation, saving without pickles,
test-time augmentation, Grad-CAM, the train / classify / compare / summary commands, bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visret
from visret.evaluation._recipe import read_recipe
from visret import VisretError
from visret.classification import _tta as tta
from visret.classification._split import make_split

HOG = ["-e", "hog", "-p", "size=32", "-p", "pixels_per_cell=4"]
HOG_PARAMS = {"size": 32, "pixels_per_cell": 4}


@pytest.fixture(scope="module")
def hog_pipeline(digits, tmp_path_factory):
    """A hog + k-NN pipeline trained on the digits' train folder, tested on their test folder."""
    out = tmp_path_factory.mktemp("pipeline") / "hog.pipeline"
    pipeline, report = visret.train_pipeline(digits / "train", "hog", "knn", params=HOG_PARAMS, test_data=digits / "test", out=out, workers=1)
    return pipeline, report, out


def write_blobs(root: Path, n: int = 40, seed: int = 0) -> Path:
    """Two classes of 32x32 grey images: a bright square in the left half, or in the right half."""
    rng = np.random.default_rng(seed)
    for label in ("left", "right"):
        (root / label).mkdir(parents=True)
        for i in range(n):
            image = rng.integers(0, 40, (32, 32), dtype=np.uint8)
            top, left = rng.integers(4, 22), rng.integers(1, 8) + (0 if label == "left" else 16)
            image[top : top + 8, left : left + 8] = 255
            Image.fromarray(image).save(root / label / f"{i}.png")
    return root


# ---- the split -----------------------------------------------------------------------------
def test_the_split_is_seeded_stratified_disjoint_and_honours_a_test_folder(digits):
    split = make_split(digits / "train", seed=3)
    again = make_split(digits / "train", seed=3)
    paths = {name: {str(r.path) for r in part} for name, part in split.parts().items()}
    assert paths == {name: {str(r.path) for r in part} for name, part in again.parts().items()}
    assert not (paths["train"] & paths["val"]) and not (paths["train"] & paths["test"]) and not (paths["val"] & paths["test"])
    assert sum(split.sizes().values()) == 150 and {r.label for r in split.test} == set(split.classes) == {str(d) for d in range(10)}
    assert make_split(digits / "train", seed=4).parts() != split.parts()
    given = make_split(digits / "train", digits / "test")
    assert len(given.test) == 50 and all("/test/" in str(r.path) for r in given.test)
    inferred = make_split(digits)  # a folder holding train/ and test/
    assert {str(r.path) for r in inferred.test} == {str(r.path) for r in given.test}


@pytest.mark.parametrize("layout, message", [
    ({"a": 5}, "needs at least two classes in sub-folders to train a classifier, found 1"),
    ({"a": 5, "b": 1}, "class 'b' has 1 image; each class needs at least 3 for training, validation and test"),
])
def test_a_folder_that_cannot_make_a_fair_split_is_refused(tmp_path, layout, message):
    for label, count in layout.items():
        (tmp_path / label).mkdir()
        for i in range(count):
            Image.fromarray(np.full((8, 8), i * 20, np.uint8)).save(tmp_path / label / f"{i}.png")
    with pytest.raises(VisretError, match=message):
        make_split(tmp_path)


# ---- feature pipelines -----------------------------------------------------------------------
def test_a_feature_pipeline_chooses_its_head_on_validation_and_reports_held_out_scores(hog_pipeline, digits):
    pipeline, report, out = hog_pipeline
    split = make_split(digits / "train", digits / "test")
    assert report.pipeline == "hog+knn" and report.sizes == split.sizes() and report.sizes["test"] == 50
    scores = [c["validation_accuracy"] for c in report.selection]
    assert len(scores) == 8 and report.validation_accuracy == max(scores)
    assert report.params == next(c["params"] for c in report.selection if c["validation_accuracy"] == max(scores))
    assert pipeline.head.k == report.params["k"] and pipeline.head.weights == report.params["weights"]
    labels = np.array([r.label for r in visret.classification._split.labelled_records(digits / "test")])
    predicted = pipeline.predict([r.path for r in visret.classification._split.labelled_records(digits / "test")])
    assert report.test_accuracy == pytest.approx(np.mean(predicted == labels))
    assert np.trace(np.array(report.confusion_matrix)) == round(report.test_accuracy * 50) and report.test_accuracy > 0.8
    assert report.model_bytes > 0 and report.train_seconds > 0 and report.inference_images_per_s > 0
    assert set(json.loads((out / "split.json").read_text())["test"]) == {str(r.path) for r in make_split(digits / "train", digits / "test").test}


def test_a_saved_feature_pipeline_reopens_without_pickles_and_predicts_the_same(hog_pipeline, digits):
    pipeline, _, out = hog_pipeline
    assert sorted(p.name for p in out.iterdir()) == ["head.npz", "pipeline.json", "split.json"]
    with np.load(out / "head.npz", allow_pickle=False) as data:  # plain arrays only
        assert set(data.files) == {"__config__", "X", "y"}
    again = visret.load_pipeline(out)
    images = sorted((digits / "test" / "4").iterdir())
    np.testing.assert_allclose(again.predict_proba(images), pipeline.predict_proba(images))
    assert again.describe() == "hog+knn" and list(again.classes_) == [str(d) for d in range(10)]


@pytest.mark.parametrize("head", ["knn", "logistic", "linear-svm", "svm", "random-forest", "dense"])
def test_every_head_learns_the_digits_and_round_trips(head, tmp_path):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    fitted = visret.get_classifier(head, **({"epochs": 20} if head == "dense" else {})).fit(X[:1000], y[:1000])
    assert np.mean(fitted.predict(X[1000:1400]) == y[1000:1400].astype(str)) > 0.85
    path = tmp_path / f"head{fitted.file_suffix}"
    fitted.save(path)
    again = type(fitted).load(path)
    np.testing.assert_allclose(again.predict_proba(X[1400:]), fitted.predict_proba(X[1400:]), rtol=1e-5, atol=1e-6)


def test_a_saved_pipeline_with_a_damaged_manifest_or_a_foreign_file_name_is_refused(hog_pipeline, tmp_path):
    import shutil

    _, _, out = hog_pipeline
    copy = tmp_path / "copy.pipeline"
    shutil.copytree(out, copy)
    manifest = json.loads((copy / "pipeline.json").read_text())
    (copy / "pipeline.json").write_text(json.dumps({**manifest, "head_file": "../../etc/passwd"}))
    with pytest.raises(VisretError, match="names a file outside the pipeline"):
        visret.load_pipeline(copy)
    (copy / "pipeline.json").write_text("{not json")
    with pytest.raises(VisretError, match="is not a readable pipeline"):
        visret.load_pipeline(copy)
    with pytest.raises(VisretError, match="is not a saved pipeline"):
        visret.load_pipeline(tmp_path)


def test_a_head_whose_array_header_claims_gigabytes_is_refused_before_allocating(hog_pipeline, tmp_path):
    import shutil

    from peak_memory import peak_growth_mib
    import zipfile

    _, _, out = hog_pipeline
    copy = tmp_path / "copy.pipeline"
    shutil.copytree(out, copy)
    with zipfile.ZipFile(out / "head.npz") as original, zipfile.ZipFile(copy / "head.npz", "w") as forged:
        for info in original.infolist():
            data = original.read(info)
            if info.filename != "__config__.npy":  # claim 2**29 rows of the stored array's width
                header = data[: data.index(b"\n") + 1].decode("latin-1")
                shape = header.split("'shape': (")[1].split(")")[0]
                claimed = header.replace(f"'shape': ({shape})", f"'shape': ({2**29}, {shape.split(',')[-1].strip() or 1})")
                data = claimed.ljust(len(header) - 1).encode("latin-1")[: len(header) - 1] + b"\n" + data[len(header):]
            forged.writestr(info, data)
    with pytest.raises(VisretError, match="claims .* bytes"):
        visret.load_pipeline(copy)
    refused = ("try:\n    visret.load_pipeline({!r})\nexcept visret.VisretError as exc:\n    assert 'claims' in str(exc)\n"
               "else:\n    raise AssertionError('loaded')").format(str(copy))
    assert peak_growth_mib("import visret", refused) < 100  # the claim is 2**29 rows


def test_pipeline_files_that_are_pipes_or_links_outside_are_refused_without_blocking(hog_pipeline, tmp_path):
    import os
    import shutil

    _, _, out = hog_pipeline
    copy = tmp_path / "copy.pipeline"
    shutil.copytree(out, copy)
    (copy / "head.npz").unlink()
    os.mkfifo(copy / "head.npz")  # opening it for reading would wait for a writer forever
    with pytest.raises(VisretError, match="pipeline file .*head.npz is not a regular file"):
        visret.load_pipeline(copy)
    (copy / "head.npz").unlink()
    shutil.copy(out / "head.npz", tmp_path / "elsewhere.npz")
    (copy / "head.npz").symlink_to(tmp_path / "elsewhere.npz")
    with pytest.raises(VisretError, match="head.npz links to a file outside"):
        visret.load_pipeline(copy)
    os.mkfifo(tmp_path / "recipe.json")
    with pytest.raises(VisretError, match="recipe .*recipe.json is not a regular file"):
        read_recipe(tmp_path / "recipe.json")


# ---- test-time augmentation ------------------------------------------------------------------
def test_tta_views_are_deterministic_shifts_and_crops_and_mirror_only_when_asked():
    image = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32).astype(np.uint8)
    views = tta.views(image, 5)
    assert len(views) == 5 and all(v.shape == image.shape for v in views)
    np.testing.assert_array_equal(views[0][:, 2:], image[:, :-2])  # content moved right by 2 pixels (1/16 of 32)
    np.testing.assert_array_equal(views[0][:, :2], np.repeat(image[:, :1], 2, axis=1))  # the edge repeated
    assert all(not np.array_equal(v, image[:, ::-1]) for v in views)
    for a, b in zip(views, tta.views(image, 5)):
        np.testing.assert_array_equal(a, b)
    flipped = tta.views(image, 3, flip=True)
    np.testing.assert_array_equal(flipped[0], image[:, ::-1])
    with pytest.raises(ValueError, match="0 to 12 views"):
        tta.views(image, 13)


def test_tta_averages_the_posteriors_of_the_image_and_its_views(hog_pipeline, digits):
    pipeline, _, _ = hog_pipeline
    path = sorted((digits / "test" / "7").iterdir())[0]
    image = visret.images._decode.read_image(path, pipeline.input_spec)[0]
    expected = np.mean([pipeline.predict_arrays([v])[0] for v in [image, *tta.views(image, 4)]], axis=0)
    np.testing.assert_allclose(pipeline.predict_proba([path], tta=4)[0], expected)


# ---- CNN pipelines ---------------------------------------------------------------------------
def test_grad_cam_finds_the_evidence_where_it_is(tmp_path):
    blobs = write_blobs(tmp_path / "blobs")
    pipeline, report = visret.train_pipeline(
        blobs, model="cnn/lenet5", epochs=15, learning_rate=3e-3, test_split=0.25, out=tmp_path / "blobs.keras",
    )
    assert report.test_accuracy == 1.0, report.history
    images = [np.asarray(Image.open(p)) for p in sorted((blobs / "left").iterdir())[:6] + sorted((blobs / "right").iterdir())[:6]]
    maps = pipeline.explain(images, [0] * 6 + [1] * 6)
    assert all(m.shape == (32, 32) and 0 <= m.min() and m.max() <= 1 for m in maps)
    on_the_blob_side = [m[:, :16].sum() > m[:, 16:].sum() for m in maps[:6]] + [m[:, 16:].sum() > m[:, :16].sum() for m in maps[6:]]
    assert sum(on_the_blob_side) >= 10, on_the_blob_side


def test_cnn_train_classify_with_a_montage_explained_and_summary(cli, digits, tmp_path):
    model = tmp_path / "lenet.keras"
    trained = cli("train", digits / "train", "--model", "cnn/lenet5", "--epochs", "2", "--augment", "translate=0.1", "--mixup", "0.2",
                  "--tta", "2", "--out", model, "--json")
    assert trained.exit_code == 0, trained.stderr
    report = json.loads(trained.stdout)
    assert report["pipeline"] == "cnn/lenet5" and report["epochs"] == 2 and report["test_accuracy_tta"] is not None
    assert {"test_accuracy", "balanced_accuracy", "macro_f1", "confusion_matrix", "classes", "train_seconds"} <= set(report)
    assert Path(report["files"]["curves"]).stat().st_size > 1000 and json.loads(model.with_suffix(".split.json").read_text())["classes"] == report["classes"]
    montage = tmp_path / "explained.png"
    classified = cli("classify", digits / "test" / "7", "--model", model, "--montage", montage, "--explain", "--json")
    assert classified.exit_code == 0, classified.stderr
    rows = json.loads(classified.stdout)
    assert len(rows) == 5 and all(r["true_label"] == "7" for r in rows) and Image.open(montage).size[0] > 400
    assert "on the 5 labelled: accuracy" in classified.stderr
    summary = cli("summary", model, "--json")
    assert summary.exit_code == 0, summary.stderr
    assert json.loads(summary.stdout)["total"] == 61_706
    transfer = tmp_path / "frozen.keras"
    assert cli("train", digits / "train", "--model", "cnn/lenet5", "--transfer", "--epochs", "1", "--out", transfer).exit_code == 0
    frozen = json.loads(cli("summary", transfer, "--json").stdout)
    assert frozen["trainable"] == 84 * 10 + 10 and frozen["frozen"] == 60_856
    assert json.loads(cli("summary", "cnn/lenet5", "--json").stdout)["total"] == 60_856
    cut = cli("summary", f"model:{model}", "--json")  # the network cut before its head, as the README shows
    assert cut.exit_code == 0, cut.stderr
    assert json.loads(cut.stdout)["total"] == 61_706 - (84 * 10 + 10)


# ---- the command line ------------------------------------------------------------------------
def test_cli_trains_a_feature_pipeline_then_classifies_a_labelled_folder(cli, digits, tmp_path):
    out = tmp_path / "svm.pipeline"
    trained = cli("train", digits / "train", *HOG, "--head", "linear-svm", "--head-param", "C=0.5", "--out", out, "--json",
                  "--confusion", tmp_path / "confusion.png")
    assert trained.exit_code == 0, trained.stderr
    report = json.loads(trained.stdout)
    assert report["params"] == {"C": 0.5} and report["selection"] == []  # the user's C is kept, nothing else to choose
    assert report["classes"] == [str(d) for d in range(10)] and len(report["confusion_matrix"]) == 10
    assert (tmp_path / "confusion.png").stat().st_size > 1000
    montage = tmp_path / "predictions.png"
    classified = cli("classify", digits / "test", "--model", out, "--tta", "2", "--top", "10", "--montage", montage, "--json")
    assert classified.exit_code == 0, classified.stderr
    rows = json.loads(classified.stdout)
    assert len(rows) == 50 and set(rows[0]) == {"image", "label", "probabilities", "true_label"}
    assert all(sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4) for r in rows)
    assert all(r["label"] == max(r["probabilities"], key=r["probabilities"].get) for r in rows)
    assert Image.open(montage).size[1] > 500
    text = cli("classify", sorted((digits / "test" / "2").iterdir())[0], "--model", out)
    assert text.exit_code == 0 and text.stdout.count("\n") == 1 and ": " in text.stdout


def test_compare_pipelines_prints_one_leaderboard_in_every_format(cli, digits, tmp_path):
    pipelines = ["pixels+knn", "hog(size=32,pixels_per_cell=4)+logistic", "cnn/lenet5"]
    html = tmp_path / "report.html"
    result = cli("compare", digits, "--pipelines", ",".join(pipelines), "--epochs", "1", "--json", "--html", html, "--save-dir", tmp_path / "saved")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert [row["pipeline"] for row in data["leaderboard"]] == pipelines
    assert {"accuracy", "balanced_accuracy", "macro_f1", "train_s", "inference_img_s", "model_bytes"} <= set(data["leaderboard"][0])
    assert {r["sizes"]["test"] for r in data["reports"].values()} == {50}
    page = html.read_text()
    assert page.count("<img") >= 5 and "training curves of cnn/lenet5" in page and "confusion matrix of pixels+knn" in page
    assert sorted(p.name for p in (tmp_path / "saved").iterdir() if p.suffix in (".keras", ".pipeline") and ".best." not in p.name) == [
        "cnn-lenet5.keras", "hog-size-32-pixels_per_cell-4-logistic.pipeline", "pixels-knn.pipeline"]
    saved = visret.load_pipeline(tmp_path / "saved" / "pixels-knn.pipeline")
    assert saved.evaluate(digits / "test").test_accuracy == data["reports"]["pixels+knn"]["test_accuracy"]
    markdown = cli("compare", digits, "--pipelines", "pixels+knn,pixels+logistic", "--markdown")
    assert markdown.exit_code == 0 and markdown.stdout.startswith("| pipeline | accuracy |") and markdown.stdout.count("\n") == 4
    csv = cli("compare", digits, "--pipelines", "pixels+knn", "--csv")
    assert csv.stdout.splitlines()[0].startswith("pipeline,accuracy,balanced_accuracy,macro_f1")


def test_a_folder_of_the_users_own_sub_folders_is_classified_unlabelled(cli, hog_pipeline, digits, tmp_path):
    _, _, out = hog_pipeline
    for year in ("2023", "2024"):
        (tmp_path / "photos" / year).mkdir(parents=True)
        for source in sorted((digits / "test" / "1").iterdir())[:2]:
            (tmp_path / "photos" / year / source.name).write_bytes(source.read_bytes())
    result = cli("classify", tmp_path / "photos", "--model", out, "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 4 and all("true_label" not in r for r in rows) and "labelled" not in result.stderr


def test_an_svm_head_calibrates_with_as_few_folds_as_the_smallest_class_allows():
    X = np.array([[0.0, 0.0], [0.1, 0.0], [1.0, 1.0], [1.1, 1.0], [1.0, 1.2]])
    head = visret.get_classifier("linear-svm").fit(X, ["a", "a", "b", "b", "b"])
    assert list(head.predict([[0.05, 0.0], [1.05, 1.1]])) == ["a", "b"]
    with pytest.raises(ValueError, match="at least 2 training images"):
        visret.get_classifier("svm").fit(X[1:], ["a", "b", "b", "b"])


def test_reports_render_as_html_tables_in_notebooks(hog_pipeline):
    _, report, _ = hog_pipeline
    assert "<table>" in report._repr_html_() and "hog+knn" in report._repr_html_()
    comparison = visret.PipelineComparison(settings={}, reports={"hog+knn": report})
    assert comparison._repr_html_().count("<tr>") == 2


@pytest.mark.parametrize("args, message", [
    (["--head", "boosted-trees"], "unknown classifier 'boosted-trees'"),
    (["--head", "linear-svm", "--head-param", "C=abc"], "classifier 'linear-svm': C must be a positive number, got 'abc'"),
    (["--head", "svm", "--head-param", "standardize=3"], "standardize must be true or false, got 3"),
    (["--epochs", "3"], "--epochs apply to training a CNN: add --model"),
    (["--model", "hog"], "no installed plugin trains 'hog' as a network"),
    (["--model", "cnn/lenet5", "--head", "knn"], "give --model (a CNN to train) or --extractor/--head"),
    (["--tta", "13"], "test-time augmentation takes 0 to 12 views, got 13"),
])
def test_bad_training_input_is_one_line(cli, digits, tmp_path, args, message):
    result = cli("train", digits / "train", *args, "--out", tmp_path / "x")
    assert result.exit_code == 1, result.stdout
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def test_bad_folders_are_one_line(cli, digits, tmp_path):
    one_class = tmp_path / "one"
    (one_class / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(one_class / "a" / "0.png")
    result = cli("train", one_class, "--out", tmp_path / "m.pipeline")
    assert result.exit_code == 1 and "needs at least two classes" in result.stderr
    extra = tmp_path / "extra"
    for label in ("1", "2", "elephant"):
        (extra / label).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(extra / label / "0.png")
    result = cli("train", digits / "train", "--test-dir", extra, "--out", tmp_path / "m.pipeline")
    assert result.exit_code == 1 and result.stderr.strip() == "error: the test folder has classes that training has not: elephant"
    (tmp_path / "empty").mkdir()
    result = cli("train", digits / "train", "--test-dir", tmp_path / "empty", "--out", tmp_path / "m.pipeline")
    assert result.exit_code == 1 and "has no labelled images" in result.stderr
    result = cli("train", digits, "--test-dir", digits / "test", "--out", tmp_path / "m.pipeline")
    assert result.exit_code == 1 and "holds train/ and test/" in result.stderr
    result = cli("compare", digits, "--pipelines", "pixels+knn,pixels+boosted-trees")
    assert result.exit_code == 1 and "unknown classifier 'boosted-trees'" in result.stderr and "pipelines," not in result.stdout


def test_bad_classify_input_is_one_line(cli, hog_pipeline, digits, tmp_path):
    _, _, out = hog_pipeline
    extra = tmp_path / "extra" / "elephant"
    for folder in (extra, tmp_path / "extra" / "3"):  # one class the pipeline knows, one it does not
        folder.mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "0.png")
    cases = [
        (["classify", extra.parent, "--model", out], "has classes the pipeline was not trained on: elephant"),
        (["classify", digits / "test", "--model", out, "--montage", tmp_path / "m.png", "--explain"], "Grad-CAM needs a CNN pipeline"),
        (["classify", digits / "test", "--model", out, "--explain"], "--explain draws on the montage"),
        (["classify", digits / "test", "--model", tmp_path], "is not a saved pipeline"),
        (["classify", tmp_path / "missing.png", "--model", out], "missing.png does not exist"),
        (["classify", digits / "test" / "3" / next((digits / "test" / "3").iterdir()).name, "--model", out, "--confusion", tmp_path / "c.png"], None),
        (["compare", digits, "--pipelines", "hog+knn", "--extractors", "hog"], "not both"),
        (["compare", digits, "--pipelines", "hog+knn+svm"], "a pipeline is EXTRACTOR+HEAD"),
        (["summary", "hog"], "hog is not a CNN"),
    ]
    for args, message in cases:
        if message is None:  # a file named by its class folder is labelled: --confusion works
            assert cli(*args).exit_code == 0
            continue
        result = cli(*args)
        assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, (args, result.stderr)


def test_a_head_is_trained_on_equal_combine_blocks_while_an_index_keeps_auto_weights(digits, tmp_path):
    spec = {"parts": ["pixels", "hog"]}
    pipeline, _ = visret.train_pipeline(digits / "train", "combine", "knn", params=spec, out=tmp_path / "c.pipeline", workers=1)
    assert pipeline.extractor.weights is None and not pipeline.extractor.requires_fit  # the head weighs the blocks
    saved = json.loads((tmp_path / "c.pipeline" / "pipeline.json").read_text())
    assert saved["extractor"]["params"]["weights"] is None
    given = visret.get_extractor("combine", parts=["pixels", "hog"], weights=[1, 0.5])
    assert given.for_trained_head() is given  # weights the user chose are kept
    with visret.build_index(digits / "train", "combine", tmp_path / "ix", params=spec, workers=1) as index:
        assert index.manifest["extractor"]["params"]["weights"] == "auto"


def test_a_pipeline_whose_head_and_extractor_disagree_is_one_line_when_loaded(hog_pipeline, digits, tmp_path, cli):
    import shutil

    _, _, out = hog_pipeline
    copy = tmp_path / "mixed.pipeline"
    shutil.copytree(out, copy)
    manifest = json.loads((copy / "pipeline.json").read_text())
    manifest["extractor"]["params"]["size"] = 64  # HOG of another size: 4x the features the head was fitted on
    (copy / "pipeline.json").write_text(json.dumps(manifest))
    with pytest.raises(VisretError, match=r"its head does not take the \d+-d features of hog"):
        visret.load_pipeline(copy)
    result = cli("classify", str(sorted((digits / "test" / "3").iterdir())[0]), "--model", str(copy))
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
