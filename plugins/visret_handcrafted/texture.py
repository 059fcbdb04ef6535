"""Texture and gradient descriptors: HOG and LBP."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from skimage.feature import hog, local_binary_pattern

from visret import FeatureExtractor, InputSpec
from visret.params import check_choice, check_positive_int

HOG_BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")


class HOG(FeatureExtractor):
    """Histogram of oriented gradients on a grey image resized to ``size`` x ``size``."""

    name: ClassVar[str] = "hog"

    def __init__(
        self,
        size: int = 128,
        orientations: int = 9,
        pixels_per_cell: int = 16,
        cells_per_block: int = 2,
        block_norm: str = "L2-Hys",
    ):
        self.size = size
        self.orientations = orientations
        self.pixels_per_cell = pixels_per_cell
        self.cells_per_block = cells_per_block
        self.block_norm = block_norm

    def validate(self) -> None:
        for key in ("size", "orientations", "pixels_per_cell", "cells_per_block"):
            check_positive_int(key, getattr(self, key))
        check_choice("block_norm", self.block_norm, HOG_BLOCK_NORMS)
        if self.size // self.pixels_per_cell < self.cells_per_block:
            raise ValueError(
                f"size {self.size} holds {self.size // self.pixels_per_cell} cells of {self.pixels_per_cell} px, "
                f"fewer than cells_per_block={self.cells_per_block}"
            )

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(mode="L", size=(self.size, self.size))

    @property
    def dim(self) -> int:
        blocks = self.size // self.pixels_per_cell - self.cells_per_block + 1
        return blocks * blocks * self.cells_per_block**2 * self.orientations

    def extract(self, images):
        options = dict(
            orientations=self.orientations,
            pixels_per_cell=(self.pixels_per_cell, self.pixels_per_cell),
            cells_per_block=(self.cells_per_block, self.cells_per_block),
            block_norm=self.block_norm,
            feature_vector=True,
        )
        return np.stack([hog(image, **options) for image in images]).astype(np.float32)


LBP_METHODS = {"uniform": lambda p: p + 2, "nri_uniform": lambda p: p * (p - 1) + 3}


class LBP(FeatureExtractor):
    """Histogram of local binary patterns (uniform: rotation invariant) on a grey image."""

    name: ClassVar[str] = "lbp"

    def __init__(self, points: int = 8, radius: float = 1.0, method: str = "uniform", size: int = 128):
        self.points = points
        self.radius = radius
        self.method = method
        self.size = size

    def validate(self) -> None:
        check_positive_int("points", self.points, minimum=4)
        check_positive_int("size", self.size)
        if isinstance(self.radius, (int, float)) and self.size <= 2 * np.ceil(self.radius):
            raise ValueError(f"size {self.size} leaves no pixel inside a border of radius {self.radius}")
        check_choice("method", self.method, LBP_METHODS)
        if not isinstance(self.radius, (int, float)) or isinstance(self.radius, bool) or self.radius <= 0:
            raise ValueError(f"radius must be a positive number, got {self.radius!r}")

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(mode="L", size=(self.size, self.size))

    @property
    def dim(self) -> int:
        return LBP_METHODS[self.method](self.points)

    def extract(self, images):
        rows = []
        border = int(np.ceil(self.radius))  # codes there compare against padding, not the image
        for image in images:
            codes = local_binary_pattern(image, self.points, self.radius, method=self.method).astype(np.int64)
            codes = codes[border:-border, border:-border]
            rows.append(np.bincount(codes.ravel(), minlength=self.dim)[: self.dim] / codes.size)
        return np.asarray(rows, dtype=np.float32)
