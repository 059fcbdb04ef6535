"""Colour descriptors."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from visret import FeatureExtractor, InputSpec
from visret.params import as_int_tuple, check_positive_int


def joint_histograms(values: np.ndarray, bins: tuple[int, ...]) -> np.ndarray:
    """Normalised joint histograms of uint8 channel values.

    ``values`` has shape ``(n, pixels, channels)``; the result ``(n, prod(bins))``, rows sum to 1.
    """
    n, pixels, _ = values.shape
    cells = values.astype(np.int64) * np.asarray(bins) // 256
    flat = np.ravel_multi_index(tuple(np.moveaxis(cells, -1, 0)), bins)
    n_bins = int(np.prod(bins))
    flat += (np.arange(n) * n_bins)[:, None]
    counts = np.bincount(flat.ravel(), minlength=n * n_bins).reshape(n, n_bins)
    return (counts / pixels).astype(np.float32)


class ColorHistogram(FeatureExtractor):
    """Joint HSV colour histogram (hue x saturation x value), normalised to sum to 1."""

    name: ClassVar[str] = "color-hist"

    def __init__(self, bins=(8, 4, 4), size: int = 128):
        self.bins = bins
        self.size = size

    def validate(self) -> None:
        as_int_tuple("bins", self.bins, 3)
        check_positive_int("size", self.size)

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(mode="HSV", size=(self.size, self.size))

    @property
    def dim(self) -> int:
        return int(np.prod(as_int_tuple("bins", self.bins, 3)))

    def extract(self, images):
        hsv = np.stack(images).reshape(len(images), -1, 3)
        return joint_histograms(hsv, as_int_tuple("bins", self.bins, 3))
