"""The built-in handcrafted extractors: fixed length, determinism, known answers, parameters."""

import numpy as np
import pytest
from skimage import data as skdata
from skimage.feature import hog

import visret
from visret import VisretError, get_extractor
from visret.images._decode import as_array

BUILTIN = [
    "color-hist", "color-moments", "color-correlogram", "hog", "lbp", "glcm", "gabor", "gist", "shape", "edges", "pixels",
]


def sample_images():
    """Real photos of varied sizes and modes from scikit-image (RGB, grey, RGBA, tiny)."""
    rgba = np.dstack([skdata.chelsea(), np.full(skdata.chelsea().shape[:2], 200, np.uint8)])
    return [skdata.astronaut(), skdata.camera(), skdata.coffee()[:200, :333], skdata.coins(), rgba, skdata.astronaut()[::40, ::40]]


@pytest.mark.parametrize("name", BUILTIN)
def test_fixed_length_and_deterministic_for_varied_sizes_and_modes(name):
    extractor = get_extractor(name)
    images = [as_array(image, extractor.input_spec) for image in sample_images()]
    first = extractor.extract(images)
    assert first.shape == (6, extractor.dim) and first.dtype == np.float32
    assert np.isfinite(first).all()
    assert np.array_equal(first, extractor.extract(images))
    assert len({row.tobytes() for row in first}) == 6  # different photos, different features


def test_color_histogram_of_a_uniform_image_is_one_bin():
    extractor = get_extractor("color-hist", bins=[8, 4, 4])
    red = np.zeros((128, 128, 3), np.uint8)
    red[..., 0] = 255  # hue 0, saturation 1, value 1
    hist = extractor.extract([as_array(red, extractor.input_spec)])[0]
    expected = np.zeros(128, np.float32)
    expected[np.ravel_multi_index((0, 3, 3), (8, 4, 4))] = 1.0
    assert np.array_equal(hist, expected)


def test_color_histograms_sum_to_one_raw_and_have_unit_length_normalised():
    raw = get_extractor("color-hist", bins=6, norm="none")
    features = raw.extract([as_array(skdata.astronaut(), raw.input_spec)])
    assert features.shape == (1, 216)
    assert features.sum() == pytest.approx(1.0, abs=1e-5)
    default = get_extractor("color-hist", bins=6)  # power 0.3, then L2
    normalised = default.extract([as_array(skdata.astronaut(), default.input_spec)])
    np.testing.assert_allclose(normalised, features**0.3 / np.linalg.norm(features**0.3), rtol=1e-5)


def test_hog_equals_scikit_image_on_the_resized_image():
    extractor = get_extractor("hog", size=64, pixels_per_cell=8, orientations=6)
    image = as_array(skdata.camera(), extractor.input_spec)
    expected = hog(image, orientations=6, pixels_per_cell=(8, 8), cells_per_block=(2, 2), block_norm="L2-Hys")
    assert extractor.dim == expected.size == 7 * 7 * 4 * 6
    np.testing.assert_allclose(extractor.extract([image])[0], expected, rtol=1e-6)


def test_lbp_of_a_flat_image_is_all_the_uniform_pattern_with_every_bit_set():
    extractor = get_extractor("lbp", points=8, norm="none")
    hist = extractor.extract([np.full((32, 32), 77, np.uint8)])[0]
    assert extractor.dim == 10
    assert hist[8] == 1.0 and hist.sum() == pytest.approx(1.0)


def test_uniform_lbp_is_invariant_to_a_90_degree_rotation():
    extractor = get_extractor("lbp", points=8, radius=1, size=256)
    image = as_array(skdata.brick(), extractor.input_spec)
    upright, turned = extractor.extract([image, np.ascontiguousarray(np.rot90(image))])
    np.testing.assert_allclose(upright, turned, atol=1e-6)


def test_pixels_are_the_resized_image_scaled_to_unit_range():
    extractor = get_extractor("pixels", size=4, mode="L")
    image = np.arange(16, dtype=np.uint8).reshape(4, 4) * 16
    np.testing.assert_allclose(extractor.extract([image])[0], image.ravel() / 255.0, rtol=1e-6)


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("hog", {"size": 0}, "size must be an integer >= 1"),
        ("hog", {"size": 16, "pixels_per_cell": 16}, "fewer than cells_per_block"),
        ("hog", {"block_norm": "L3"}, "block_norm must be one of"),
        ("lbp", {"method": "var"}, "method must be one of"),
        ("lbp", {"radius": -1}, "radius must be positive"),
        ("lbp", {"points": [8, 16], "radius": 1}, "points and radius must have the same length"),
        ("lbp", {"points": 100000}, "points must be at most 8 at radius 1.0"),
        ("lbp", {"points": [8, 25], "radius": [1, 3]}, "points must be at most 24 at radius 3"),
        ("glcm", {"properties": ["contrast", "beauty"]}, "properties must be one of"),
        ("glcm", {"levels": 512}, "levels must be at most 256"),
        ("gabor", {"frequencies": [0.8]}, "frequencies must be in"),
        ("shape", {"threshold": 300}, "threshold must be 'otsu' or a grey level"),
        ("edges", {"sigma": 1000000}, "sigma must be at most 16"),
        ("gabor", {"orientations": 100000}, "orientations must be at most 64"),
        ("gabor", {"size": 4096}, "the filter bank would take .* GiB"),
        ("color-hist", {"space": "cmyk"}, "space must be one of"),
        ("color-correlogram", {"distances": [100], "size": 64}, "does not fit in size 64"),
        ("bovw", {"descriptor": "surf"}, "descriptor must be one of"),
        ("combine", {"parts": ["hog", "nope"]}, "unknown extractor 'nope'"),
        ("combine", {"parts": ["hog", "lbp"], "weights": [1]}, "2 parts but 1 weights"),
        ("post", {"steps": ["pca:x"]}, "unknown step 'pca:x'"),
        ("color-hist", {"bins": [8, 8]}, "bins must be an integer or 3 integers"),
        ("pixels", {"mode": "CMYK"}, "mode must be one of"),
        ("hog", {"colour": 1}, "has no parameter colour"),
        ("nope", {}, "unknown extractor 'nope'"),
    ],
)
def test_bad_parameters_are_one_clear_error(name, params, message):
    with pytest.raises(VisretError, match=message):
        get_extractor(name, **params)


def test_config_round_trips_through_json():
    import json

    extractor = get_extractor("color-hist", bins=[4, 4, 2], size=64)
    config = json.loads(json.dumps(extractor.get_config()))
    again = get_extractor(config["name"], **config["params"])
    assert again.get_config() == json.loads(json.dumps(extractor.get_config()))
    assert again.dim == extractor.dim == 32
    assert isinstance(again, visret.FeatureExtractor)
