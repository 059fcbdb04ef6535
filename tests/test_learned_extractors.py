"""Extractors that learn from the indexed images (bag of visual words, post-processing) and ``combine``."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

import visret
from visret import build_index, evaluate_knn, get_extractor, open_index
from visret.images._folders import scan_folder
from visret.embedding._extraction import extract_records
from visret.images._decode import read_image


@pytest.fixture(scope="module")
def textures(tmp_path_factory):
    """scikit-image's brick, grass and gravel textures cut into 128x128 patches: 12 train, 4 test each."""
    root = tmp_path_factory.mktemp("textures")
    for name in ("brick", "grass", "gravel"):
        image = getattr(skdata, name)()
        patches = [image[r : r + 128, c : c + 128] for r in range(0, 512, 128) for c in range(0, 512, 128)]
        for i, patch in enumerate(patches):
            part = "test" if i % 4 == 3 else "train"
            (root / part / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(patch).save(root / part / name / f"{i:02d}.png")
    return root


def features_of(extractor, folder):
    return np.stack([extractor.extract([read_image(r.path, extractor.input_spec)[0]])[0] for r in scan_folder(folder)])


@pytest.mark.parametrize("descriptor", ["sift", "orb", "daisy"])
def test_bag_of_words_classifies_textures(textures, tmp_path, descriptor):
    report = evaluate_knn(
        textures / "test", train=textures / "train", extractor="bovw", params={"descriptor": descriptor, "words": 16}, k=3, workers=1
    )
    assert report.n_queries == 12 and report.accuracy >= 2 / 3  # twice chance (3 classes), on 12 queries


def test_a_learned_codebook_is_saved_and_reused_by_queries(textures, tmp_path):
    index = build_index(textures / "train", "bovw", tmp_path / "ix", params={"descriptor": "orb", "words": 12}, workers=1)
    centers = index.extractor.centers_.copy()
    fresh = features_of(index.extractor, textures / "test")
    index.close()
    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    assert manifest["files"]["extractor"]["name"].endswith(".npz")
    reopened = open_index(tmp_path / "ix")
    np.testing.assert_array_equal(reopened.extractor.centers_, centers)
    np.testing.assert_array_equal(features_of(reopened.extractor, textures / "test"), fresh)
    query = sorted((textures / "train" / "gravel").iterdir())[0]
    assert reopened.query(query, k=1).neighbors[0].distance == 0.0


def test_vlad_is_unit_length_with_words_times_descriptor_dims(textures):
    extractor = get_extractor("bovw", descriptor="sift", encoding="vlad", words=8)
    images = [read_image(r.path, extractor.input_spec)[0] for r in scan_folder(textures / "train")]
    extractor.fit(images)
    features = extractor.extract(images[:5])
    assert extractor.dim == 8 * 128 and features.shape == (5, 1024)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)


def test_combine_blocks_are_normalised_and_weighted():
    extractor = get_extractor("combine", parts=["color-hist", {"name": "hog", "params": {"size": 64}}, "lbp"], weights=[1, 0.5, 2])
    image = np.asarray(Image.fromarray(skdata.astronaut()).resize((256, 256)))
    features = extractor.extract([image])[0]
    dims = [2048, get_extractor("hog", size=64).dim, 10]
    assert extractor.dim == sum(dims) == features.size
    blocks = np.split(features, np.cumsum(dims)[:-1])
    np.testing.assert_allclose([np.linalg.norm(b) for b in blocks], [1, 0.5, 2], rtol=1e-5)


def test_a_combination_with_a_network_computes_its_blocks_side_by_side_in_order():
    """Beside a network (not ``parallel``) the blocks are computed in threads: each block is still its
    part's own features, normalised and weighted, in the parts' order."""
    from visret.features.normalization import normalize
    from visret.images import as_array

    parts = [{"name": "keras/squeezenet", "params": {"size": 64}}, "color-hist", {"name": "hog", "params": {"size": 64}}]
    extractor = get_extractor("combine", parts=parts, weights=[1, 0.3, 2], size=64)
    assert not extractor.parallel
    images = [np.asarray(Image.fromarray(picture()).resize((64, 64))) for picture in (skdata.astronaut, skdata.chelsea, skdata.coffee)]
    features = extractor.extract(images)
    expected = [normalize(part.extract([as_array(i, part.input_spec) for i in images]), "l2") * weight
                for part, weight in zip(extractor.extractors, [1, 0.3, 2])]
    np.testing.assert_allclose(features, np.concatenate(expected, axis=1), rtol=1e-5, atol=1e-6)
    inner = [{"name": "combine", "params": {"parts": parts, "weights": [1, 0.3, 2], "size": 64}} for _ in range(5)]
    nested = get_extractor("combine", parts=inner, weights=[1] * 5, size=64)  # 5 x 3 blocks, more than the pool's 4 threads
    from concurrent.futures import ThreadPoolExecutor

    runner = ThreadPoolExecutor(1)  # a combine that waited on its own pool would hang: fail instead
    try:
        got = runner.submit(nested.extract, images).result(timeout=120)
    finally:
        runner.shutdown(wait=False)
    np.testing.assert_allclose(got[:, : features.shape[1]], normalize(features, "l2"), rtol=1e-5, atol=1e-6)


