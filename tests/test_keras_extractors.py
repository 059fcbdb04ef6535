"""CNN feature extraction networks: Keras Applications, textbook CNNs, FENs cut from trained models.

Models are built with random weights (``weights=none``) at small input sizes, or trained for a
few seconds on scikit-learn's digits, so the suite needs no download.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visret
from visret import VisretError, build_index, get_extractor, open_index
from visret.images._decode import as_array

import keras  # a required dependency: a broken install must fail here, not skip

FAMILY_DIMS = {
    "mobilenet": 1024,
    "mobilenet_v2": 1280,
    "mobilenet_v3_small": 576,
    "resnet50": 2048,
    "resnet50_v2": 2048,
    "vgg16": 512,
    "inception_v3": 2048,
    "xception": 2048,
    "densenet121": 1024,
    "efficientnet_b0": 1280,
    "efficientnet_v2_b0": 1280,
    "convnext_tiny": 768,
    "nasnet_mobile": 1056,
}
REQUIRED = [
    "mobilenet", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "resnet50", "resnet101", "resnet152",
    "resnet50_v2", "resnet101_v2", "resnet152_v2", "vgg16", "vgg19", "inception_v3", "inception_resnet_v2",
    "xception", "densenet121", "densenet169", "densenet201", *[f"efficientnet_b{i}" for i in range(8)],
    "efficientnet_v2_b0", "efficientnet_v2_b1", "efficientnet_v2_b2", "efficientnet_v2_b3", "efficientnet_v2_s",
    "convnext_tiny", "nasnet_mobile",
]


def random_images(n, size, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    shape = (size, size, channels) if channels == 3 else (size, size)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


def test_every_required_family_is_registered():
    names = set(visret.features._lookup.extractor_classes())
    assert {f"keras/{n}" for n in REQUIRED} <= names
    assert {"cnn/lenet5", "cnn/vgg-small", "model"} <= names


def test_listing_and_validating_cnn_extractors_does_not_import_tensorflow(project_env):
    code = (
        "import sys, visret\n"
        "visret.get_extractor('keras/resnet50', pooling='max', weights='none')\n"
        "visret.plugins._registry.plugin_report()\n"
        "print('tensorflow' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=project_env, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


@pytest.mark.parametrize("family, dim", sorted(FAMILY_DIMS.items()))
def test_each_family_gives_fixed_length_features(family, dim):
    size = 75 if family in ("inception_v3", "xception") else 32
    extractor = get_extractor(f"keras/{family}", weights="none", size=size)
    assert extractor.input_spec == visret.InputSpec(mode="RGB", size=(size, size))
    features = extractor.extract(random_images(3, size))
    assert extractor.dim == dim and features.shape == (3, dim) and features.dtype == np.float32
    assert np.isfinite(features).all()


def test_random_weights_come_from_the_seed_so_an_index_can_be_queried_later():
    images = random_images(2, 32)
    first = get_extractor("keras/vgg16", weights="none", size=32, seed=3).extract(images)
    again = get_extractor("keras/vgg16", weights="none", size=32, seed=3).extract(images)
    other = get_extractor("keras/vgg16", weights="none", size=32, seed=4).extract(images)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_default_input_size_is_the_familys_own():
    assert get_extractor("keras/mobilenet_v2").input_spec.size == (224, 224)
    assert get_extractor("keras/inception_v3").input_spec.size == (299, 299)
    assert get_extractor("keras/efficientnet_b3").input_spec.size == (300, 300)


def test_preprocessing_is_the_familys_own():
    pixels = np.array([[[[255.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]], np.float32)
    resnet = get_extractor("keras/resnet50", weights="none", size=32)
    # caffe style: RGB -> BGR, minus the ImageNet channel means
    np.testing.assert_allclose(resnet.preprocess(pixels.copy())[0, 0, 0], [-103.939, -116.779, 255 - 123.68], rtol=1e-5)
    mobilenet = get_extractor("keras/mobilenet_v2", weights="none", size=32)
    np.testing.assert_allclose(mobilenet.preprocess(pixels.copy())[0, 0], [[1, -1, -1], [-1, -1, -1]])
    efficientnet = get_extractor("keras/efficientnet_b0", weights="none", size=32)
    np.testing.assert_array_equal(efficientnet.preprocess(pixels.copy()), pixels)  # it rescales inside the model


def test_extract_is_the_model_on_preprocessed_input():
    extractor = get_extractor("keras/resnet50", weights="none", size=32)
    images = random_images(2, 32)
    expected = extractor.model(keras.applications.resnet.preprocess_input(np.stack(images).astype(np.float32)))
    np.testing.assert_allclose(extractor.extract(images), np.asarray(expected), rtol=1e-4, atol=1e-5)


def test_layer_option_pools_an_intermediate_layer_by_average_or_maximum():
    images = random_images(2, 32)
    average = get_extractor("keras/resnet50", weights="none", size=32, layer="conv2_block3_out", pooling="avg")
    maximum = get_extractor("keras/resnet50", weights="none", size=32, layer="conv2_block3_out", pooling="max")
    maximum.model.set_weights(average.model.get_weights())  # same network, only the pooling differs
    assert average.dim == maximum.dim == 256
    inner = keras.Model(average.model.input, average.model.get_layer("conv2_block3_out").output)
    maps = np.asarray(inner(keras.applications.resnet.preprocess_input(np.stack(images).astype(np.float32))))
    assert maps.shape == (2, 8, 8, 256)
    np.testing.assert_allclose(average.extract(images), maps.mean(axis=(1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(maximum.extract(images), maps.max(axis=(1, 2)), rtol=1e-4, atol=1e-5)


def test_normalize_gives_unit_vectors_and_unknown_layers_are_one_error():
    unit = get_extractor("keras/vgg16", weights="none", size=32, normalize=True).extract(random_images(2, 32))
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(VisretError, match="has no layer 'nope'"):
        get_extractor("keras/resnet50", weights="none", size=32, layer="nope").dim


@pytest.mark.parametrize(
    "params, message",
    [
        ({"pooling": "sum"}, "pooling must be one of avg, max"),
        ({"weights": "/no/such/file.h5"}, "weights must be 'imagenet', 'none' or an existing weights file"),
        ({"size": 16}, "size must be an integer >= 32"),
    ],
)
def test_bad_parameters(params, message):
    with pytest.raises(VisretError, match=message):
        get_extractor("keras/resnet50", **params)


def test_a_local_weights_file_gives_the_embeddings_of_the_model_it_came_from(tmp_path):
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16_no_top.weights.h5"
    base.save_weights(path)
    images = random_images(3, 32)
    x = keras.applications.vgg16.preprocess_input(np.stack(images).astype(np.float32))
    expected = np.asarray(base(x)).mean(axis=(1, 2))
    extractor = get_extractor("keras/vgg16", weights=str(path), size=32)
    np.testing.assert_allclose(extractor.extract(images), expected, rtol=1e-4, atol=1e-5)
    fresh = get_extractor("keras/vgg16", weights="none", size=32).extract(images)
    assert not np.allclose(fresh, expected)


def test_offline_imagenet_download_is_one_clear_line(tmp_path, digits, project_env):
    env = {**project_env, "KERAS_HOME": str(tmp_path / "keras-home"), "HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    visret_cli = str(Path(sys.executable).with_name("visret"))
    done = subprocess.run(
        [visret_cli, "index", str(digits / "test"), "-e", "keras/mobilenet_v2", "--index", str(tmp_path / "ix")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5" in errors[0]
    assert str(tmp_path / "keras-home" / "models") in errors[0] and "weights=PATH" in errors[0]
    assert not (tmp_path / "ix" / "manifest.json").exists()


def test_lenet5_has_the_textbook_parameter_count():
    from visret_keras.architectures import lenet5

    assert lenet5((32, 32, 1), n_classes=10).count_params() == 61_706
    extractor = get_extractor("cnn/lenet5")
    assert extractor.dim == 84 and extractor.input_spec == visret.InputSpec(mode="L", size=(32, 32))
    same_seed = get_extractor("cnn/lenet5").extract(random_images(2, 32, channels=1))
    np.testing.assert_allclose(extractor.extract(random_images(2, 32, channels=1)), same_seed, rtol=1e-6)


def test_vgg_small_width_and_depth():
    extractor = get_extractor("cnn/vgg-small", size=32, widths=[8, 16], convs_per_block=3)
    assert extractor.dim == 16
    convs = [l for l in extractor.model.layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [8, 8, 8, 16, 16, 16]
    assert extractor.extract(random_images(2, 32)).shape == (2, 16)


@pytest.fixture(scope="module")
def trained_lenet(tmp_path_factory):
    """LeNet-5 trained for a few epochs on the digits (8x8 upscaled to 32x32), saved as .keras."""
    from sklearn.datasets import load_digits

    from visret_keras.architectures import lenet5

    digits = load_digits()
    images = np.stack([np.asarray(Image.fromarray(np.uint8(im * 255 / 16)).resize((32, 32))) for im in digits.images])
    model = lenet5((32, 32, 1), n_classes=10, seed=1)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(images[..., None].astype(np.float32), digits.target, epochs=4, batch_size=64, verbose=0)
    assert history.history["accuracy"][-1] > 0.9
    path = tmp_path_factory.mktemp("model") / "lenet.keras"
    model.save(path)
    return path, model, images


def test_a_trained_model_is_cut_before_its_head(trained_lenet):
    path, model, images = trained_lenet
    extractor = get_extractor(f"model:{path}")
    assert extractor.dim == 84
    expected = keras.Model(model.inputs[0], model.layers[-2].output)(images[:5, :, :, None].astype(np.float32))
    np.testing.assert_allclose(extractor.extract(list(images[:5])), np.asarray(expected), rtol=1e-4, atol=1e-5)
    assert get_extractor("model", path=str(path), drop=2).dim == 120
    named = model.layers[-3].name
    assert get_extractor("model", path=str(path), layer=named).dim == 120


def test_latent_space_of_a_trained_cnn_retrieves_its_class(trained_lenet, digits, tmp_path):
    path, _, _ = trained_lenet
    index = build_index(digits / "train", f"model:{path}", tmp_path / "ix", metric="cosine")
    with index:
        manifest = index.manifest
        assert manifest["extractor"]["params"]["sha256"] == visret.index._store.files.sha256_file(path)
        image = sorted((digits / "train" / "4").iterdir())[2]
        result = index.query(image, k=5)
        assert result.neighbors[0].path == str(image) and result.neighbors[0].distance < 1e-5
        assert result.prediction == "4"
    report = visret.evaluate_knn(digits / "test", tmp_path / "ix", k=5)
    assert report.accuracy > 0.9


def test_a_changed_model_file_is_detected_when_the_index_is_opened(trained_lenet, digits, tmp_path):
    path, model, _ = trained_lenet
    copy = tmp_path / "copy.keras"
    copy.write_bytes(path.read_bytes())
    build_index(digits / "test", f"model:{copy}", tmp_path / "ix").close()
    model.save(tmp_path / "other.keras")
    model.layers[-1].set_weights([w * 0 for w in model.layers[-1].get_weights()])
    model.save(copy)
    with open_index(tmp_path / "ix") as index, pytest.raises(VisretError, match="has changed since the index was built"):
        index.query(sorted((digits / "test").rglob("*.png"))[0])  # opening serves the stored vectors; a query needs the model


def test_model_extractor_refuses_non_keras_files(tmp_path):
    (tmp_path / "net.h5").write_bytes(b"x")
    with pytest.raises(VisretError, match="is not a .keras file"):
        get_extractor(f"model:{tmp_path / 'net.h5'}")
    with pytest.raises(VisretError, match="path must be a saved .keras model file"):
        get_extractor("model:/no/such.keras")


def test_grey_and_rgba_images_are_expanded_to_three_channels(tmp_path):
    folder = tmp_path / "mixed"
    (folder / "a").mkdir(parents=True)
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8), "L").save(folder / "a" / "grey.png")
    Image.fromarray(rng.integers(0, 256, (40, 40, 4), dtype=np.uint8), "RGBA").save(folder / "a" / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), "RGB").save(folder / "a" / "rgb.png")
    with build_index(folder, "keras/squeezenet", tmp_path / "ix", params={"size": 64}) as index:
        assert len(index) == 3 and index.manifest["dim"] == 512
        grey = as_array(folder / "a" / "grey.png", index.extractor.input_spec)
        assert grey.shape == (64, 64, 3) and (grey[..., 0] == grey[..., 2]).all()
        nearest = index.query(folder / "a" / "rgba.png", k=1).neighbors[0]
        assert nearest.path.endswith("rgba.png") and nearest.distance < 1e-2
