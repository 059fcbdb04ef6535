"""Edge layout: Canny edge density and edge-orientation histograms per grid cell."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from visret import FeatureExtractor, InputSpec
from visret.features.normalization import normalize, parse_norm
from visret.features.params import check_image_size, check_positive_int, check_positive_number
from visret_handcrafted.grid import cell_bounds


#: Canny's smoothing is used at 0.5-5 pixels; the bound keeps a typo from running for minutes.
MAX_SIGMA = 16.0


class EdgeHistogram(FeatureExtractor):
    """Per grid cell: the fraction of Canny edge pixels and the histogram of their orientations (mod 180 degrees)."""

    name: ClassVar[str] = "edges"

    def __init__(self, bins: int = 8, grid: int = 4, sigma: float = 1.0, size: int = 128, norm: str = "none"):
        self.bins = bins
        self.grid = grid
        self.sigma = sigma
        self.size = size
        self.norm = norm

    def validate(self) -> None:
        parse_norm(self.norm)
        check_positive_int("bins", self.bins)
        check_positive_int("grid", self.grid)
        check_image_size(self.size, minimum=8)
        check_positive_number("sigma", self.sigma)
        if self.sigma > MAX_SIGMA:  # the Gaussian's cost grows with sigma; past this it blurs away every edge
            raise ValueError(f"sigma must be at most {MAX_SIGMA}, got {self.sigma!r}")
        if self.grid > self.size:
            raise ValueError(f"grid {self.grid} is finer than the image size {self.size}")

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(mode="L", size=(self.size, self.size))

    @property
    def dim(self) -> int:
        return self.grid**2 * (1 + self.bins)

    def describe(self, image: np.ndarray) -> np.ndarray:
        from skimage.feature import canny
        from skimage.filters import sobel_h, sobel_v

        grey = image.astype(np.float64) / 255.0
        edges = canny(grey, sigma=self.sigma)
        angle = np.mod(np.arctan2(sobel_h(grey), sobel_v(grey)), np.pi)
        bin_of = np.minimum((angle / np.pi * self.bins).astype(np.int64), self.bins - 1)
        cells = []
        for r0, r1 in cell_bounds(self.size, self.grid):
            for c0, c1 in cell_bounds(self.size, self.grid):
                cell_edges = edges[r0:r1, c0:c1]
                n = cell_edges.size
                histogram = np.bincount(bin_of[r0:r1, c0:c1][cell_edges], minlength=self.bins) / n
                cells.append(np.concatenate([[cell_edges.sum() / n], histogram]))
        return np.concatenate(cells)

    def extract(self, images):
        return normalize(np.asarray([self.describe(image) for image in images]), self.norm)
