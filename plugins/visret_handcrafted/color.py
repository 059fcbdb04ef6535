"""Colour descriptors: histograms (joint or per channel, RGB / HSV / Lab), moments, auto-correlogram."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from visret import FeatureExtractor, InputSpec
from visret.features.normalization import normalize, parse_norm
from visret.features.params import as_int_tuple, check_bool, check_choice, check_image_size, check_positive_int

SPACES = {"rgb": "RGB", "hsv": "HSV", "lab": "LAB"}


def joint_histograms(values: np.ndarray, bins: tuple[int, ...]) -> np.ndarray:
    """Normalised joint histograms of uint8 channel values.

    ``values`` has shape ``(n, pixels, channels)``; the result ``(n, prod(bins))``, rows sum to 1.
    """
    n, pixels, _ = values.shape
    cells = values.astype(np.int64) * np.asarray(bins) // 256
    flat = np.ravel_multi_index(tuple(np.moveaxis(cells, -1, 0)), bins)
    return batched_bincount(flat, int(np.prod(bins))) / pixels


def batched_bincount(codes: np.ndarray, n_bins: int) -> np.ndarray:
    """Per-row counts of the integer codes in ``codes`` (shape ``(n, ...)``): ``(n, n_bins)`` float32."""
    n = codes.shape[0]
    flat = codes.reshape(n, -1) + (np.arange(n) * n_bins)[:, None]
    return np.bincount(flat.ravel(), minlength=n * n_bins).reshape(n, n_bins).astype(np.float32)


class _ColorSpaceExtractor(FeatureExtractor):
    """Shared parameters: the colour ``space`` and the ``size`` images are resized to."""

    def validate(self) -> None:
        check_choice("space", self.space, SPACES)
        check_image_size(self.size)

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(mode=SPACES[self.space], size=(self.size, self.size))


class ColorHistogram(_ColorSpaceExtractor):
    """Colour histogram in RGB, HSV or Lab: joint (bins multiply) or per channel (bins add), then ``norm``.

    The defaults (HSV, 16 x 8 x 16 bins, power 0.3 then L2) were measured on the shared datasets:
    COIL-100 mAP 0.937 against 0.678 for 8 x 4 x 4 raw histograms (docs/benchmarks.md).
    """

    name: ClassVar[str] = "color-hist"

    def __init__(self, space: str = "hsv", bins=(16, 8, 16), joint: bool = True, size: int = 128, norm: str = "power:0.3"):
        self.space = space
        self.bins = bins
        self.joint = joint
        self.size = size
        self.norm = norm

    def validate(self) -> None:
        super().validate()
        parse_norm(self.norm)
        as_int_tuple("bins", self.bins, 3)
        check_bool("joint", self.joint)

    @property
    def dim(self) -> int:
        bins = as_int_tuple("bins", self.bins, 3)
        return int(np.prod(bins)) if self.joint else sum(bins)

    def extract(self, images):
        values = np.stack(images).reshape(len(images), -1, 3)
        bins = as_int_tuple("bins", self.bins, 3)
        if self.joint:
            return normalize(joint_histograms(values, bins), self.norm)
        per_channel = [joint_histograms(values[:, :, c : c + 1], (b,)) for c, b in enumerate(bins)]
        return normalize(np.concatenate(per_channel, axis=1) / 3, self.norm)


class ColorMoments(_ColorSpaceExtractor):
    """Mean, standard deviation and skewness (cube root of the third central moment) per channel, in [0, 1]."""

    name: ClassVar[str] = "color-moments"

    def __init__(self, space: str = "hsv", size: int = 64):
        self.space = space
        self.size = size

    @property
    def dim(self) -> int:
        return 9

    def extract(self, images):
        values = np.stack(images).reshape(len(images), -1, 3).astype(np.float64) / 255.0
        mean = values.mean(axis=1)
        centred = values - mean[:, None, :]
        std = np.sqrt((centred**2).mean(axis=1))
        skew = np.cbrt((centred**3).mean(axis=1))
        return np.concatenate([mean, std, skew], axis=1).astype(np.float32)


class ColorCorrelogram(FeatureExtractor):
    """Colour auto-correlogram: for each quantised colour and distance d, the probability that a
    pixel d away (horizontally, vertically or diagonally) has the same colour (Huang et al. 1997)."""

    name: ClassVar[str] = "color-correlogram"

    def __init__(self, bins: int = 4, distances=(1, 3, 5, 7), size: int = 64, norm: str = "none"):
        self.bins = bins
        self.distances = distances
        self.size = size
        self.norm = norm

    def validate(self) -> None:
        parse_norm(self.norm)
        check_positive_int("bins", self.bins)
        check_image_size(self.size)
        if not isinstance(self.distances, (list, tuple)) or not self.distances:
            raise ValueError(f"distances must be a list of integers, got {self.distances!r}")
        for d in self.distances:
            check_positive_int("distances", d)
            if d >= self.size:
                raise ValueError(f"distance {d} does not fit in size {self.size}")

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(mode="RGB", size=(self.size, self.size))

    @property
    def dim(self) -> int:
        return self.bins**3 * len(self.distances)

    def extract(self, images):
        rgb = np.stack(images).astype(np.int64) * self.bins // 256
        codes = (rgb[..., 0] * self.bins + rgb[..., 1]) * self.bins + rgb[..., 2]
        n_colors = self.bins**3
        blocks = []
        for d in self.distances:
            same = np.zeros((len(images), n_colors), np.float64)
            total = np.zeros_like(same)
            for dy, dx in ((0, d), (d, 0), (d, d), (d, -d)):
                a = codes[:, : codes.shape[1] - dy, max(0, -dx) : codes.shape[2] - max(0, dx)]
                b = codes[:, dy:, max(0, dx) : codes.shape[2] - max(0, -dx) or None]
                total += batched_bincount(a, n_colors) + batched_bincount(b, n_colors)
                same += 2 * batched_bincount(np.where(a == b, a, n_colors), n_colors + 1)[:, :n_colors]
            blocks.append(np.divide(same, total, out=np.zeros_like(same), where=total > 0))
        return normalize(np.concatenate(blocks, axis=1), self.norm)
