"""Indexes whose vectors live only as their structure's codes (SQ8, PQ): no shards, every use still served."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import visret
from visret import VisretError

HOG = {"size": 32, "pixels_per_cell": 4}


@pytest.fixture(scope="module")
def pair(digits, tmp_path_factory):
    """The digits' train part as ``IVF4,SQ8``: by default (codes only) and with its vectors kept."""
    root = tmp_path_factory.mktemp("codes")
    for name, keep in (("codes", None), ("kept", True)):
        visret.build_index(digits / "train", "hog", root / name, params=HOG, workers=1, factory="IVF4,SQ8",
                           nprobe=4, keep_vectors=keep).close()
    return root / "codes", root / "kept"


def test_a_coding_factory_keeps_only_its_codes_and_answers_as_with_its_vectors(pair, digits):
    codes, kept = pair
    with visret.open_index(codes) as small, visret.open_index(kept) as full:
        assert small.as_codes and not full.as_codes
        assert small.manifest["shards"] == [] and not any((codes / "shards").iterdir())
        assert small.info()["bytes"] < 0.5 * full.info()["bytes"]  # 4 bytes a dimension as float32, 1 as SQ8
        images = sorted((digits / "test").rglob("*.png"))[:12]
        assert [r.to_dict() for r in small.query_batch(images, k=5)] == [r.to_dict() for r in full.query_batch(images, k=5)]
        ids = [entry.id for entry in full][::7]
        exact, decoded = full.vectors(ids), small.vectors(ids)
        error = np.linalg.norm(decoded - exact, axis=1) / np.linalg.norm(exact, axis=1)
        assert error.max() < 0.02, error.max()  # 8 bits a dimension
        assert not np.array_equal(decoded, exact)
        assert small.similar_by_id(ids[0], k=5).neighbors[0].id == full.similar_by_id(ids[0], k=5).neighbors[0].id
        reranked = small.query(images[0], k=5, rerank="alpha-qe:k=3")  # reads the neighbours' decoded vectors
        assert len(reranked.neighbors) == 5
        with pytest.raises(VisretError, match="entry 99999 is not in the index"):
            small.vectors([99999])


def test_leave_one_out_export_and_recall_read_the_decoded_vectors(pair, tmp_path, cli):
    codes, kept = pair
    small = visret.evaluate_knn(index=codes, k=5)
    full = visret.evaluate_knn(index=kept, k=5)
    assert abs(small.accuracy - full.accuracy) <= 0.02 and small.accuracy > 0.8
    exported = visret.export_autofaiss(tmp_path / "out", codes)
    assert exported.count == 150 and exported.files == 1
    with visret.open_index(codes) as index:
        first = np.load(tmp_path / "out" / "embeddings" / "embeddings_00000.npy")
        np.testing.assert_array_equal(first, index.vectors(index.stored_ids()))
    shown = cli("info", "--index", codes, "--recall")
    assert shown.exit_code == 0, shown.output
    assert "vectors kept only as" in shown.output and "recall@10 (vs every list probed, sample)" in shown.output


def test_add_remove_and_sync_change_the_codes_alone(pair, digits, tmp_path):
    path = tmp_path / "ix"
    shutil.copytree(pair[0], path)
    added = visret.add_images([digits / "test"], path, workers=1)
    assert added.added == 50
    with visret.open_index(path) as index:
        assert index.as_codes and len(index) == 200 and index.manifest["shards"] == []
        image = sorted((digits / "test" / "6").iterdir())[0]
        assert index.query(image, k=1).neighbors[0].path == str(image)
    removed = visret.remove_images([digits / "test" / "6"], path)
    assert removed.removed == 5
    with visret.open_index(path) as index:
        assert len(index) == 195 and sorted(index.stored_ids().tolist()) == sorted(entry.id for entry in index)
        assert str(image) not in {n.path for n in index.query(image, k=20).neighbors}
        assert index.vectors(index.stored_ids()[:3]).shape == (3, index.manifest["vector_dim"])
    assert not any((path / "shards").iterdir())


@pytest.mark.parametrize("factory", ["Flat", "IVF4,Flat", "HNSW8"])
def test_codes_only_is_refused_for_a_structure_that_needs_the_vectors_before_any_image_is_read(digits, tmp_path, factory, monkeypatch):
    from visret.index import _building

    def embedder(*_):
        raise AssertionError("the refusal came after embedding began")

    monkeypatch.setattr(_building, "open_embedder", embedder)
    with pytest.raises(VisretError, match="does not keep vectors as codes"):
        visret.build_index(digits / "train", "hog", tmp_path / "ix", params=HOG, workers=1, factory=factory, keep_vectors=False)
    assert not (tmp_path / "ix" / "manifest.json").exists()


def test_a_manifest_that_claims_codes_over_a_structure_without_them_is_corrupt(digits, tmp_path):
    """Data, never trust: an IVF-Flat index whose manifest says its codes are the only copy (shards dropped,
    checksum redone) is refused on opening, not a traceback when vectors are first asked for."""
    import json

    from visret.index._store.layout import MANIFEST, checksum

    path = tmp_path / "ix"
    visret.build_index(digits / "train", "hog", path, params=HOG, workers=1, factory="IVF4,Flat", nprobe=4).close()
    manifest = json.loads((path / MANIFEST).read_text())
    manifest.update(stored_as="codes", shards=[])
    manifest["checksum"] = checksum(manifest)
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(VisretError, match="corrupt: .*cannot decode the vectors"):
        visret.open_index(path)
