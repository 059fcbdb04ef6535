"""Texture and gradient descriptors: HOG, LBP (multi-scale, gridded) and GLCM / Haralick features."""

from __future__ import annotations

import functools
from typing import ClassVar

import numpy as np

from visret import FeatureExtractor, InputSpec
from visret.features.normalization import normalize, parse_norm
from visret.features.params import check_choice, check_image_size, check_positive_int
from visret_handcrafted.grid import grid_cells

HOG_BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")


def check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")


def as_list(name: str, value, kind=(int, float)) -> list:
    """A scalar or a non-empty list of scalars, as a list."""
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values or any(isinstance(v, bool) or not isinstance(v, kind) for v in values):
        raise ValueError(f"{name} must be a number or a list of numbers, got {value!r}")
    return list(values)


class HOG(FeatureExtractor):
    """Histogram of oriented gradients (all of scikit-image's options) on an image resized to ``size``."""

    name: ClassVar[str] = "hog"

    def __init__(
        self,
        size: int = 128,
        orientations: int = 9,
        pixels_per_cell: int = 16,
        cells_per_block: int = 2,
        block_norm: str = "L2-Hys",
        transform_sqrt: bool = False,
        color: bool = False,
    ):
        self.size = size
        self.orientations = orientations
        self.pixels_per_cell = pixels_per_cell
        self.cells_per_block = cells_per_block
        self.block_norm = block_norm
        self.transform_sqrt = transform_sqrt
        self.color = color

    def validate(self) -> None:
        check_image_size(self.size)
        for key in ("orientations", "pixels_per_cell", "cells_per_block"):
            check_positive_int(key, getattr(self, key))
        check_choice("block_norm", self.block_norm, HOG_BLOCK_NORMS)
        check_bool("transform_sqrt", self.transform_sqrt)
        check_bool("color", self.color)
        if self.size // self.pixels_per_cell < self.cells_per_block:
            raise ValueError(
                f"size {self.size} holds {self.size // self.pixels_per_cell} cells of {self.pixels_per_cell} px, "
                f"fewer than cells_per_block={self.cells_per_block}"
            )

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(mode="RGB" if self.color else "L", size=(self.size, self.size))

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
            transform_sqrt=self.transform_sqrt,
            feature_vector=True,
            channel_axis=-1 if self.color else None,
        )
        from skimage.feature import hog

        return np.stack([hog(image, **options) for image in images]).astype(np.float32)


@functools.cache
def _rotation_invariant_codes(points: int) -> tuple[np.ndarray, int]:
    """Map each ``ror`` LBP code (its minimal rotation) to a compact bin; return (lookup, n_bins)."""
    codes = np.arange(2**points)
    rotations = [((codes >> s) | (codes << (points - s))) & (2**points - 1) for s in range(points)]
    minimal = np.min(rotations, axis=0)
    distinct, lookup = np.unique(minimal, return_inverse=True)
    return lookup, len(distinct)


def max_points(radius: float) -> int:
    """The most samples worth taking on a circle of ``radius`` pixels: 8 per pixel of radius (Ojala's
    (8, 1), (16, 2), (24, 3)); more only repeat interpolated pixels, at a cost linear in the count."""
    return max(8, int(np.ceil(8 * radius)))


def lbp_bins(points: int, method: str) -> int:
    if method == "uniform":
        return points + 2
    if method == "nri_uniform":
        return points * (points - 1) + 3
    return _rotation_invariant_codes(points)[1]


