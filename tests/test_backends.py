"""Index backends: FAISS as the built-in one, and a third-party numpy backend (``tests/numpy_backend.py``)
registered in a fixture, running ``visret index``/``query``/``add``/``remove`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

import visret
from visret import VisretError
from numpy_backend import NumpyBackendPlugin

HOG = ("-e", "hog", "-p", "size=32", "-p", "pixels_per_cell=4")


@pytest.fixture
def numpy_backend(register_plugin):
    register_plugin(NumpyBackendPlugin(), "numpy-backend")


def test_a_third_party_backend_runs_index_and_query_end_to_end(numpy_backend, digits, tmp_path, cli):
    path = tmp_path / "ix"
    built = cli("index", str(digits / "train"), *HOG, "--factory", "numpy:exact", "--index", str(path), "--workers", "1")
    assert built.exit_code == 0, built.output
    manifest = json.loads((path / "manifest.json").read_text())
    assert (manifest["factory"], manifest["backend"]) == ("numpy:exact", "numpy")
    query = sorted((digits / "test" / "4").iterdir())[0]
    answer = cli("query", str(query), "--index", str(path), "-k", "5", "--json")
    assert answer.exit_code == 0, answer.output
    flat = visret.build_index(digits / "train", "hog", tmp_path / "flat", params={"size": 32, "pixels_per_cell": 4}, workers=1)
    expected = [n.id for n in flat.query(query, k=5).neighbors]
    assert [n["id"] for n in json.loads(answer.stdout)[0]["neighbors"]] == expected
    with visret.open_index(path) as index:
        index.add(digits / "test", workers=1)
        index.remove(digits / "train" / "4")
        assert len(index) == 185 and index.recall_at_10() == 1.0
        first = index.query(query, k=1).neighbors[0]
        assert first.path == str(query) and first.distance == pytest.approx(0.0, abs=1e-5)


def test_a_backend_refuses_a_spec_before_any_work(numpy_backend, digits, tmp_path):
    with pytest.raises(VisretError, match="knows 'exact' only, not 'approximate'"):
        visret.build_index(digits / "train", "hog", tmp_path / "ix", factory="numpy:approximate")
    assert not (tmp_path / "ix" / "manifest.json").exists()


def test_an_index_whose_backend_is_gone_is_one_line(register_plugin, digits, tmp_path):
    register_plugin(NumpyBackendPlugin(), "numpy-backend")
    visret.build_index(digits / "test", "hog", tmp_path / "ix", factory="numpy:exact", workers=1).close()
    visret.plugins._registry.pm.unregister(name="numpy-backend")
    visret.plugins._registry.reset_registry()
    with pytest.raises(VisretError, match="index backend 'numpy' is not installed"):
        visret.open_index(tmp_path / "ix")


def test_faiss_is_the_builtin_backend_of_every_factory_string(digits, tmp_path):
    index = visret.build_index(digits / "train", "hog", tmp_path / "ix", factory="IVF4,Flat", nprobe=4, workers=1)
    assert index.manifest["backend"] == "faiss" and index.recall_at_10() == 1.0
    report = {row["name"]: row for row in visret.plugins._registry.plugin_report()}
    assert report["backends"]["backends"] == ["faiss"]
    X = index.vectors([1, 2])
    assert [r.neighbors[0].id for r in index.query_vectors(X, k=1)] == [1, 2]
    assert np.isfinite(X).all()
