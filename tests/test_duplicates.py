"""Duplicate finding: perceptual hashes, Hamming search, groups, thresholds, keep rules, CLI."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance
from skimage import data as samples

import visret
from visret.duplicates import find_duplicates
from visret.duplicates.pairs import UnionFind, close_pairs, searchable
from visret.images._decode import as_array

PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "coins", "moon", "page", "rocket",
          "hubble_deep_field", "immunohistochemistry", "brick", "grass", "retina", "text")


def _photo(name: str) -> Image.Image:
    image = Image.fromarray(getattr(samples, name)())
    return image.convert("RGB")


def _copies(image: Image.Image) -> dict[str, Image.Image]:
    """Near duplicates of the kinds people have: re-encoded, resized, cropped, re-lit."""
    w, h = image.size
    jpeg = io.BytesIO()
    image.save(jpeg, format="JPEG", quality=40)
    return {
        "jpeg40.jpg": Image.open(io.BytesIO(jpeg.getvalue())),
        "half.png": image.resize((w // 2, h // 2)),
        "crop.png": image.crop((w // 20, h // 20, w - w // 20, h - h // 20)),
        "brighter.png": ImageEnhance.Brightness(image).enhance(1.2),
    }


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> tuple[Path, dict[str, set[str]]]:
    """Fourteen photos; four have near copies, one an exact copy too; the truth as groups of names."""
    root = tmp_path_factory.mktemp("photos")
    truth = {}
    for n, name in enumerate(PHOTOS):
        original = root / f"{name}.png"
        _photo(name).save(original)
        if n < 4:
            members = {original.name}
            for suffix, copy in _copies(_photo(name)).items():
                copy.save(root / f"{name}-{suffix}")
                members.add(f"{name}-{suffix}")
            if n == 0:
                (root / "zz-exact-astronaut.png").write_bytes(original.read_bytes())
                members.add("zz-exact-astronaut.png")
            truth[name] = members
    return root, truth


def _named(report) -> list[set[str]]:
    return sorted(({Path(f).name for f in g.files} for g in report.groups), key=sorted)


def _bits(image: np.ndarray, name: str, **params) -> np.ndarray:
    return visret.get_extractor(name, **params).extract([image])[0]


def test_average_hash_is_the_thumbnail_above_its_mean():
    thumbnail = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    bits = _bits(thumbnail, "ahash")
    assert bits.tolist() == (thumbnail.ravel() > thumbnail.mean()).astype(float).tolist()
    assert bits.sum() == 32


def test_difference_hash_compares_left_neighbours():
    rows = np.array([[0, 1, 2, 3, 4, 5, 6, 7, 8]] * 8, np.uint8)  # brighter to the right everywhere
    assert _bits(rows, "dhash").sum() == 64
    assert _bits(rows[:, ::-1].copy(), "dhash").sum() == 0


def test_wavelet_hash_thresholds_block_means_at_their_median():
    image = np.zeros((4, 4), np.uint8)
    image[:2, :2] = 200  # top-left block bright, others dark
    image[2:, 2:] = 100
    bits = _bits(image, "whash", hash_size=2, image_scale=4)
    means = np.array([200, 0, 0, 100])
    assert bits.tolist() == (means > np.median(means)).astype(float).tolist()


def test_phash_is_the_low_dct_band_above_its_median():
    from scipy.fft import dct

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32)).astype(np.uint8)
    coefficients = dct(dct(image.astype(float), axis=0), axis=1)[:8, :8]
    assert _bits(image, "phash").tolist() == (coefficients.ravel() > np.median(coefficients)).astype(float).tolist()


@pytest.mark.parametrize("name", ["phash", "dhash", "ahash", "whash"])
def test_hashes_survive_re_encoding_but_not_another_photo(tmp_path, name):
    extractor = visret.get_extractor(name)
    original = _photo("chelsea")
    paths = []
    for label, image in (("a.png", original), ("b.jpg", original), ("c.png", _photo("coffee"))):
        image.save(tmp_path / label, **({"quality": 50} if label.endswith("jpg") else {}))
        paths.append(tmp_path / label)
    a, b, c = (as_array(p, extractor.input_spec) for p in paths)
    codes = extractor.extract([a, b, c])
    assert codes.shape == (3, extractor.dim) and set(np.unique(codes)) <= {0.0, 1.0}
    assert np.sum(codes[0] != codes[1]) <= 4
    assert np.sum(codes[0] != codes[2]) >= 16


def test_hash_index_uses_hamming_distance(tmp_path, collection):
    root, _ = collection
    index = visret.build_index(root, "phash", tmp_path / "index", workers=1)
    assert index.metric == "hamming"
    query = root / "astronaut-jpeg40.jpg"
    result = index.query(query, k=3)
    codes = index.embed([str(query)])[0]
    for neighbor in result.neighbors:
        stored = index.vectors([neighbor.id])[0]
        assert neighbor.distance == np.sum(codes != stored)
    index.close()


def test_union_find_joins_chains_of_near_copies():
    bits = np.zeros((4, 64), np.float32)
    bits[1, :5] = 1  # 5 bits from item 0
    bits[2, :10] = 1  # 5 from item 1, 10 from item 0
    bits[3, 20:60] = 1  # far from everything
    i, j, d = close_pairs(searchable(bits, True), True, threshold=6)
    assert sorted(zip(i.tolist(), j.tolist(), d.tolist())) == [(0, 1, 5.0), (1, 2, 5.0)]
    groups = UnionFind(4)
    for a, b in zip(i.tolist(), j.tolist()):
        groups.union(a, b)
    assert groups.groups() == [[0, 1, 2]]


def test_cosine_pairs_match_a_brute_force_reference():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    x[100:110] = x[:10] + 0.05 * rng.normal(size=(10, 16))
    vectors = searchable(x, False)
    i, j, d = close_pairs(vectors, False, threshold=0.02)
    distances = 1 - vectors @ vectors.T
    expected = {(a, b) for a, b in zip(*np.nonzero(distances <= 0.02)) if a < b}
    assert set(zip(i.tolist(), j.tolist())) == expected
    assert np.allclose(d, distances[i, j], atol=1e-5)


def test_a_folder_of_blank_frames_is_one_group_without_all_pairs(tmp_path):
    from visret.duplicates.pairs import MAX_PAIRS_PER_IMAGE

    bits = np.zeros((300, 64), np.float32)  # 300 identical codes: 44,850 pairs in an all-pairs search
    i, j, _ = close_pairs(searchable(bits, True), True, threshold=0)
    assert len(i) <= 300 * MAX_PAIRS_PER_IMAGE
    groups = UnionFind(300)
    for a, b in zip(i.tolist(), j.tolist()):
        groups.union(a, b)
    assert groups.groups() == [list(range(300))]


def test_finds_exactly_the_planted_duplicates(collection):
    root, truth = collection
    report = find_duplicates(root, workers=1)
    assert _named(report) == sorted(truth.values(), key=sorted)
    assert report.extractor["name"] == "gist" and report.distance == "cosine" and report.threshold == 0.03
    assert report.threshold_how.startswith("calibrated default")
    astronaut = next(g for g in report.groups if "astronaut.png" in {Path(f).name for f in g.files})
    exact = [p for p in astronaut.pairs if p.kind == "exact"]
    assert [(Path(p.a).name, Path(p.b).name, p.distance) for p in exact] == [("astronaut.png", "zz-exact-astronaut.png", 0.0)]
    assert all(0 < p.similarity <= 1 for p in report.pairs)
    assert len(report.removable()) == sum(len(m) - 1 for m in truth.values())


def test_keep_rules(collection):
    root, _ = collection
    first = find_duplicates(root, keep="first", workers=1)
    assert all(g.keep == min(g.files) for g in first.groups)
    largest = find_duplicates(root, keep="largest", workers=1)
    for group in largest.groups:
        assert "-half" not in group.keep  # the half-size copy is never the largest
    newest_file = root / "coffee-crop.png"
    os.utime(newest_file, (2_000_000_000, 2_000_000_000))
    newest = find_duplicates(root, keep="newest", workers=1)
    assert str(newest_file) in [g.keep for g in newest.groups]


def test_automatic_threshold_finds_the_gap_and_says_so(collection, tmp_path):
    root, truth = collection
    report = find_duplicates(root, auto_threshold=True, workers=1)
    assert _named(report) == sorted(truth.values(), key=sorted)
    assert report.threshold_how.startswith("automatic")
    distinct = tmp_path / "distinct"
    distinct.mkdir()
    for name in PHOTOS:
        _photo(name).save(distinct / f"{name}.png")
    alone = find_duplicates(distinct, auto_threshold=True, workers=1)
    assert alone.groups == []


def test_float_features_get_an_automatic_cosine_threshold(collection):
    root, truth = collection
    report = find_duplicates(root, extractor="hog", workers=1)
    assert report.distance == "cosine" and report.threshold_how.startswith("automatic")
    found = _named(report)
    assert all(any(group <= members for members in truth.values()) for group in found)  # no false group
    for members in truth.values():  # HOG's cells shift under a crop; every other copy is found
        assert any({m for m in members if "crop" not in m} <= group for group in found)


def test_an_index_gives_the_same_groups_from_its_stored_vectors(collection, tmp_path):
    root, _ = collection
    visret.build_index(root, "phash", tmp_path / "index", workers=1).close()
    from_index = find_duplicates(tmp_path / "index")
    assert from_index.distance == "hamming" and from_index.threshold == 10
    from_folder = find_duplicates(root, extractor="phash", workers=1)
    assert _named(from_index) == _named(from_folder) and from_folder.groups
    with pytest.raises(visret.VisretError, match="built with phash"):
        find_duplicates(tmp_path / "index", extractor="dhash")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"extractor": "phash", "threshold": 65}, "threshold must be in bits, 0 to 64"),
        ({"threshold": 2.5}, "threshold must be in cosine distance, 0 to 2"),
        ({"threshold": 3, "auto_threshold": True}, "not both"),
        ({"keep": "biggest"}, "keep must be one of"),
        ({"extractor": "no-such"}, "no-such"),
    ],
)
def test_bad_options_are_one_line(collection, kwargs, message):
    root, _ = collection
    with pytest.raises(visret.VisretError, match=message):
        find_duplicates(root, workers=1, **kwargs)


def test_cli_outputs(cli, collection, tmp_path):
    root, truth = collection
    removable = cli("duplicates", root, "--list-removable", "--workers", "1")
    assert removable.exit_code == 0, removable.output
    listed = [line for line in removable.stdout.splitlines() if line]
    assert len(listed) == sum(len(m) - 1 for m in truth.values()) and all(Path(p).is_file() for p in listed)
    as_json = json.loads(cli("duplicates", root, "--json", "--workers", "1").stdout)
    assert len(as_json["groups"]) == len(truth) and as_json["threshold"] == 0.03
    rows = list(csv.DictReader(io.StringIO(cli("duplicates", root, "--csv", "--workers", "1").stdout)))
    assert len(rows) == sum(len(m) for m in truth.values())
    assert sum(row["keep"] == "True" for row in rows) == len(truth)
    pictures = cli("duplicates", root, "--montage", tmp_path / "groups", "--html", tmp_path / "report.html", "--workers", "1")
    assert pictures.exit_code == 0, pictures.output
    assert len(list((tmp_path / "groups").glob("group-*.png"))) == len(truth)
    page = (tmp_path / "report.html").read_text()
    assert page.count("<h2>group ") == len(truth) and page.count("data:image/") > len(truth)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["duplicates"], "give a folder or --index"),
        (["duplicates", "{empty}"], "no image files found"),
        (["duplicates", "{root}", "-e", "phash", "--threshold", "99"], "threshold must be in bits"),
        (["duplicates", "{root}", "--json", "--csv"], "choose one of"),
        (["duplicates", "{root}", "--keep", "oldest"], "keep must be one of"),
    ],
)
def test_cli_bad_input_is_one_line(cli, collection, tmp_path, args, message):
    root, _ = collection
    (tmp_path / "empty").mkdir()
    result = cli(*[a.format(root=root, empty=tmp_path / "empty") for a in args])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_hue_signature_of_pure_colours_and_grey():
    from visret.duplicates.colour import HUE_BINS, hue_signature

    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 200
    signature = hue_signature(red)
    assert signature[0] == 1.0 and signature.sum() == 1.0
    green = np.roll(red, 1, axis=2)
    assert hue_signature(green)[HUE_BINS // 3] == 1.0
    assert hue_signature(np.full((8, 8, 3), 90, np.uint8)) is None


def test_colour_check_keeps_twins_of_another_colour_apart(tmp_path):
    """Same shape in red and in green, and a grey copy of the red one: grey features cannot tell
    the twins apart; the grey copy joins its original, and the green twin stays out."""
    yy, xx = np.mgrid[:96, :96]
    shape = ((yy - 40) ** 2 + (xx - 48) ** 2 < 30**2) | ((abs(yy - 75) < 8) & (abs(xx - 48) < 35))
    for name, colour in (("red", (210, 30, 30)), ("green", (30, 170, 40))):
        pixels = np.zeros((96, 96, 3), np.uint8)
        pixels[shape] = colour
        Image.fromarray(pixels).save(tmp_path / f"{name}.png")
    Image.open(tmp_path / "red.png").convert("L").save(tmp_path / "red-grey.png")
    Image.fromarray(np.asarray(_photo("coffee").resize((96, 96)))).save(tmp_path / "other.png")
    checked = find_duplicates(tmp_path, threshold=0.2, workers=1)
    assert _named(checked) == [{"red.png", "red-grey.png"}]
    unchecked = find_duplicates(tmp_path, threshold=0.2, workers=1, colour_check=False)
    assert _named(unchecked) == [{"red.png", "red-grey.png", "green.png"}]


def test_a_file_another_member_links_to_is_never_removable_and_links_are_named(cli, tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    _photo("coffee").save(folder / "photo.png")
    (folder / "a_shortcut.png").symlink_to("photo.png")  # sorts first: the "first" rule would have kept it
    _photo("chelsea").save(folder / "cat.png")
    report = find_duplicates(folder, workers=1)
    [group] = report.groups
    assert group.keep == str(folder / "photo.png") and group.links == {str(folder / "a_shortcut.png"): str(folder / "photo.png")}
    assert group.removable == [str(folder / "a_shortcut.png")]
    listed = cli("duplicates", str(folder), "--list-removable", "--workers", "1")
    assert listed.exit_code == 0 and listed.stdout.split() == [str(folder / "a_shortcut.png")]
    shown = cli("duplicates", str(folder), "--workers", "1")
    assert "link" in shown.stdout and "keep" in shown.stdout
    # a member linked to by another is kept even when the rule keeps a third copy
    (folder / "z_copy.png").write_bytes((folder / "photo.png").read_bytes())
    os.utime(folder / "z_copy.png", (2_000_000_000, 2_000_000_000))
    [group] = find_duplicates(folder, keep="newest", workers=1).groups
    assert group.keep == str(folder / "z_copy.png") and group.linked == [str(folder / "photo.png")]
    assert group.removable == [str(folder / "a_shortcut.png")]
