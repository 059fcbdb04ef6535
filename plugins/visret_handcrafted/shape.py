"""Shape and region descriptors of the main object, found by thresholding (the course's "parcel" example)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from visret import FeatureExtractor, InputSpec
from visret.features.params import check_choice, check_image_size, check_positive_int

GEOMETRY = (
    "area", "perimeter", "eccentricity", "solidity", "extent", "major_axis", "minor_axis",
    "bbox_diagonal", "bbox_height", "bbox_width",
)


def foreground_mask(image: np.ndarray, threshold, foreground: str) -> np.ndarray:
    """Pixels of the object: above (bright) or below (dark) the threshold; ``auto`` picks the side
    that touches the image border less (the background usually surrounds the object)."""
    from skimage.filters import threshold_otsu

    t = threshold_otsu(image) if threshold == "otsu" else threshold
    bright = image > t
    if foreground == "bright":
        return bright
    if foreground == "dark":
        return ~bright
    border = np.concatenate([bright[0], bright[-1], bright[:, 0], bright[:, -1]])
    return bright if border.mean() <= 0.5 else ~bright


class RegionShape(FeatureExtractor):
    """Geometry, Hu moments and intensity statistics of the largest thresholded region.

    Sizes are relative to the image (area as a fraction, lengths over the image diagonal), so
    the vector does not depend on resolution; Hu moments are log-scaled (sign * log10 |h|, / 10).
    An image with no foreground gives zeros.
    """

    name: ClassVar[str] = "shape"

    def __init__(self, threshold="otsu", foreground: str = "auto", bins: int = 8, size: int = 128):
        self.threshold = threshold
        self.foreground = foreground
        self.bins = bins
        self.size = size

    def validate(self) -> None:
        if self.threshold != "otsu" and (
            isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) or not 0 <= self.threshold <= 255
        ):
            raise ValueError(f"threshold must be 'otsu' or a grey level 0-255, got {self.threshold!r}")
        check_choice("foreground", self.foreground, ("auto", "bright", "dark"))
        check_positive_int("bins", self.bins)
        check_image_size(self.size, minimum=8)

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(mode="L", size=(self.size, self.size))

    @property
    def dim(self) -> int:
        return len(GEOMETRY) + 7 + 2 + self.bins

    def describe(self, image: np.ndarray) -> np.ndarray:
        features = np.zeros(self.dim, np.float64)
        if image.min() == image.max():
            return features
        from skimage.measure import label, regionprops

        regions = regionprops(label(foreground_mask(image, self.threshold, self.foreground)), intensity_image=image)
        if not regions:
            return features
        region = max(regions, key=lambda r: r.area)
        h, w = image.shape
        diagonal = np.hypot(h, w)
        top, left, bottom, right = region.bbox
        features[: len(GEOMETRY)] = (
            region.area / (h * w),
            region.perimeter / (2 * (h + w)),
            region.eccentricity,
            region.solidity,
            region.extent,
            region.axis_major_length / diagonal,
            region.axis_minor_length / diagonal,
            np.hypot(bottom - top, right - left) / diagonal,
            (bottom - top) / h,
            (right - left) / w,
        )
        hu = region.moments_hu
        features[len(GEOMETRY) : len(GEOMETRY) + 7] = -np.sign(hu) * np.log10(np.abs(hu) + 1e-30) / 10
        inside = region.image_intensity[region.image] / 255.0
        offset = len(GEOMETRY) + 7
        features[offset : offset + 2] = inside.mean(), inside.std()
        features[offset + 2 :] = np.histogram(inside, bins=self.bins, range=(0, 1))[0] / inside.size
        return features

    def extract(self, images):
        return np.asarray([self.describe(image) for image in images], dtype=np.float32)
