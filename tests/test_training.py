"""Training: splits, augmentation, mixup, transfer and fine-tuning, TTA, saved models, heads, CLI."""

import json

import numpy as np
import pytest

import visret
from visret import get_classifier

import keras  # a required dependency: a broken install must fail here, not skip


def test_a_cnn_is_trained_and_tested_on_the_shared_split_and_saves_it(digits, tmp_path):
    from visret.classification._split import make_split

    split = make_split(digits / "train", val_split=0.2, test_split=0.2, seed=0)
    _, report = visret.train_pipeline(digits / "train", model="cnn/lenet5", epochs=1, out=tmp_path / "m.keras", val_split=0.2, test_split=0.2)
    saved = json.loads((tmp_path / "m.split.json").read_text())
    for part in ("train", "val", "test"):
        assert set(saved[part]) == {str(r.path) for r in getattr(split, part)}
    assert report.sizes == split.sizes()


def test_trained_lenet_has_the_textbook_size_and_reloads_in_safe_mode(digits, tmp_path):
    from visret_keras.pipeline import CNNPipeline

    _, report = visret.train_pipeline(digits / "train", model="cnn/lenet5", epochs=2, out=tmp_path / "lenet.keras")
    pipeline = visret.load_pipeline(tmp_path / "lenet.keras")
    assert isinstance(pipeline, CNNPipeline)
    assert pipeline.model.count_params() == 61_706 and list(pipeline.classes_) == [str(d) for d in range(10)]
    assert (tmp_path / "lenet.curves.png").stat().st_size > 1000 and (tmp_path / "lenet.log.csv").is_file()
    x = list(np.random.default_rng(0).integers(0, 256, (4, 32, 32), dtype=np.uint8))
    reloaded = pipeline.predict_arrays(x)
    again = keras.saving.load_model(tmp_path / "lenet.keras", safe_mode=True).predict(np.asarray(x, np.float32)[..., None], verbose=0)
    np.testing.assert_allclose(reloaded, again, rtol=1e-6)
    np.testing.assert_allclose(reloaded.sum(axis=1), 1.0, rtol=1e-5)
    assert report.epochs == 2 and 0 <= report.test_accuracy <= 1


def test_augmentation_is_active_only_in_training():
    from visret_keras.augment import augmentation_model, parse_augment

    layers = augmentation_model(parse_augment("flip=horizontal,rotate=0.2,translate=0.1,zoom=0.1,contrast=0.3,brightness=0.2"))
    x = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(layers(x, training=False)), x)
    assert not np.allclose(np.asarray(layers(x, training=True)), x)
    with pytest.raises(ValueError, match="unknown augmentation 'blur'"):
        parse_augment("blur=0.1")


def test_mixup_mixes_images_and_labels_alike():
    from visret_keras.augment import mixup

    rng = np.random.default_rng(2)
    images = rng.random((64, 8, 8, 1)).astype(np.float32)
    labels = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 64)]
    mixed_images, mixed_labels = (np.asarray(t) for t in mixup(images, labels, alpha=0.4, seed=3))
    np.testing.assert_allclose(mixed_labels.sum(axis=1), 1.0, rtol=1e-6)
    assert (mixed_labels >= 0).all() and not np.allclose(mixed_labels, labels)
    assert mixed_images.min() >= images.min() - 1e-6 and mixed_images.max() <= images.max() + 1e-6


