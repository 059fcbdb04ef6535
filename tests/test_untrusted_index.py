"""What an index or pipeline brings is data, never code: a forged one (checksums recomputed) never runs
a graph it carries, reads no file outside itself, ends quickly or refuses in one line."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import visret
from visret import VisretError, get_extractor
from visret.index._store.files import sha256_file, xxh3_file
from visret.index._store.layout import MANIFEST, checksum

VISRET = str(Path(sys.executable).with_name("visret"))


def forge_state(index: Path, state: dict[str, np.ndarray]) -> None:
    """Replace an index's extractor state and recompute every checksum, as a forger would."""
    manifest = json.loads((index / MANIFEST).read_text())
    entry = manifest["files"]["extractor"]
    file = index / entry["name"]
    buffer = io.BytesIO()
    np.savez(buffer, **state)
    file.write_bytes(buffer.getvalue())
    entry.update(bytes=file.stat().st_size, sha256=sha256_file(file), xxh3=xxh3_file(file))
    manifest["checksum"] = checksum(manifest)
    (index / MANIFEST).write_text(json.dumps(manifest))


def graph_reading(location: str) -> bytes:
    """A graph whose weight is 'external data' in a file named by a relative path."""
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[512], data_location=TensorProto.EXTERNAL)
    weight.external_data.add(key="location", value=location)
    node = helper.make_node("Add", ["x", "w"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 512])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 512])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def graph_looping() -> bytes:
    """A Loop of 2**62 iterations: a thread that spins for ever."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["v_in"], ["v_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [None, 96, 96, 3])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [None, 96, 96, 3])])
    nodes = [helper.make_node("Constant", [], ["n"], value=helper.make_tensor("n", TensorProto.INT64, [], [2**62])),
             helper.make_node("Constant", [], ["c"], value=helper.make_tensor("c", TensorProto.BOOL, [], [True])),
             helper.make_node("Loop", ["n", "c", "x"], ["y"], body=body)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 96, 96, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 96, 96, 3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def graph_allocating() -> bytes:
    """ConstantOfShape [2**30]: 4 GB for one query."""
    nodes = [helper.make_node("Constant", [], ["s"], value=helper.make_tensor("s", TensorProto.INT64, [1], [2**30])),
             helper.make_node("ConstantOfShape", ["s"], ["y"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0]))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 96, 96, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2**30])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def query_json(index: Path, image: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([VISRET, "query", str(image), "--index", str(index), "--json", "-k", "5"], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, **env}, timeout=120)


@pytest.mark.parametrize("forged", ["reads secret.bin", "loops for ever", "allocates 4 GB"])
def test_a_graph_carried_by_an_index_is_never_run(forged, squeezenet_index, photo_crops, tmp_path):
    image = sorted(photo_crops.rglob("*.png"))[7]
    honest = query_json(squeezenet_index, image, tmp_path)
    assert honest.returncode == 0, honest.stderr
    index = tmp_path / "forged"
    shutil.copytree(squeezenet_index, index)
    graph = {"reads secret.bin": lambda: graph_reading("secret.bin"), "loops for ever": graph_looping,
             "allocates 4 GB": graph_allocating}[forged]()
    assert len(onnx.load_from_string(graph).graph.node) >= 1  # a well-formed graph, which ONNX Runtime would run
    state = dict(np.load(squeezenet_index / json.loads((index / MANIFEST).read_text())["files"]["extractor"]["name"]))
    # as the graph an older index carried, and in place of what this one records
    for carried in ({**state, "onnx": np.frombuffer(graph, np.uint8)}, {"onnx": np.frombuffer(graph, np.uint8)}):
        forge_state(index, carried)
        work = tmp_path / "work"
        work.mkdir(exist_ok=True)
        (work / "secret.bin").write_bytes(np.full(512, 1e6, np.float32).tobytes())
        answer = query_json(index, image, work)
        assert answer.returncode == 0, answer.stderr
        assert json.loads(answer.stdout) == json.loads(honest.stdout)


@pytest.mark.parametrize("runtime", ["onnx", "keras"])
def test_an_index_whose_recorded_features_are_not_the_network_installed_here_is_refused(runtime, squeezenet_index, photo_crops, tmp_path):
    index = tmp_path / "forged"
    shutil.copytree(squeezenet_index, index)
    state = dict(np.load(index / json.loads((index / MANIFEST).read_text())["files"]["extractor"]["name"]))
    forge_state(index, {**state, "probe": state["probe"][::-1].copy()})
    answer = query_json(index, sorted(photo_crops.rglob("*.png"))[0], tmp_path, VISRET_RUNTIME=runtime)
    assert answer.returncode == 1 and len(answer.stderr.strip().splitlines()) == 1, answer.stderr
    assert "keras/squeezenet as installed here gives other features than the network this was built with" in answer.stderr


def test_a_damaged_cached_graph_is_derived_again(photo_crops, tmp_path, monkeypatch):
    from visret_keras import derived

    monkeypatch.setenv("VISRET_CACHE", str(tmp_path / "cache"))
    images = sorted(photo_crops.rglob("*.png"))[:4]
    first = get_extractor("cnn/lenet5", seed=4)
    state = first.get_state()
    expected = visret.embed_images(images, first)
    cached = derived.cache_folder() / f"{first.graph_key()}.onnx"
    cached.write_bytes(b"not a graph")
    again = get_extractor("cnn/lenet5", seed=4)
    again.set_state(state)
    assert np.allclose(visret.embed_images(images, again), expected, atol=1e-5)
    assert again.session is not None and cached.read_bytes() != b"not a graph"


def test_an_index_of_a_network_derived_here_before_is_built_without_tensorflow(photo_crops, squeezenet_index, tmp_path, project_env):
    from test_import_cost import modules_after

    code = (f"import visret\nvisret.build_index({str(photo_crops / 'coffee')!r}, 'keras/squeezenet', {str(tmp_path / 'ix')!r}, "
            "params={'size': 96}, workers=1).close()")
    assert modules_after(code, project_env) == {"tensorflow": False, "keras": False}


def test_a_graph_carried_by_a_pipeline_is_never_run(photo_crops, tmp_path):
    out = tmp_path / "net.pipeline"
    visret.train_pipeline(photo_crops, "keras/squeezenet", "logistic", params={"size": 96}, out=out, workers=1)
    images = sorted(photo_crops.rglob("*.png"))[::5]
    honest = visret.load_pipeline(out).predict_arrays([visret.images.as_array(p, visret.InputSpec("RGB", (96, 96))) for p in images])
    state = dict(np.load(out / "extractor.npz"))
    assert set(state) == {"graph", "probe"}
    for graph in (graph_looping(), graph_allocating(), graph_reading("secret.bin")):
        np.savez(out / "extractor.npz", **state, onnx=np.frombuffer(graph, np.uint8))  # a pipeline has no checksums to forge
        pipeline = visret.load_pipeline(out)
        got = pipeline.predict_arrays([visret.images.as_array(p, visret.InputSpec("RGB", (96, 96))) for p in images])
        assert np.allclose(got, honest, atol=1e-5)
    np.savez(out / "extractor.npz", graph=state["graph"], probe=state["probe"] * 2)
    with pytest.raises(visret.VisretError, match="gives other features than the network this was built with"):
        visret.load_pipeline(out).predict_arrays([visret.images.as_array(images[0], visret.InputSpec("RGB", (96, 96)))])


def test_a_relative_graph_cache_is_refused(monkeypatch):
    from visret_keras import derived

    monkeypatch.setenv("VISRET_CACHE", "cache")  # it would follow the working directory into a folder someone handed over
    with pytest.raises(VisretError, match="VISRET_CACHE must be an absolute path"):
        derived.cache_folder()
