"""Known answers for the handcrafted descriptors: uniform images, rotations, scalings, gratings."""

import numpy as np
import pytest
from skimage import data as skdata
from skimage.draw import ellipse

from visret import get_extractor
from visret.images._decode import as_array


def uniform(value, shape=(64, 64, 3)):
    return np.full(shape, value, np.uint8)


@pytest.mark.parametrize("space", ["rgb", "hsv", "lab"])
def test_a_uniform_image_fills_one_bin_per_channel(space):
    joint = get_extractor("color-hist", space=space, bins=4, norm="none")  # the histograms themselves
    per_channel = get_extractor("color-hist", space=space, bins=4, joint=False, norm="none")
    image = as_array(uniform((200, 30, 30)), joint.input_spec)
    hist = joint.extract([image])[0]
    assert hist.max() == 1.0 and np.count_nonzero(hist) == 1
    channels = per_channel.extract([image])[0].reshape(3, 4)
    assert per_channel.dim == 12
    np.testing.assert_allclose(channels.max(axis=1), 1 / 3)
    assert (np.count_nonzero(channels, axis=1) == 1).all()


def test_color_moments_of_a_uniform_image():
    extractor = get_extractor("color-moments", space="rgb")
    moments = extractor.extract([as_array(uniform((51, 102, 255)), extractor.input_spec)])[0]
    np.testing.assert_allclose(moments, [0.2, 0.4, 1.0, 0, 0, 0, 0, 0, 0], atol=1e-6)


def test_color_moments_skewness_sign():
    extractor = get_extractor("color-moments", space="rgb", size=10)
    dark_with_bright_spot = uniform(10, (10, 10, 3))
    dark_with_bright_spot[0, 0] = 250
    assert (extractor.extract([dark_with_bright_spot])[0][6:] > 0).all()


def test_correlogram_of_a_uniform_image_and_of_a_checkerboard():
    extractor = get_extractor("color-correlogram", bins=2, distances=[1, 2])
    flat = extractor.extract([uniform(255)])[0].reshape(2, 8)
    np.testing.assert_allclose(flat[:, 7], 1.0)  # white stays white at every distance
    assert flat[:, :7].sum() == 0
    board = np.indices((64, 64)).sum(axis=0) % 2 * 255
    checker = extractor.extract([np.dstack([board] * 3).astype(np.uint8)])[0].reshape(2, 8)
    # horizontal/vertical neighbours at distance 1 always differ, diagonal ones always match: 2 of 4 offsets
    np.testing.assert_allclose(checker[0, [0, 7]], 0.5, atol=0.01)
    np.testing.assert_allclose(checker[1, [0, 7]], 1.0)  # distance 2: every offset lands on the same colour


@pytest.mark.parametrize("method", ["uniform", "ror"])
def test_rotation_invariant_lbp_ignores_a_quarter_turn(method):
    extractor = get_extractor("lbp", points=[8, 8], radius=[1, 2], method=method, size=256)
    image = as_array(skdata.brick(), extractor.input_spec)
    upright, turned = extractor.extract([image, np.ascontiguousarray(np.rot90(image))])
    np.testing.assert_allclose(upright, turned, atol=1e-6)
    assert extractor.dim == 2 * (10 if method == "uniform" else 36)


def test_non_rotation_invariant_lbp_and_grids_see_the_turn():
    image = as_array(skdata.brick(), get_extractor("lbp").input_spec)
    turned = np.ascontiguousarray(np.rot90(image))
    nri = get_extractor("lbp", method="nri_uniform")
    assert nri.dim == 59 and not np.allclose(*nri.extract([image, turned]))
    gridded = get_extractor("lbp", grid=3, norm="none")
    features = gridded.extract([image])[0]
    assert gridded.dim == 90
    np.testing.assert_allclose(features.reshape(9, 10).sum(axis=1), 1.0, rtol=1e-5)
    hellinger = get_extractor("lbp", grid=3).extract([image])[0]  # the default: L1, then square root
    np.testing.assert_allclose(hellinger, np.sqrt(features / features.sum()), rtol=1e-5)


