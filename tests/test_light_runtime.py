"""The light runtime: a CNN's network is exported to ONNX on this machine and cached, its queries run
it with ONNX Runtime, giving the Keras model's features without starting TensorFlow; what an index
brings is data, never a graph to run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import visret
from visret import get_extractor

import keras  # required dependencies: a broken install must fail here, not skip
import onnxruntime  # noqa: F401

from test_import_cost import modules_after


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.linalg.norm(a - b, axis=1) / np.maximum(np.linalg.norm(b, axis=1), 1e-30)).max())


def saved_lenet(folder: Path) -> str:
    from visret_keras.architectures import lenet5

    path = folder / "lenet.keras"
    lenet5((32, 32, 1), n_classes=4, seed=3).save(path)
    return str(path)


@pytest.mark.parametrize("name, params", [
    ("keras/squeezenet", {"size": 96}),
    ("keras/mobilenet_v2", {"weights": "none", "size": 64}),
    ("cnn/lenet5", {}),
    ("model", {"rescale": 1 / 255}),  # preprocessing outside the model: exported with it
])
def test_the_exported_network_gives_the_keras_features_without_building_the_keras_model(name, params, photo_crops, tmp_path):
    if name == "model":
        params = {**params, "path": saved_lenet(tmp_path)}
    keras_run = get_extractor(name, **params)
    images = sorted(photo_crops.rglob("*.png"))[::4]
    expected = visret.embed_images(images, keras_run)
    state = keras_run.get_state()
    assert set(state) == {"graph", "probe"} and state["graph"].dtype == np.uint8 and state["graph"].shape == (32,)
    assert state["probe"].dtype == np.float32 and state["probe"].shape == (2, expected.shape[1])
    light = get_extractor(name, **params)
    light.set_state(state)
    features = visret.embed_images(images, light)
    assert light.session is not None and "model_" not in vars(light)  # Keras never built it
    assert features.shape == expected.shape and features.dtype == np.float32
    assert relative_difference(features, expected) < 1e-4


def test_a_batch_runs_in_chunks_side_by_side_with_the_features_of_one_call(monkeypatch):
    """``exported.run`` cuts a batch into chunks run on several cores; each image's features are those of
    the whole batch in one call, from 0-255 integers as from floats, on one core as on several."""
    from visret_keras import exported

    extractor = get_extractor("keras/squeezenet", size=64)
    session = extractor.session or (extractor.get_state() and extractor.session)
    batch = np.random.default_rng(4).integers(0, 256, (2 * exported.CHUNK + 3, 64, 64, 3), dtype=np.uint8)
    whole = session.run(None, {session.get_inputs()[0].name: batch.astype(np.float32)})[0]
    assert relative_difference(exported.run(session, batch), whole) < 1e-5
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a Ray actor's share of one core
    assert exported.threads() == 1
    assert relative_difference(exported.run(session, batch.astype(np.float32)), whole) < 1e-5


def test_an_index_queries_with_the_runtime_and_answers_as_keras_does(squeezenet_index, photo_crops, monkeypatch):
    images = sorted(photo_crops.rglob("*.png"))[1::3]
    answers = {}
    for runtime in ("onnx", "keras"):
        monkeypatch.setenv("VISRET_RUNTIME", runtime)
        with visret.open_index(squeezenet_index) as index:
            assert (index.extractor.session is not None) == (runtime == "onnx")
            vectors = index.embed(images)
            answers[runtime] = vectors, [[n.id for n in r.neighbors] for r in index.query_vectors(vectors, k=10)]
    assert relative_difference(answers["onnx"][0], answers["keras"][0]) < 1e-4
    assert answers["onnx"][1] == answers["keras"][1]


def query_ids(stdout: str) -> list[int]:
    return [n["id"] for n in json.loads(stdout)[0]["neighbors"]]


def cli_query(index: Path, image: Path, prefix: str = "") -> str:
    return (prefix + "import sys\nfrom visret.cli._app import main\n"
            f"sys.argv = ['visret', 'query', {str(image)!r}, '--index', {str(index)!r}, '--json']\n"
            "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n")


def test_a_cnn_query_does_not_start_tensorflow(squeezenet_index, photo_crops, project_env):
    image = sorted(photo_crops.rglob("*.png"))[5]
    assert modules_after(cli_query(squeezenet_index, image), project_env) == {"tensorflow": False, "keras": False}


def test_without_onnxruntime_a_query_says_so_in_one_line_and_keras_answers(squeezenet_index, photo_crops, project_env):
    image = sorted(photo_crops.rglob("*.png"))[5]
    runs = {}
    for label, prefix in (("light", ""), ("missing", "import sys\nsys.modules['onnxruntime'] = None\n")):
        runs[label] = subprocess.run([sys.executable, "-c", cli_query(squeezenet_index, image, prefix)],
                                     capture_output=True, text=True, env=project_env, timeout=300)
        assert runs[label].returncode == 0, runs[label].stderr
    assert runs["light"].stderr == ""
    assert runs["missing"].stderr.strip() == ("warning: keras/squeezenet: onnxruntime is not installed, "
                                              "so TensorFlow runs the network (pip install onnxruntime)")
    assert query_ids(runs["missing"].stdout) == query_ids(runs["light"].stdout)


def test_a_tampered_state_is_named_by_verify_and_refused_by_a_query(squeezenet_index, photo_crops, tmp_path, cli):
    index = tmp_path / "index"
    shutil.copytree(squeezenet_index, index)
    manifest = json.loads((index / "manifest.json").read_text())
    exported = index / manifest["files"]["extractor"]["name"]
    data = bytearray(exported.read_bytes())
    data[len(data) // 2] ^= 0x40
    exported.write_bytes(bytes(data))
    verify = cli("info", "--index", str(index), "--verify")
    assert verify.exit_code == 1 and f"{exported.name} does not match its checksum" in verify.output
    query = cli("query", str(sorted(photo_crops.rglob("*.png"))[0]), "--index", str(index))
    assert query.exit_code == 1 and len(query.output.strip().splitlines()) == 1
    assert f"{exported.name} does not match its checksum" in query.output


def test_an_export_that_does_not_stand_in_for_the_model_is_refused_in_words(monkeypatch, caplog):
    """The parity check of ``export`` itself: a converter that gives another network's graph is caught."""
    import tf2onnx
    from visret_keras import exported

    first, second = (get_extractor("cnn/lenet5", seed=seed) for seed in (1, 2))
    convert = tf2onnx.convert.from_graph_def
    other = {}

    def converts_the_other_network(*args, **kwargs):
        if not other:  # the first call converts the other network, as a faulty converter would
            other["proto"] = convert(*args, **kwargs)
            return other["proto"]
        return other["proto"]

    assert exported.export(first.model, [], first.name) is not None
    monkeypatch.setattr(tf2onnx.convert, "from_graph_def", converts_the_other_network)
    exported.export(second.model, [], second.name)  # the converter now remembers lenet5 seed 2
    with caplog.at_level("WARNING", logger="visret"):
        assert exported.export(first.model, [], first.name) is None
    assert [r.getMessage() for r in caplog.records] == [
        m for m in [r.getMessage() for r in caplog.records] if m.startswith("cnn/lenet5: its ONNX export differs from the Keras model by ")]
    assert len(caplog.records) == 1


