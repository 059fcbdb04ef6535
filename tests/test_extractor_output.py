"""Every extractor's output is checked once, where it enters visret: the declared shape, numbers that
convert to float32, finite values. A broken extractor is one line naming it and its plugin, and writes
nothing; an image whose features are NaN or infinite is skipped when indexing, refused when asked about."""

from __future__ import annotations

import numpy as np
import pytest

import visret
from visret import FeatureExtractor, InputSpec, VisretError, hookimpl


class _Brightness(FeatureExtractor):
    """Mean brightness, and its square; NaN for images darker than ``dark`` (a plugin's bug)."""

    name = "test/brightness"

    def __init__(self, dark: float = -1.0, output: str = "good"):
        self.dark = dark
        self.output = output

    @property
    def input_spec(self):
        return InputSpec("L", (8, 8))

    @property
    def dim(self):
        return 2

    def extract(self, images):
        mean = np.array([image.mean() / 255.0 for image in images])
        features = np.stack([mean, mean**2], axis=1)
        features[mean < self.dark] = np.nan
        if self.output == "rank 3":
            return features[:, :, None]
        if self.output == "3 columns":
            return np.concatenate([features, features[:, :1]], axis=1)
        if self.output == "strings":
            return features.astype(str)
        return features


class _Plugin:
    @hookimpl
    def register_extractors(self, register):
        register(_Brightness)


@pytest.fixture
def plugin(register_plugin):
    return register_plugin(_Plugin(), "brightness-plugin")


@pytest.fixture
def grey_levels(tmp_path):
    from PIL import Image

    for label, levels in (("dark", (5, 10, 15)), ("light", (200, 220, 240))):
        (tmp_path / "images" / label).mkdir(parents=True)
        for level in levels:
            Image.fromarray(np.full((8, 8), level, np.uint8)).save(tmp_path / "images" / label / f"{level}.png")
    return tmp_path / "images"


def test_images_with_non_finite_features_are_skipped_and_never_stored(plugin, grey_levels, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="visret"):
        with visret.build_index(grey_levels, "test/brightness", tmp_path / "ix", params={"dark": 0.05}, workers=1) as index:
            assert sorted(e.path.rsplit("/", 1)[1] for e in index) == ["15.png", "200.png", "220.png", "240.png"]
            assert np.isfinite(index.vectors([e.id for e in index])).all()
    skipped = [r.getMessage() for r in caplog.records if "NaN or infinite" in r.getMessage()]
    assert len(skipped) == 2 and all("extractor gave NaN or infinite features" in m for m in skipped)


def test_a_query_whose_features_are_not_finite_is_refused_in_one_line(plugin, grey_levels, tmp_path):
    visret.build_index(grey_levels / "light", "test/brightness", tmp_path / "ix", params={"dark": 0.05}, workers=1).close()
    with visret.open_index(tmp_path / "ix") as index:
        with pytest.raises(VisretError, match=r"extractor 'test/brightness' \(plugin brightness-plugin\) gave NaN or infinite "
                                              r"features for query image 1 of 1"):
            index.query(grey_levels / "dark" / "5.png")


@pytest.mark.parametrize("output, message", [
    ("rank 3", r"gave an array of shape \(\d, 2, 1\) for \d images; expected \(\d, 2\)"),
    ("3 columns", r"gave an array of shape \(\d, 3\) for \d images; expected \(\d, 2\)"),
    ("strings", r"gave <U\d+ values; expected float32 of shape \(\d, 2\)"),
])
def test_an_extractor_output_of_the_wrong_shape_or_type_is_one_line_and_writes_nothing(plugin, grey_levels, tmp_path, cli, output, message):
    target = tmp_path / "ix"
    result = cli("index", str(grey_levels), "-e", "test/brightness", "-p", f"output={output}", "--index", str(target), "--workers", "1")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "extractor 'test/brightness' (plugin brightness-plugin)" in lines[0]
    assert __import__("re").search(message, lines[0]), lines[0]
    assert not (target / "manifest.json").exists()
