"""The opened index as a Python object: iteration, changes it follows, embeddings of a folder, and a
plugin extractor that fails on every image stopped early with its plugin named."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

import visret
from visret import FeatureExtractor, InputSpec, VisretError, hookimpl

HOG = {"size": 32, "pixels_per_cell": 4}


def test_iterating_gives_every_entry_in_id_order(digits_index, monkeypatch):
    monkeypatch.setattr(visret.index._reader, "ITER_PAGE", 7)  # several pages
    with visret.open_index(digits_index) as index:
        entries = list(index)
        assert [e.id for e in entries] == list(range(1, 151))
        assert entries[3] == index.entry(4)
        assert {e.label for e in entries} == set(index.classes)


def test_add_and_remove_on_the_object_follow_the_new_generation(digits, tmp_path):
    index = visret.build_index(digits / "train", "hog", tmp_path / "ix", params=HOG, workers=1)
    first = index.manifest["generation"]
    added = index.add(digits / "test", workers=1)
    assert added.added == 50 and len(index) == 200 and index.manifest["generation"] != first
    image = sorted((digits / "test" / "2").iterdir())[0]
    assert index.query(image, k=1).neighbors[0].path == str(image)
    removed = index.remove(digits / "test" / "2")
    assert removed.removed == 5 and len(index) == 195
    assert all(e.label != "2" or "/train/" in e.path for e in index)
    assert len(visret.open_index(tmp_path / "ix")) == 195


def test_embed_folder_gives_the_vectors_an_index_stores(digits, digits_index, tmp_path):
    X, records = visret.embed_folder(digits / "train", visret.get_extractor("hog", **HOG), workers=1)
    assert X.shape == (150, 36 * 49) and X.dtype == np.float32
    with visret.open_index(digits_index) as index:
        by_path = {e.path: e.id for e in index}
        np.testing.assert_allclose(X, index.vectors([by_path[str(r.path)] for r in records]), rtol=1e-6)
    assert [r.label for r in records[:3]] == ["0", "0", "0"]
    with pytest.raises(VisretError, match="no image files"):
        visret.embed_folder(tmp_path)


class _Broken(FeatureExtractor):
    """Raises on every image, as a plugin with a bug would."""

    name = "test/broken"

    @property
    def input_spec(self):
        return InputSpec("L", (8, 8))

    @property
    def dim(self):
        return 4

    def extract(self, images):
        raise RuntimeError("kaput")


class _BrokenPlugin:
    @hookimpl
    def register_extractors(self, register):
        register(_Broken)


def test_an_extractor_failing_on_every_image_stops_early_naming_its_plugin(register_plugin, digits, tmp_path, caplog):
    register_plugin(_BrokenPlugin(), "buggy")
    with caplog.at_level(logging.WARNING, logger="visret"):
        with pytest.raises(VisretError, match=r"extractor 'test/broken' \(plugin buggy\) failed on 20 images in a row \(last: RuntimeError: kaput\)"):
            visret.build_index(digits / "train", "test/broken", tmp_path / "ix", workers=1, batch_size=4)
    skipped = [r for r in caplog.records if "extractor failed" in r.getMessage()]
    assert 20 <= len(skipped) < 24  # stopped after the 20th in a row, not after all 150
    assert not (tmp_path / "ix" / "manifest.json").exists()


def test_a_few_images_all_failing_in_the_extractor_say_the_extractor_failed(register_plugin, tmp_path):
    from visret.duplicates import find_duplicates

    register_plugin(_BrokenPlugin(), "buggy")
    folder = tmp_path / "few"
    folder.mkdir()
    for i in range(3):  # fewer than the run of failures that stops a build
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(folder / f"{i}.png")
    with pytest.raises(VisretError, match="the extractor failed on every image of .*few: extractor failed: RuntimeError: kaput"):
        find_duplicates(folder, extractor="test/broken", workers=1)