def test_frozen_layers_do_not_change_in_transfer_and_do_after_unfreezing():
    from visret_keras.training import _dataset, classifier, feature_network, unfreeze_top

    fen, spec, preprocess, _ = feature_network("keras/resnet50", {"weights": "none", "size": 32})  # non-zero random features
    net = classifier(fen, spec, preprocess, 3, {}, 0.0, frozen=True, seed=0)
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, 256, (48, 32, 32, 3)).astype(np.float32), rng.integers(0, 3, 48)
    data = _dataset(x, y, 3, 16, True, None, 0)
    before = [w.copy() for w in fen.get_weights()]  # kernels and BatchNorm moving statistics
    head_before = net.get_layer("head").get_weights()[0].copy()
    net.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    net.fit(data, epochs=1, shuffle=False, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, fen.get_weights()))
    assert not np.allclose(head_before, net.get_layer("head").get_weights()[0])
    assert unfreeze_top(fen, 20) > 0
    net.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    net.fit(data, epochs=1, shuffle=False, verbose=0)
    changed = [not np.array_equal(a, b) for a, b in zip(before, fen.get_weights())]
    assert any(changed) and not all(changed)  # the top layers learnt, the rest stayed
    bn = [l for l in fen.layers if isinstance(l, keras.layers.BatchNormalization)]
    moving = [w for l in bn for w in l.non_trainable_weights]
    assert moving and all(not v.trainable for v in moving)


def test_a_transferred_network_starts_and_ends_with_the_logistic_head_of_its_frozen_pipeline(photo_crops, tmp_path):
    """The softmax head starts as visret's logistic head on the network's own normalised features (C chosen on
    the validation part) and is refitted on training + validation at the end: a transferred network then
    predicts what the frozen-features pipeline with the logistic head predicts, on the same split."""
    params = {"size": 64}
    _, cnn = visret.train_pipeline(photo_crops, model="keras/squeezenet", params=params, transfer=True, epochs=2,
                                   out=tmp_path / "t.keras")
    _, frozen = visret.train_pipeline(photo_crops, {"name": "keras/squeezenet", "params": params}, "logistic")
    assert cnn.linear_start["C"] in (1.0, 0.1, 10.0) and cnn.linear_start["C"] == frozen.params["C"]
    assert [(p.image, p.predicted) for p in cnn.predictions] == [(p.image, p.predicted) for p in frozen.predictions]
    assert cnn.epochs == 2 and cnn.test_accuracy == frozen.test_accuracy
    reloaded = visret.load_pipeline(tmp_path / "t.keras")  # the normalisation layer loads in safe mode
    assert list(reloaded.predict([p.image for p in cnn.predictions[:4]])) == [p.predicted for p in cnn.predictions[:4]]


@pytest.mark.parametrize("module", ["mobilenet_v2", "resnet", "densenet", "efficientnet"])
def test_preprocessing_layers_equal_the_familys_preprocess_input(module):
    import importlib

    from visret_keras.preprocessing import preprocessing_layers

    x = np.random.default_rng(5).integers(0, 256, (2, 8, 8, 3)).astype(np.float32)
    expected = importlib.import_module(f"keras.applications.{module}").preprocess_input(x.copy())
    out = x
    for layer in preprocessing_layers(module):
        out = np.asarray(layer(out))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)


def test_a_head_file_with_unexpected_types_is_refused(tmp_path):
    from sklearn.datasets import load_digits

    from visret_heads.sklearn_heads import LogisticHead

    X, y = load_digits(return_X_y=True)
    get_classifier("random-forest", trees=3).fit(X, y).save(tmp_path / "forest.skops")
    with pytest.raises(ValueError, match="does not use: sklearn.tree._tree.Tree"):
        LogisticHead.load(tmp_path / "forest.skops")


def test_cli_train_then_classify_then_index_with_the_model(cli, digits, tmp_path):
    model = tmp_path / "lenet.keras"
    trained = cli("train", digits / "train", "--model", "cnn/lenet5", "--epochs", "2", "--augment", "translate=0.1", "--mixup", "0.2", "--tta", "2", "--out", model, "--json")
    assert trained.exit_code == 0, trained.stderr
    report = json.loads(trained.stdout)
    assert report["test_accuracy"] is not None and report["test_accuracy_tta"] is not None
    image = sorted((digits / "test" / "7").iterdir())[0]
    classified = cli("classify", image, "--model", model, "--json", "--tta", "2", "--top", "10")
    assert classified.exit_code == 0, classified.stderr
    result = json.loads(classified.stdout)[0]
    assert set(result["probabilities"]) == {str(d) for d in range(10)}
    assert result["label"] == max(result["probabilities"], key=result["probabilities"].get)
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    indexed = cli("index", digits / "train", "-e", f"model:{model}", "--index", tmp_path / "ix", "--workers", "1")
    assert indexed.exit_code == 0, indexed.stderr
    bad = cli("train", digits / "train", "--model", "cnn/lenet5", "--augment", "blur=1", "--out", tmp_path / "x.keras")
    assert bad.exit_code == 1 and "unknown augmentation 'blur'" in bad.stderr


