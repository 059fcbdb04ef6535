"""Gabor filter-bank descriptors: global energies, and a GIST-like spatial envelope on a grid."""

from __future__ import annotations

import functools
from typing import ClassVar

import numpy as np

from visret import FeatureExtractor, InputSpec
from visret.features.params import check_image_size, check_positive_int
from visret_handcrafted.grid import grid_means
from visret_handcrafted.texture import as_list


@functools.cache
def _bank_spectra(size: int, frequencies: tuple[float, ...], orientations: int) -> tuple[np.ndarray, int, int]:
    """FFTs of every Gabor kernel, zero-padded for linear convolution with a ``size`` image.

    Returns ``(spectra (filters, p, p//2+1... complex), padded size, half kernel size)``.
    """
    from scipy import fft
    from skimage.filters import gabor_kernel

    kernels = [
        gabor_kernel(frequency, theta=np.pi * o / orientations)
        for frequency in frequencies
        for o in range(orientations)
    ]
    largest = max(max(k.shape) for k in kernels)
    padded = fft.next_fast_len(size + largest - 1)
    spectra = np.empty((len(kernels), padded, padded), np.complex64)
    for i, kernel in enumerate(kernels):
        centred = np.zeros((padded, padded), np.complex128)
        h, w = kernel.shape
        centred[:h, :w] = kernel
        centred = np.roll(centred, (-(h // 2), -(w // 2)), axis=(0, 1))  # kernel centre at the origin
        spectra[i] = fft.fft2(centred)
    return spectra, padded, largest // 2


def gabor_magnitudes(image: np.ndarray, size: int, frequencies: tuple[float, ...], orientations: int) -> np.ndarray:
    """|image * kernel| for every filter of the bank: ``(filters, size, size)``.

    The image is contrast-normalised first (zero mean, unit variance) so that energies describe
    texture, not brightness.
    """
    from scipy import fft

    spectra, padded, _ = _bank_spectra(size, frequencies, orientations)
    x = image.astype(np.float64)
    x = (x - x.mean()) / (x.std() + 1e-8)
    image_spectrum = fft.fft2(x, s=(padded, padded))
    responses = fft.ifft2(spectra * image_spectrum[None], axes=(1, 2), workers=1)
    return np.abs(responses[:, :size, :size]).astype(np.float32)


#: Bounds that keep a typo from asking for gigabytes: the bank's spectra live in memory.
MAX_ORIENTATIONS, MAX_FREQUENCIES, MAX_BANK_BYTES = 64, 16, 1 << 30


class _GaborBank(FeatureExtractor):
    def validate(self) -> None:
        check_image_size(self.size, minimum=8)
        check_positive_int("orientations", self.orientations, maximum=MAX_ORIENTATIONS)
        frequencies = as_list("frequencies", self.frequencies)
        if len(frequencies) > MAX_FREQUENCIES:
            raise ValueError(f"at most {MAX_FREQUENCIES} frequencies, got {len(frequencies)}")
        for f in frequencies:
            if not isinstance(f, (int, float)) or isinstance(f, bool) or not 0 < f <= 0.5:
                raise ValueError(f"frequencies must be in (0, 0.5] cycles per pixel, got {f!r}")
        bank = self._n_filters() * (2 * self.size) ** 2 * 8  # complex64 spectra, padded about twice the side
        if bank > MAX_BANK_BYTES:
            raise ValueError(f"the filter bank would take {bank / 2**30:.1f} GiB (at most {MAX_BANK_BYTES >> 30}): "
                             "use fewer orientations or frequencies, or a smaller size")

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(mode="L", size=(self.size, self.size))

    def _n_filters(self) -> int:
        return len(as_list("frequencies", self.frequencies)) * self.orientations

    def _magnitudes(self, image: np.ndarray) -> np.ndarray:
        frequencies = tuple(float(f) for f in as_list("frequencies", self.frequencies))
        return gabor_magnitudes(image, self.size, frequencies, self.orientations)


class GaborEnergy(_GaborBank):
    """Mean and standard deviation of Gabor filter-bank magnitudes (scales x orientations)."""

    name: ClassVar[str] = "gabor"

    def __init__(self, frequencies=(0.05, 0.1, 0.2, 0.4), orientations: int = 6, size: int = 64):
        self.frequencies = frequencies
        self.orientations = orientations
        self.size = size

    @property
    def dim(self) -> int:
        return 2 * self._n_filters()

    def extract(self, images):
        rows = []
        for image in images:
            magnitudes = self._magnitudes(image)
            rows.append(np.concatenate([magnitudes.mean(axis=(1, 2)), magnitudes.std(axis=(1, 2))]))
        return np.asarray(rows, dtype=np.float32)


class GIST(_GaborBank):
    """A GIST-like spatial envelope: Gabor magnitudes averaged over a ``grid`` x ``grid`` layout."""

    name: ClassVar[str] = "gist"

    def __init__(self, frequencies=(0.05, 0.1, 0.2, 0.4), orientations: int = 8, grid: int = 4, size: int = 64):
        self.frequencies = frequencies
        self.orientations = orientations
        self.grid = grid
        self.size = size

    def validate(self) -> None:
        super().validate()
        check_positive_int("grid", self.grid)
        if self.grid > self.size:
            raise ValueError(f"grid {self.grid} is finer than the image size {self.size}")

    @property
    def dim(self) -> int:
        return self._n_filters() * self.grid**2

    def extract(self, images):
        return np.asarray([grid_means(self._magnitudes(image), self.grid).ravel() for image in images], np.float32)
