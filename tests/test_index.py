"""Saved indexes: building, querying, metrics, skips, atomic writes, integrity checks."""

import hashlib
import json
import logging
import sqlite3
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

import visret
from visret import VisretError, build_index, get_extractor, open_index
from visret.images._folders import scan_folder
from visret.images._decode import read_image
from visret.index._store.layout import checksum

HOG32 = {"size": 32, "pixels_per_cell": 4}


def data_files(path: Path) -> list[str]:
    """The index's files (not its lock, nor an interrupted run's staging area)."""
    return sorted(
        p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file() and p.name != ".lock" and ".staging" not in p.parts
    )


def referenced(path: Path) -> set[str]:
    manifest = json.loads((path / "manifest.json").read_text())
    return {"manifest.json"} | {f["name"] for f in manifest["files"].values()} | {s["name"] for s in manifest["shards"]}


def test_a_query_of_an_indexed_image_returns_it_first_at_distance_zero(digits_index, digits):
    image = sorted((digits / "train" / "7").iterdir())[3]
    with open_index(digits_index) as index:
        result = index.query(image, k=5)
    assert result.neighbors[0].path == str(image.absolute())
    assert result.neighbors[0].distance == 0.0
    assert result.neighbors[0].label == "7"
    assert [n.distance for n in result.neighbors] == sorted(n.distance for n in result.neighbors)
    assert result.prediction == "7"
    assert sum(result.probabilities.values()) == pytest.approx(1.0)


def test_manifest_records_how_the_index_was_built(digits_index, digits):
    manifest = json.loads((digits_index / "manifest.json").read_text())
    assert manifest["extractor"] == {"name": "hog", "params": {**get_extractor("hog").get_params(), **HOG32}, "plugin": "visret"}
    assert manifest["dim"] == 7 * 7 * 4 * 9 == get_extractor("hog", **HOG32).dim
    assert manifest["metric"] == "l2" and manifest["factory"] == "Flat"
    assert manifest["count"] == 150 and manifest["classes"] == [str(d) for d in range(10)]
    assert manifest["visret_version"] == visret.__version__
    assert manifest["build"]["indexed"] == 150 and manifest["build"]["skipped"] == 0
    for entry in manifest["files"].values():
        assert hashlib.sha256((digits_index / entry["name"]).read_bytes()).hexdigest() == entry["sha256"]


def test_entries_table_holds_path_label_and_content_hash(digits_index, digits):
    manifest = json.loads((digits_index / "manifest.json").read_text())
    db = sqlite3.connect(digits_index / manifest["files"]["entries"]["name"])
    rows = db.execute("SELECT id, path, label, sha256, added_at FROM entries ORDER BY id").fetchall()
    db.close()
    records = scan_folder(digits / "train")
    assert [(r[1], r[2]) for r in rows] == [(str(r.path), r.label) for r in records]
    assert rows[0][3] == hashlib.sha256(records[0].path.read_bytes()).hexdigest()
    assert [r[0] for r in rows] == list(range(1, 151))