@pytest.mark.parametrize("options, message", [
    (["--learning-rate", "-1"], "learning rate must be positive, got -1.0"),
    (["--mixup", "-3"], "mixup alpha must be positive, got -3.0"),
    (["--val-split", "1.5"], "validation split must be between 0 and 1, got 1.5"),
    (["--test-split", "0"], "test split must be between 0 and 1, got 0.0"),
])
def test_bad_training_options_are_one_line(cli, digits, tmp_path, options, message):
    result = cli("train", digits / "train", "--model", "cnn/lenet5", "--epochs", "1", "--out", tmp_path / "m.keras", *options)
    assert result.exit_code == 1 and result.stderr.strip() == f"error: {message}"


def test_a_model_with_a_lambda_layer_is_refused_in_one_line(cli, digits, tmp_path):
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Lambda(lambda x: x * 2.0)(inputs)))
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    image = sorted((digits / "test" / "1").iterdir())[0]
    classified = cli("classify", image, "--model", path)
    assert classified.exit_code == 1 and len(classified.stderr.strip().splitlines()) == 1
    assert f"cannot load {path} in safe mode" in classified.stderr
    indexed = cli("index", digits / "test", "-e", f"model:{path}", "--index", tmp_path / "ix", "--workers", "1")
    assert indexed.exit_code == 1 and "in safe mode" in indexed.stderr and "Traceback" not in indexed.stderr


def test_training_never_overwrites_a_file_that_is_not_a_model_nor_one_beside_it(digits, tmp_path):
    notes = tmp_path / "notes.keras"
    notes.write_text("my notes, not a model\n")
    with pytest.raises(visret.VisretError, match="notes.keras exists and is not a saved pipeline"):
        visret.train_pipeline(digits / "train", model="cnn/lenet5", epochs=1, out=notes)
    assert notes.read_text() == "my notes, not a model\n"
    assert not (tmp_path / "notes.log.csv").exists() and not (tmp_path / "notes.curves.png").exists()
    log = tmp_path / "run.log.csv"
    log.write_text("a log of my own\n")
    with pytest.raises(visret.VisretError, match="would overwrite .*run.log.csv"):
        visret.train_pipeline(digits / "train", model="cnn/lenet5", epochs=1, out=tmp_path / "run.keras")
    assert log.read_text() == "a log of my own\n" and not (tmp_path / "run.keras").exists()


# ---- a run watched, bounded and resumed (the assignment on a CPU) --------------------------
def _log_rows(path) -> list[dict[str, str]]:
    import csv

    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_a_two_phase_run_keeps_one_log_and_marks_where_fine_tuning_starts(digits, tmp_path):
    _, report = visret.train_pipeline(digits / "train", model="cnn/lenet5", fine_tune=0, epochs=2, fine_tune_epochs=3,
                                      patience=50, out=tmp_path / "m.keras")
    rows = _log_rows(tmp_path / "m.log.csv")
    assert [(r["epoch"], r["phase"]) for r in rows] == [("1", "train"), ("2", "train"), ("3", "fine-tune"), ("4", "fine-tune"), ("5", "fine-tune")]
    assert report.fine_tune_from == 2 and report.epochs == 5 and len(report.history["val_loss"]) == 5
    assert json.loads((tmp_path / "m.run.json").read_text())["finished"] and not (tmp_path / "m.last.keras").exists()