class LBP(FeatureExtractor):
    """Local binary pattern histograms at one or more (points, radius) scales, whole image or per grid cell.

    ``method``: ``uniform`` (rotation invariant, P+2 bins), ``ror`` (all rotation-invariant
    patterns) or ``nri_uniform`` (not rotation invariant). Border pixels, whose codes compare
    against padding, are left out.
    """

    name: ClassVar[str] = "lbp"

    def __init__(self, points=8, radius=1.0, method: str = "uniform", grid: int = 1, size: int = 128, norm: str = "hellinger"):
        self.points = points
        self.radius = radius
        self.method = method
        self.grid = grid
        self.size = size
        self.norm = norm

    def scales(self) -> list[tuple[int, float]]:
        points, radii = as_list("points", self.points, int), as_list("radius", self.radius)
        if len(points) != len(radii):
            raise ValueError(f"points and radius must have the same length, got {self.points!r} and {self.radius!r}")
        return list(zip(points, radii))

    def validate(self) -> None:
        parse_norm(self.norm)
        check_choice("method", self.method, ("uniform", "ror", "nri_uniform"))
        check_image_size(self.size)
        check_positive_int("grid", self.grid)
        for points, radius in self.scales():
            check_positive_int("points", points, minimum=4)
            if self.method == "ror" and points > 16:
                raise ValueError("method ror supports at most 16 points")
            if not isinstance(radius, (int, float)) or not radius > 0:
                raise ValueError(f"radius must be positive, got {radius!r}")
            if points > max_points(radius):
                raise ValueError(f"points must be at most {max_points(radius)} at radius {radius} (8 per pixel of radius: "
                                 f"a circle holds no more distinct samples), got {points}")
            if self.size - 2 * int(np.ceil(radius)) < self.grid:
                raise ValueError(f"size {self.size} leaves too few pixels inside a border of radius {radius}")

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(mode="L", size=(self.size, self.size))

    @property
    def dim(self) -> int:
        return sum(lbp_bins(p, self.method) for p, _ in self.scales()) * self.grid**2

    def _codes(self, image: np.ndarray, points: int, radius: float) -> np.ndarray:
        method = "default" if self.method == "ror" else self.method
        from skimage.feature import local_binary_pattern

        codes = local_binary_pattern(image, points, radius, method=method).astype(np.int64)
        border = int(np.ceil(radius))
        codes = codes[border:-border, border:-border]
        return _rotation_invariant_codes(points)[0][codes] if self.method == "ror" else codes

    def extract(self, images):
        rows = []
        for image in images:
            parts = []
            for points, radius in self.scales():
                codes, bins = self._codes(image, points, radius), lbp_bins(points, self.method)
                for cell in grid_cells(codes, self.grid):
                    parts.append(np.bincount(cell.ravel(), minlength=bins) / max(cell.size, 1))
            rows.append(np.concatenate(parts))
        return normalize(np.asarray(rows), self.norm)


GLCM_PROPERTIES = ("contrast", "dissimilarity", "homogeneity", "ASM", "energy", "correlation", "entropy", "mean", "variance", "std")


class GLCM(FeatureExtractor):
    """Grey-level co-occurrence (Haralick) properties per distance, averaged over angles unless asked not to."""

    name: ClassVar[str] = "glcm"

    def __init__(
        self,
        distances=(1, 2, 4),
        angles: int = 4,
        levels: int = 32,
        properties=("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "entropy"),
        average_angles: bool = True,
        size: int = 128,
    ):
        self.distances = distances
        self.angles = angles
        self.levels = levels
        self.properties = properties
        self.average_angles = average_angles
        self.size = size

    def validate(self) -> None:
        for d in as_list("distances", self.distances, int):
            check_positive_int("distances", d)
        check_positive_int("angles", self.angles)
        check_positive_int("levels", self.levels, minimum=2)
        if self.levels > 256:
            raise ValueError(f"levels must be at most 256, got {self.levels}")
        check_image_size(self.size)
        check_bool("average_angles", self.average_angles)
        properties = self.properties if isinstance(self.properties, (list, tuple)) else [self.properties]
        if not properties:
            raise ValueError("properties must name at least one property")
        for p in properties:
            check_choice("properties", p, GLCM_PROPERTIES)

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(mode="L", size=(self.size, self.size))

    def _properties(self) -> list[str]:
        return list(self.properties) if isinstance(self.properties, (list, tuple)) else [self.properties]

    @property
    def dim(self) -> int:
        per_distance = 1 if self.average_angles else self.angles
        return len(self._properties()) * len(as_list("distances", self.distances, int)) * per_distance

    def extract(self, images):
        from skimage.feature import graycomatrix, graycoprops

        distances = as_list("distances", self.distances, int)
        angles = np.arange(self.angles) * np.pi / self.angles
        rows = []
        for image in images:
            quantised = (image.astype(np.int64) * self.levels // 256).astype(np.uint8)
            matrix = graycomatrix(quantised, distances, angles, levels=self.levels, symmetric=True, normed=True)
            values = []
            for prop in self._properties():
                table = graycoprops(matrix, prop)  # (distances, angles)
                values.append(table.mean(axis=1) if self.average_angles else table.ravel())
            rows.append(np.concatenate(values))
        return np.asarray(rows, dtype=np.float32)