@pytest.mark.parametrize("metric", ["l2", "cosine", "l1"])
def test_distances_match_brute_force(metric, digits, tmp_path):
    extractor = get_extractor("pixels", size=8)
    records = scan_folder(digits / "train")
    database = np.stack([extractor.extract([read_image(r.path, extractor.input_spec)[0]])[0] for r in records])
    with build_index(digits / "train", extractor, tmp_path / metric, metric=metric, workers=1) as index:
        query = database[[5, 77]] * 0.9 + 0.05
        distances, ids = index.search(index.distance.prepare(query), 10)
    if metric == "l2":
        expected = np.linalg.norm(database[None] - query[:, None], axis=-1)
    elif metric == "l1":
        expected = np.abs(database[None] - query[:, None]).sum(-1)
    else:
        unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
        expected = 1 - unit(query) @ unit(database).T
    for row in range(2):
        order = np.argsort(expected[row], kind="stable")[:10]
        np.testing.assert_allclose(distances[row], expected[row][order], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(expected[row][ids[row] - 1], expected[row][order], rtol=1e-4, atol=1e-5)


def test_broken_files_are_skipped_reported_and_counted(folder_with_broken_files, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="visret"):
        index = build_index(folder_with_broken_files, "color-hist", tmp_path / "ix", max_pixels=1_000_000, workers=1)
    with index:
        assert len(index) == 6
        assert index.manifest["build"]["skipped"] == 5
        paths = {n.path for n in index.query(folder_with_broken_files / "b" / "good1.png", k=10).neighbors}
    assert paths == {str(p) for p in folder_with_broken_files.rglob("good*.png")}
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped")]
    assert len(skipped) == 5
    assert any("empty.png: empty file" in m for m in skipped)
    assert any("bomb.png: 4000x4000 pixels exceeds the limit" in m for m in skipped)
    assert any("not-an-image.jpg: not an image" in m for m in skipped)


def test_unlabelled_folder_gives_neighbours_without_prediction(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(4):
        Image.new("RGB", (20, 20), (60 * i, 20, 200)).save(flat / f"{i}.png")
    with build_index(flat, "color-hist", tmp_path / "ix", workers=1) as index:
        result = index.query(np.full((20, 20, 3), (120, 20, 200), np.uint8), k=2)
    assert result.prediction is None and result.probabilities == {}
    assert result.neighbors[0].path.endswith("2.png") and result.neighbors[0].distance == 0.0
    assert result.neighbors[0].label is None


class Interrupting(visret.FeatureExtractor):
    """Raises KeyboardInterrupt on its third batch, as a Ctrl-C would."""

    name: ClassVar[str] = "test/interrupting"

    def __init__(self):
        self.calls_ = 0

    @property
    def input_spec(self):
        return visret.InputSpec(mode="L", size=(8, 8))

    @property
    def dim(self):
        return 64

    def extract(self, images):
        self.calls_ += 1
        if self.calls_ == 3:
            raise KeyboardInterrupt
        return np.stack(images).reshape(len(images), -1).astype(np.float32)


class FailingState(Interrupting):
    """Fails while its state is written, after the vectors file is already in place."""

    name: ClassVar[str] = "test/failing-state"

    def extract(self, images):
        return np.stack(images).reshape(len(images), -1).astype(np.float32)

    def get_state(self):
        raise OSError("disk full")


def test_an_interrupted_or_failed_rebuild_leaves_the_old_index_whole(digits, tmp_path):
    path = tmp_path / "ix"
    build_index(digits / "train", "color-hist", path, workers=1).close()
    before = {name: (path / name).read_bytes() for name in data_files(path)}
    with pytest.raises(KeyboardInterrupt):
        build_index(digits / "train", Interrupting(), path, workers=1, batch_size=16)
    with pytest.raises(OSError, match="disk full"):
        build_index(digits / "train", FailingState(), path, workers=1)
    assert {name: (path / name).read_bytes() for name in before} == before
    with open_index(path) as index:
        assert len(index) == 150 and index.extractor.name == "color-hist"
    # each successful write keeps its own generation and the previous one (for readers opening it)
    build_index(digits / "test", "pixels", path, workers=1).close()
    first = referenced(path)
    build_index(digits / "test", "lbp", path, workers=1).close()
    assert set(data_files(path)) == referenced(path) | (first - {"manifest.json"}) | {"manifest.json"}
    assert not (path / ".staging").exists()
    with open_index(path) as index:
        assert len(index) == 50 and index.extractor.name == "lbp"


def corrupt(path: Path, edit, sign: bool = True) -> None:
    """Edit the manifest; ``sign`` recomputes its checksum (so later checks are reached)."""
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    if sign:
        manifest["checksum"] = checksum(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def small_index(digits, tmp_path) -> Path:
    path = tmp_path / "small"
    build_index(digits / "test", "hog", path, params=HOG32, workers=1).close()
    return path


def test_a_damaged_shard_is_found_on_its_first_read_and_by_verify_on_opening(small_index, digits):
    name = json.loads((small_index / "manifest.json").read_text())["shards"][0]["name"]
    data = bytearray((small_index / name).read_bytes())
    data[-5] ^= 0xFF
    (small_index / name).write_bytes(bytes(data))
    with open_index(small_index) as index:  # opening stays cheap: sizes and structure only
        with pytest.raises(VisretError, match=f"corrupt: {name} does not match its checksum"):
            index.query(sorted((digits / "test" / "3").iterdir())[0], k=3)
    with pytest.raises(VisretError, match=f"corrupt: {name} does not match its checksum"):
        open_index(small_index, verify=True)
    (small_index / name).write_bytes(bytes(data) + b"\0")
    with pytest.raises(VisretError, match=f"corrupt: {name} does not have its recorded size"):
        open_index(small_index)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.update(format_version=99), "has format 99, newer than this visret"),
        (lambda m: m.update(format_version=1), "has format 1, from an older visret; rebuild it"),
        (lambda m: m["extractor"]["params"].update(size=64), "holds 1764-d vectors but extractor 'hog' now gives 8100-d"),
        (lambda m: m["extractor"].update(name="gone"), "built with extractor 'gone', which cannot be created"),
        (lambda m: m["files"].pop("entries"), "corrupt: manifest.json: no entries file"),
        (lambda m: m.pop("dim"), "corrupt: manifest.json: manifest has no 'dim'"),
        (lambda m: m.update(count=3), "corrupt: manifest.json: shards do not hold the manifest's count"),
    ],
)
def test_a_mismatched_or_newer_index_is_one_clear_error(small_index, edit, message):
    corrupt(small_index, edit)
    with pytest.raises(VisretError, match=message):
        open_index(small_index).query(np.zeros((32, 32), np.uint8))  # an extractor it cannot create: on first use


