"""The textbook CNNs as extractors: ``cnn/lenet5`` and ``cnn/vgg-small`` (untrained: random projections)."""

from __future__ import annotations

from typing import ClassVar

from visret import InputSpec
from visret.features.params import as_int_tuple, check_choice, check_image_size, check_positive_int
from visret_keras.architectures import cut_before_head, lenet5, vgg_small
from visret_keras.base import KerasExtractor


class LeNet5(KerasExtractor):
    """LeNet-5 up to its 84-unit layer; seeded random weights (train it for real features)."""

    name: ClassVar[str] = "cnn/lenet5"

    def __init__(self, size: int = 32, mode: str = "L", seed: int = 0):
        self.size = size
        self.mode = mode
        self.seed = seed

    def validate(self) -> None:
        check_image_size(self.size, minimum=12)
        check_choice("mode", self.mode, ("L", "RGB"))
        check_positive_int("seed", self.seed, minimum=0)

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(mode=self.mode, size=(self.size, self.size))

    def build_model(self):
        channels = 1 if self.mode == "L" else 3
        return cut_before_head(lenet5((self.size, self.size, channels), seed=self.seed))


class VGGSmall(KerasExtractor):
    """A small VGG (3x3 conv blocks, max-pooling) up to its global average pooling."""

    name: ClassVar[str] = "cnn/vgg-small"

    def __init__(self, size: int = 64, mode: str = "RGB", widths=(32, 64, 128), convs_per_block: int = 2, seed: int = 0):
        self.size = size
        self.mode = mode
        self.widths = widths
        self.convs_per_block = convs_per_block
        self.seed = seed

    def validate(self) -> None:
        check_choice("mode", self.mode, ("L", "RGB"))
        if not isinstance(self.widths, (list, tuple)) or not self.widths:
            raise ValueError(f"widths must be a list of integers, got {self.widths!r}")
        as_int_tuple("widths", self.widths, len(self.widths))
        check_positive_int("convs_per_block", self.convs_per_block)
        check_positive_int("seed", self.seed, minimum=0)
        check_image_size(self.size, minimum=2 ** len(self.widths))

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(mode=self.mode, size=(self.size, self.size))

    def build_model(self):
        channels = 1 if self.mode == "L" else 3
        model = vgg_small((self.size, self.size, channels), widths=self.widths, convs_per_block=self.convs_per_block, seed=self.seed)
        return cut_before_head(model, layer="features")