def test_glcm_of_a_constant_image():
    extractor = get_extractor("glcm", properties=["contrast", "homogeneity", "energy"], distances=[1, 3])
    features = extractor.extract([np.full((128, 128), 90, np.uint8)])[0]
    np.testing.assert_allclose(features, [0, 0, 1, 1, 1, 1], atol=1e-6)
    per_angle = get_extractor("glcm", distances=[1], angles=4, average_angles=False, properties=["contrast"])
    stripes = np.tile(np.repeat([0, 255], 4), 16)[None].repeat(128, axis=0).astype(np.uint8)
    contrast = per_angle.extract([stripes])[0]
    assert contrast[2] == 0 and contrast[0] > 0  # no change along the stripes (90 degrees), change across them


def test_hu_moments_are_invariant_to_scaling():
    extractor = get_extractor("shape", size=256)
    images = []
    for scale in (1.0, 0.5):
        canvas = np.zeros((256, 256), np.uint8)
        rr, cc = ellipse(128, 128, 80 * scale, 40 * scale, rotation=0.4)
        canvas[rr, cc] = 220
        images.append(canvas)
    big, small = extractor.extract(images)
    hu = slice(10, 17)
    np.testing.assert_allclose(big[hu], small[hu], atol=0.01)
    assert big[0] == pytest.approx(4 * small[0], rel=0.05)  # area fraction scales with the square
    assert big[2] == pytest.approx(small[2], abs=0.01)  # eccentricity does not
    assert big[17] == pytest.approx(220 / 255, abs=1e-6) and big[18] == pytest.approx(0, abs=1e-6)


def test_shape_finds_a_dark_object_on_a_bright_background():
    extractor = get_extractor("shape")
    canvas = np.full((128, 128), 240, np.uint8)
    canvas[32:96, 48:80] = 20
    features = extractor.extract([canvas])[0]
    assert features[0] == pytest.approx(64 * 32 / 128**2, rel=1e-6)
    assert features[4] == pytest.approx(1.0)  # a rectangle fills its bounding box
    assert features[8] == pytest.approx(0.5) and features[9] == pytest.approx(0.25)
    assert not get_extractor("shape").extract([np.full((64, 64), 7, np.uint8)]).any()


def test_edges_see_density_and_orientation():
    extractor = get_extractor("edges", grid=1, bins=4)
    assert not extractor.extract([np.full((128, 128), 100, np.uint8)]).any()
    vertical = np.zeros((128, 128), np.uint8)
    vertical[:, 64:] = 255
    density, *histogram = extractor.extract([vertical])[0]
    assert 0 < density < 0.05
    assert np.argmax(histogram) == 0 and histogram[0] == pytest.approx(density)


def test_gabor_energy_peaks_at_the_gratings_orientation():
    extractor = get_extractor("gabor", frequencies=[0.2], orientations=4)
    y, x = np.mgrid[:64, :64]
    responses = []
    for angle in (0, np.pi / 2):
        grating = 127.5 + 127.5 * np.cos(2 * np.pi * 0.2 * (x * np.cos(angle) + y * np.sin(angle)))
        responses.append(extractor.extract([grating.astype(np.uint8)])[0][:4])
    assert np.argmax(responses[0]) == 0 and np.argmax(responses[1]) == 2


def test_gist_is_a_grid_of_gabor_energies():
    gist = get_extractor("gist", frequencies=[0.1, 0.3], orientations=4, grid=2)
    assert gist.dim == 2 * 4 * 4
    image = as_array(skdata.camera(), gist.input_spec)
    left_dark = image.copy()
    left_dark[:, :32] = 0
    a, b = gist.extract([image, left_dark]).reshape(2, 8, 4)  # filters x cells (row by row)
    assert b[:, [0, 2]].sum() < 0.5 * a[:, [0, 2]].sum()  # a flat left half: less energy in the left cells
    assert b[:, [1, 3]].sum() > 0.5 * a[:, [1, 3]].sum()  # the right cells keep theirs