def test_an_unreadable_manifest_or_a_missing_index_is_one_clear_error(small_index, tmp_path):
    (small_index / "manifest.json").write_text("{not json")
    with pytest.raises(VisretError, match="corrupt: unreadable manifest.json"):
        open_index(small_index)
    with pytest.raises(VisretError, match="no index at"):
        open_index(tmp_path / "missing")


def test_a_folder_that_is_not_an_index_is_never_overwritten(digits, tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(VisretError, match="not empty and is not a visret index"):
        build_index(digits / "test", "pixels", tmp_path, workers=1)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_default_index_path_comes_from_the_environment(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("VISRET_INDEX", str(tmp_path / "from-env"))
    build_index(digits / "test", "pixels", workers=1).close()
    with open_index() as index:
        assert index.path == tmp_path / "from-env" and len(index) == 50
    monkeypatch.delenv("VISRET_INDEX")
    monkeypatch.chdir(tmp_path)
    build_index(digits / "test", "pixels", workers=1).close()
    assert (tmp_path / "indexes" / "default" / "manifest.json").is_file()


def test_unreadable_query_is_a_user_error(small_index, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"")
    with open_index(small_index) as index, pytest.raises(VisretError, match="cannot read query image .*bad.png: empty file"):
        index.query(tmp_path / "bad.png")


def test_the_peak_memory_measure_sees_what_the_measured_code_touches():
    from peak_memory import peak_growth_mib

    """The measure itself: 200 MB touched after a 300 MB peak reads as about 200 MB, not 0."""
    growth = peak_growth_mib("import numpy as np\nx = np.ones(300 * 2**20 // 8)\ndel x", "import numpy as np\ny = np.ones(200 * 2**20 // 8)")
    assert 180 < growth < 260


def test_a_huge_k_costs_what_the_collection_holds(digits_index, digits):
    from peak_memory import peak_growth_mib

    query = sorted((digits / "test" / "4").iterdir())[0]
    setup = f"import visret\nindex = visret.open_index({str(digits_index)!r})\nindex.query({str(query)!r}, k=5, rerank='none')"
    measured = (f"plain = index.query({str(query)!r}, k=100_000_000)\n"
                f"reranked = index.query({str(query)!r}, k=100_000_000, rerank='dba:k=100000000+alpha-qe:k=100000000')\n"
                "assert len(plain.neighbors) == len(reranked.neighbors) == len(index) == 150")
    assert peak_growth_mib(setup, measured) < 100  # a k-sized array of ids and distances alone is 1.2 GB