def test_a_killed_run_is_taken_up_where_it_stopped_and_its_checkpoint_knows_its_classes(digits, tmp_path, project_env):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    visret_cli = str(Path(sys.executable).with_name("visret"))
    command = [visret_cli, "train", str(digits / "train"), "--model", "cnn/lenet5", "--epochs", "60", "--patience", "100",
               "--out", str(tmp_path / "m.keras")]
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=project_env)
    log = tmp_path / "m.log.csv"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and run.poll() is None and (not log.exists() or len(_log_rows(log)) < 2):
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait()
    done = len(json.loads((tmp_path / "m.run.json").read_text())["history"]["loss"])
    assert 2 <= done < 60 and len(_log_rows(log)) == done and (tmp_path / "m.last.keras").is_file()
    # the best epoch so far is a classifier with its class names, scored on a labelled folder
    scored = subprocess.run([visret_cli, "classify", str(digits / "test"), "--model", str(tmp_path / "m.best.keras"), "--json"],
                            capture_output=True, text=True, env=project_env, timeout=300)
    assert scored.returncode == 0, scored.stderr
    rows = json.loads(scored.stdout)  # digits' folders are named 0 to 9: scored against them, by class name
    assert all("true_label" in row for row in rows) and sum(row["label"] == row["true_label"] for row in rows) > len(rows) / 5
    again = subprocess.run(command, capture_output=True, text=True, env=project_env, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"info: resuming the unfinished run at {tmp_path / 'm.keras'} after epoch {done}" in again.stderr
    rows = _log_rows(log)
    assert [int(r["epoch"]) for r in rows] == list(range(1, len(rows) + 1)) and len(rows) > done
    finished = subprocess.run([*command, "--resume"], capture_output=True, text=True, env=project_env, timeout=300)
    assert finished.returncode == 1 and "nothing to resume" in finished.stderr and "it finished" in finished.stderr


def test_a_time_budget_stops_at_an_epoch_end_with_the_model_saved_tested_and_said(digits, tmp_path, cli):
    result = cli("train", digits / "train", "--model", "cnn/lenet5", "--epochs", "500", "--patience", "1000",
                 "--budget-minutes", "0.05", "--out", tmp_path / "m.keras", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["stopped"].startswith("time budget of 0.05 min reached after ") and report["test_accuracy"] is not None
    assert 1 <= report["epochs"] < 500 and (tmp_path / "m.keras").is_file() and (tmp_path / "m.last.keras").is_file()
    assert "stopped early: time budget" in result.stderr


def test_a_head_that_hits_its_iteration_cap_says_so_in_its_state_not_on_stderr(recwarn):
    """Liblinear's "failed to converge", once per fold and candidate, filled a student's terminal."""
    rng = np.random.default_rng(0)
    X = (rng.normal(0, 1, (400, 400)) * np.logspace(0, 6, 400)).astype(np.float32)  # badly scaled
    y = np.where(rng.random(400) > 0.5, "a", "b")  # and unlearnable: liblinear runs to its cap
    head = get_classifier("linear-svm", C=1000.0).fit(X, y)
    assert head.converged_ is False
    assert not [w for w in recwarn if "converge" in str(w.message).lower()]


def test_a_run_counts_its_time_once_finishes_when_its_last_epoch_fits_and_a_refused_one_leaves_nothing(digits, tmp_path):
    import time

    with pytest.raises(visret.VisretError, match="learning rate must be positive"):
        visret.train_pipeline(digits / "train", model="cnn/lenet5", epochs=1, learning_rate=-1, out=tmp_path / "m.keras")
    start = time.perf_counter()
    _, report = visret.train_pipeline(digits / "train", model="cnn/lenet5", epochs=3, patience=10, budget_minutes=0.0001,
                                      out=tmp_path / "m.keras")  # the refused run left nothing in the way
    wall = time.perf_counter() - start
    assert report.epochs == 1 and report.stopped.startswith("time budget")
    assert report.train_seconds <= wall  # counted once per epoch, not summed again at each one
    _, last = visret.train_pipeline(digits / "train", model="cnn/lenet5", epochs=1, budget_minutes=0.0001, out=tmp_path / "one.keras")
    assert last.stopped is None  # nothing was left to do: a finished run, not a stopped one
    assert json.loads((tmp_path / "one.run.json").read_text())["finished"]