def test_post_steps_match_their_definitions(textures):
    from sklearn.decomposition import PCA

    images = [read_image(r.path, get_extractor("lbp").input_spec)[0] for r in scan_folder(textures / "train")]
    raw = get_extractor("lbp", points=[8, 16], radius=[1, 2]).extract(images).astype(np.float64)
    spec = {"name": "lbp", "params": {"points": [8, 16], "radius": [1, 2]}}
    standard = get_extractor("post", extractor=spec, steps=["standardize"]).fit(images).extract(images)
    kept = raw.std(axis=0) > 0
    np.testing.assert_allclose(standard.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(standard.std(axis=0)[kept], 1, rtol=1e-4)
    hellinger = get_extractor("post", extractor=spec, steps=["l1", "sqrt"]).extract(images)
    np.testing.assert_allclose(hellinger, np.sqrt(raw / raw.sum(axis=1, keepdims=True)), rtol=1e-5)
    projected = get_extractor("post", extractor=spec, steps=["pca:5"]).fit(images).extract(images)
    reference = PCA(5).fit_transform(raw)
    np.testing.assert_allclose(np.abs(projected), np.abs(reference), rtol=1e-3, atol=1e-5)
    whitened = get_extractor("post", extractor=spec, steps=["pca-whiten:5"]).fit(images).extract(images)
    np.testing.assert_allclose(np.cov(whitened.T), np.eye(5), atol=1e-3)


def test_post_and_combine_round_trip_through_an_index(textures, tmp_path):
    params = {
        "extractor": {"name": "combine", "params": {"parts": ["color-moments", {"name": "bovw", "params": {"descriptor": "orb", "words": 8}}]}},
        "steps": ["standardize", "pca-whiten:6", "l2"],
    }
    index = build_index(textures / "train", "post", tmp_path / "ix", params=params, workers=1)
    assert index.manifest["dim"] == 6
    before = features_of(index.extractor, textures / "test")
    index.close()
    with open_index(tmp_path / "ix") as reopened:
        np.testing.assert_allclose(features_of(reopened.extractor, textures / "test"), before, rtol=1e-5, atol=1e-6)
        assert set(np.load(tmp_path / "ix" / reopened.manifest["files"]["extractor"]["name"]).files) >= {
            "base.1.centers", "step.0.mean", "step.1.components",
        }


@pytest.mark.parametrize(
    "name, params",
    [
        ("bovw", {"descriptor": "orb", "words": 8}),
        ("combine", {"parts": ["color-correlogram", "gist", "shape", "edges", "glcm"]}),
        ("post", {"extractor": "gabor", "steps": ["standardize", "pca:4"]}),
    ],
)
def test_process_pool_output_equals_single_process_output(textures, name, params):
    extractor = get_extractor(name, **params)
    records = scan_folder(textures / "train")
    if extractor.requires_fit:
        visret.embedding.fit_extractor(extractor, records, max_pixels=10**8)
    single = extract_records(extractor, records, batch_size=5, workers=1)
    pooled = extract_records(extractor, records, batch_size=5, workers=2)
    np.testing.assert_array_equal(single.features, pooled.features)
    assert single.records == pooled.records and len(single.records) == 36


def test_combine_weighs_blocks_by_their_own_validation_map_when_labelled(digits, tmp_path):
    parts = ["color-hist", {"name": "hog", "params": {"size": 32, "pixels_per_cell": 4}}]  # colour says nothing of grey digits
    with build_index(digits / "train", "combine", tmp_path / "ix", params={"parts": parts}, workers=1) as index:
        weights = index.extractor.block_weights()
        assert index.extractor.supervised and weights[1] == 1.0 and weights[0] < 0.2
    with open_index(tmp_path / "ix") as reopened:
        assert reopened.extractor.block_weights() == weights
    flat = tmp_path / "flat"
    flat.mkdir()
    for image in sorted((digits / "train" / "3").iterdir())[:6] + sorted((digits / "train" / "8").iterdir())[:6]:
        shutil.copyfile(image, flat / f"{image.parent.name}-{image.name}")
    with build_index(flat, "combine", tmp_path / "flat-ix", params={"parts": parts}, workers=1) as unlabelled:
        assert list(unlabelled.extractor.block_weights()) == [1.0, 1.0]
