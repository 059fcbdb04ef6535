"""Perceptual hashes: a few bits per image that survive re-encoding, resizing and small edits.

Each hash is a grey thumbnail thresholded into ``hash_size`` x ``hash_size`` bits, returned as a
0/1 float vector so that it indexes like any feature; two images' Hamming distance is the number
of bits that differ (index with ``--metric hamming``; ``visret duplicates`` packs the bits and
searches them with a FAISS binary index). The definitions follow the ``imagehash`` package:

- ``ahash``: the thumbnail's pixels above their mean (average hash);
- ``dhash``: each pixel brighter than its left neighbour, on a thumbnail one column wider (gradient hash);
- ``phash``: the lowest ``hash_size`` x ``hash_size`` DCT coefficients of a thumbnail
  ``highfreq_factor`` times larger, above their median (perceptual hash);
- ``whash``: the Haar wavelet's low band at ``hash_size`` (block means of a power-of-two
  thumbnail) above its median; ``imagehash``'s default removes the lowest band first, which
  thresholding at the median leaves unchanged.

None survives a mirror image or a large rotation: a flipped copy is a different picture to them.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from visret import FeatureExtractor, InputSpec
from visret.features.params import check_positive_int

#: 32 x 32 = 1,024 bits is far beyond what near-duplicate search needs.
MAX_HASH_SIZE = 32


class PerceptualHash(FeatureExtractor):
    """Shared parameters and output of the hashes: ``hash_size`` squared bits as 0/1 floats."""

    binary: ClassVar[bool] = True

    def __init__(self, hash_size: int = 8):
        self.hash_size = hash_size

    def validate(self) -> None:
        check_positive_int("hash_size", self.hash_size, minimum=2, maximum=MAX_HASH_SIZE)

    @property
    def dim(self) -> int:
        return self.hash_size * self.hash_size

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(mode="L", size=(self.hash_size, self.hash_size))

    def extract(self, images):
        pixels = np.stack(images).astype(np.float64)
        return self.bits(pixels).reshape(len(images), -1).astype(np.float32)

    def bits(self, pixels: np.ndarray) -> np.ndarray:
        """Boolean bits of a batch of grey thumbnails shaped by ``input_spec``."""
        raise NotImplementedError


class AverageHash(PerceptualHash):
    """Average hash (aHash): a grey thumbnail's pixels above their mean."""

    name: ClassVar[str] = "ahash"

    def bits(self, pixels):
        return pixels > pixels.mean(axis=(1, 2), keepdims=True)


class DifferenceHash(PerceptualHash):
    """Difference hash (dHash): each pixel of a grey thumbnail brighter than its left neighbour."""

    name: ClassVar[str] = "dhash"

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(mode="L", size=(self.hash_size, self.hash_size + 1))

    def bits(self, pixels):
        return pixels[:, :, 1:] > pixels[:, :, :-1]


class PHash(PerceptualHash):
    """Perceptual hash (pHash): low DCT frequencies of a grey thumbnail above their median."""

    name: ClassVar[str] = "phash"

    def __init__(self, hash_size: int = 8, highfreq_factor: int = 4):
        self.hash_size = hash_size
        self.highfreq_factor = highfreq_factor

    def validate(self) -> None:
        super().validate()
        check_positive_int("highfreq_factor", self.highfreq_factor, maximum=8)

    @property
    def input_spec(self) -> InputSpec:
        side = self.hash_size * self.highfreq_factor
        return InputSpec(mode="L", size=(side, side))

    def bits(self, pixels):
        from scipy.fft import dct

        low = dct(dct(pixels, axis=1), axis=2)[:, : self.hash_size, : self.hash_size]
        return low > np.median(low.reshape(len(low), -1), axis=1)[:, None, None]


class WaveletHash(PerceptualHash):
    """Wavelet hash (wHash): the Haar low band of a grey thumbnail above its median."""

    name: ClassVar[str] = "whash"

    def __init__(self, hash_size: int = 8, image_scale: int = 64):
        self.hash_size = hash_size
        self.image_scale = image_scale

    def validate(self) -> None:
        super().validate()
        check_positive_int("image_scale", self.image_scale, maximum=1024)
        ratio = self.image_scale // self.hash_size
        if self.image_scale % self.hash_size or ratio & (ratio - 1):
            raise ValueError(f"image_scale must be hash_size times a power of two, got {self.image_scale} for hash_size {self.hash_size}")

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(mode="L", size=(self.image_scale, self.image_scale))

    def bits(self, pixels):
        block = self.image_scale // self.hash_size
        low = pixels.reshape(len(pixels), self.hash_size, block, self.hash_size, block).mean(axis=(2, 4))
        return low > np.median(low.reshape(len(low), -1), axis=1)[:, None, None]