def test_without_tf2onnx_an_index_says_so_in_one_line_and_keras_runs_it(photo_crops, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # as if it were not installed
    monkeypatch.setenv("VISRET_CACHE", str(tmp_path / "cache"))  # and nothing derived on this machine before
    with caplog.at_level("WARNING", logger="visret"):
        with visret.build_index(photo_crops / "coffee", "keras/squeezenet", tmp_path / "ix", params={"size": 64}, workers=1) as index:
            assert index.extractor.session is None and set(index.extractor_state) == {"graph", "probe"}
            first = index.query(sorted((photo_crops / "coffee").iterdir())[0], k=1).neighbors[0]
    assert [r.getMessage() for r in caplog.records] == [
        "keras/squeezenet: tf2onnx is not installed, so CNN queries will start TensorFlow (pip install tf2onnx onnx)"]
    assert first.path.endswith("00.png") and first.distance < 1e-3


def test_a_network_with_a_normalization_layer_is_exported_with_its_constants(tmp_path):
    """Normalization's mean and variance are constants its graph captures: frozen into the export, not left as inputs."""
    layers = keras.layers
    inputs = keras.Input((16, 16, 3))
    x = layers.Normalization(mean=[100.0, 110.0, 120.0], variance=[900.0, 800.0, 700.0])(inputs)
    x = layers.Dense(8, activation="relu")(layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3)(x)))
    keras.Model(inputs, layers.Dense(2, activation="softmax")(x)).save(tmp_path / "net.keras")
    keras_run = get_extractor("model", path=str(tmp_path / "net.keras"))
    images = [np.random.default_rng(i).integers(0, 256, (16, 16, 3), dtype=np.uint8) for i in range(4)]
    light = get_extractor("model", path=str(tmp_path / "net.keras"))
    light.set_state(keras_run.get_state())
    assert light.session is not None and len(light.session.get_inputs()) == 1
    assert relative_difference(light.extract(images), keras_run.extract(images)) < 1e-4
