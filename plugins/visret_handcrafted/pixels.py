"""Raw downsampled pixels: the honest baseline every descriptor should beat."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from visret import FeatureExtractor, InputSpec
from visret.features.params import check_choice, check_positive_int

#: Largest side: an RGB vector of 512 x 512 pixels already has 786,432 values.
MAX_SIDE = 512


class RawPixels(FeatureExtractor):
    """The image resized to ``size`` x ``size``, pixel values scaled to [0, 1] and flattened."""

    name: ClassVar[str] = "pixels"

    def __init__(self, size: int = 16, mode: str = "L"):
        self.size = size
        self.mode = mode

    def validate(self) -> None:
        check_positive_int("size", self.size, maximum=MAX_SIDE)
        check_choice("mode", self.mode, ("L", "RGB"))

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(mode=self.mode, size=(self.size, self.size))

    @property
    def dim(self) -> int:
        return self.size * self.size * (3 if self.mode == "RGB" else 1)

    def extract(self, images):
        return (np.stack(images).reshape(len(images), -1) / 255.0).astype(np.float32)
