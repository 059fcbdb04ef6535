"""The Ray engine on a local Ray instance: the same index as the local engine, resumable, clear errors.

One Ray instance (2 CPUs, loopback only) serves the whole module: the engine joins an instance
already started in the process, as it would join a cluster.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

import visret
from visret import VisretError
from visret.embedding.engines import ray_data

HOG = {"size": 32, "pixels_per_cell": 4}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    started = ray_data.connect(None)
    yield
    if started:
        ray.shutdown()


def _contents(index):
    """Each entry's (label, sha256) and vector, by path: what must not depend on the engine."""
    rows = sorted((e.path, e.label, e.sha256, e.id) for e in index)
    return {r[0]: (r[1], r[2]) for r in rows}, index.vectors([r[3] for r in rows])


def test_ray_build_equals_the_local_build_with_the_same_skips(folder_with_broken_files, digits, tmp_path):
    for label in ("c", "d"):  # more images than a batch, in several shards
        (folder_with_broken_files / label).mkdir()
        for source in sorted((digits / "train" / label.replace("c", "1").replace("d", "7")).iterdir()):
            (folder_with_broken_files / label / source.name).write_bytes(source.read_bytes())
    local = visret.build_index(folder_with_broken_files, "hog", tmp_path / "local", params=HOG, workers=1, shard_size=8, batch_size=4)
    seen = []
    distributed = visret.build_index(folder_with_broken_files, "hog", tmp_path / "ray", params=HOG, shard_size=8, batch_size=4,
                                     engine="ray", progress=lambda done, total: seen.append((done, total)))
    entries, vectors = _contents(local)
    ray_entries, ray_vectors = _contents(distributed)
    assert ray_entries == entries and len(entries) == len(local) > 30
    np.testing.assert_allclose(ray_vectors, vectors, rtol=1e-6, atol=1e-7)
    assert distributed.manifest["build"]["skipped"] == local.manifest["build"]["skipped"] >= 4
    assert seen[-1][0] == seen[-1][1] == len(local) + local.manifest["build"]["skipped"]
    assert distributed.manifest["shards"][0]["rows"] <= 8 + 4  # committed as parts, not at the end
    assert [n.path for n in distributed.query(sorted((folder_with_broken_files / "c").iterdir())[2], k=3).neighbors] == \
        [n.path for n in local.query(sorted((folder_with_broken_files / "c").iterdir())[2], k=3).neighbors]


def test_an_interrupted_ray_build_resumes_without_recomputing(digits, tmp_path):
    path = tmp_path / "ray"

    def interrupt(done, total):
        if done >= 100:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        visret.build_index(digits / "train", "hog", path, params=HOG, engine="ray", shard_size=32, batch_size=8, progress=interrupt)
    committed = sorted((path / ".staging").glob("part-*.json"))
    assert committed, "parts are committed while the run goes"
    first = []
    resumed = visret.build_index(digits / "train", "hog", path, params=HOG, engine="ray", shard_size=32, batch_size=8,
                                 progress=lambda done, total: first.append(done))
    assert first[0] >= 32 * len(committed) > 0  # the committed parts count as done from the start
    local = visret.build_index(digits / "train", "hog", tmp_path / "local", params=HOG, workers=1)
    assert _contents(resumed)[0] == _contents(local)[0]
    np.testing.assert_allclose(_contents(resumed)[1], _contents(local)[1], rtol=1e-6, atol=1e-7)
    assert not (path / ".staging").exists()


def test_a_cnn_is_built_in_each_actor_and_gives_the_local_vectors(digits, tmp_path):
    spec = {"name": "keras/mobilenet_v2", "params": {"weights": "none", "size": 32}}
    images = tmp_path / "images"
    for source in sorted((digits / "test").rglob("*.png"))[:24]:
        (images / source.parent.name).mkdir(parents=True, exist_ok=True)
        (images / source.parent.name / source.name).write_bytes(source.read_bytes())
    local = visret.build_index(images, spec, tmp_path / "local", workers=1)
    distributed = visret.build_index(images, spec, tmp_path / "ray", engine="ray", actors=2, batch_size=8)
    assert _contents(distributed)[0] == _contents(local)[0]
    np.testing.assert_allclose(_contents(distributed)[1], _contents(local)[1], rtol=1e-4, atol=1e-6)


def test_add_and_sync_run_on_ray_from_a_parquet_list(digits, tmp_path, cli):
    files = sorted((digits / "train").rglob("*.png"))
    listed = tmp_path / "images.parquet"
    pq.write_table(pa.table({"path": [f.as_uri() for f in files[:60]], "label": [f.parent.name for f in files[:60]]}), listed)
    index = tmp_path / "index"
    result = cli("index", "--from-list", str(listed), "--engine", "ray", "--actors", "2", "--extractor", "hog",
                 "--param", "size=32", "--param", "pixels_per_cell=4", "--index", str(index))
    assert result.exit_code == 0, result.output
    assert "indexed 60 images, skipped 0" in result.output
    added = cli("add", str(digits / "test"), "--engine", "ray", "--index", str(index))
    assert added.exit_code == 0 and "added 50" in added.output, added.output
    synced = cli("sync", str(digits / "test"), "--engine", "ray", "--index", str(index))
    assert synced.exit_code == 0 and "unchanged 50" in synced.output, synced.output
    with visret.open_index(index) as opened:
        assert len(opened) == 110
        assert opened.query(files[10], k=1).neighbors[0].path == files[10].as_uri()


def test_an_extractor_that_cannot_work_stops_the_ray_run_in_one_line(digits, tmp_path):
    spec = {"name": "keras/mobilenet_v2", "params": {"weights": str(tmp_path / "missing.weights.h5"), "size": 32}}
    with pytest.raises(VisretError):
        visret.build_index(digits / "test", spec, tmp_path / "ray", engine="ray", actors=1)


def test_an_unreachable_cluster_is_one_line_within_seconds(digits, tmp_path):
    import socket

    with socket.socket() as probe:  # a port on the loopback that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        run = subprocess.run(
            [str(Path(sys.executable).with_name("visret")), "index", str(digits / "test"), "--engine", "ray", "--ray-address", address,
             "--index", str(tmp_path / "ix")], capture_output=True, text=True, timeout=120,
        )
        assert run.returncode == 1
        assert run.stderr.strip() == f"error: cannot reach the Ray cluster at {address}: connection refused"
    assert not (tmp_path / "ix" / "manifest.json").exists()


def test_engine_options_are_checked_before_any_work(digits, tmp_path, monkeypatch):
    with pytest.raises(VisretError, match="unknown engine 'spark'"):
        visret.build_index(digits / "test", "hog", tmp_path / "a", engine="spark")
    with pytest.raises(VisretError, match="need --engine ray"):
        visret.build_index(digits / "test", "hog", tmp_path / "a", actors=2)
    with pytest.raises(VisretError, match="actors must be at least 1"):
        visret.build_index(digits / "test", "hog", tmp_path / "a", engine="ray", actors=0)
    monkeypatch.setitem(sys.modules, "ray.data", None)  # as if the extra were not installed
    with pytest.raises(VisretError, match=r"needs Ray Data .*pip install 'visret\[ray\]'"):
        visret.build_index(digits / "test", "hog", tmp_path / "a", engine="ray")
