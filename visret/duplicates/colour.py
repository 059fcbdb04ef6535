"""The colour check: two colourful images whose hues disagree are not copies of each other.

Grey-level features (perceptual hashes, GIST) cannot tell a red bottle from the same bottle in
green, yet they must match a photo with its grey copy. So a near pair is dropped only when both
images are in colour and their hue histograms (weighted by chroma) overlap by less than
``MIN_HUE_OVERLAP``; a grey image passes. Only the images of candidate pairs are read again, at
64 x 64: the cost follows the duplicates found, not the collection.
"""

from __future__ import annotations

import numpy as np

from visret.features._extractor import InputSpec
from visret.images._decode import ImageReadError, read_image

#: Chroma (max - min of R, G, B, 0-255) from which a pixel counts as coloured.
MIN_CHROMA = 30
#: Share of coloured pixels from which an image counts as colourful.
MIN_COLOURED_SHARE = 0.02
HUE_BINS = 16
#: Smallest histogram intersection of two colourful copies; measured in benchmarks/duplicates.py.
MIN_HUE_OVERLAP = 0.4
SPEC = InputSpec(mode="RGB", size=(64, 64))


def hue_signature(rgb: np.ndarray) -> np.ndarray | None:
    """The chroma-weighted hue histogram of an RGB image, or None when it is (nearly) grey."""
    pixels = rgb.reshape(-1, 3).astype(np.float64)
    high, low = pixels.max(axis=1), pixels.min(axis=1)
    chroma = high - low
    coloured = chroma > MIN_CHROMA
    if coloured.mean() < MIN_COLOURED_SHARE:
        return None
    r, g, b = pixels[coloured].T
    c = chroma[coloured]
    hue = np.where(high[coloured] == r, ((g - b) / c) % 6, np.where(high[coloured] == g, (b - r) / c + 2, (r - g) / c + 4))
    histogram = np.bincount((hue / 6 * HUE_BINS).astype(int) % HUE_BINS, weights=c, minlength=HUE_BINS)
    return histogram / histogram.sum()


def agree(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """False only for two colourful images whose hues overlap too little."""
    return a is None or b is None or float(np.minimum(a, b).sum()) >= MIN_HUE_OVERLAP


class ColourGuard:
    """Keeps the colours of each group being formed, and refuses a join that would put two
    colourful images whose hues disagree in one group: the grey copy of a red bottle joins the red
    bottle (its closest match) and then keeps the green one out, though it is as close to both."""

    #: Colours kept per group: bounds the cost of a join in a group of thousands of frames.
    MAX_PALETTE = 32

    def __init__(self, signatures: dict[int, np.ndarray | None]):
        self.signatures = signatures
        self.palettes = {k: [s] for k, s in signatures.items() if s is not None}

    def allows_pair(self, a: int, b: int) -> bool:
        return agree(self.signatures.get(a), self.signatures.get(b))

    def allows(self, root_a: int, root_b: int) -> bool:
        left, right = self.palettes.get(root_a), self.palettes.get(root_b)
        if not left or not right:
            return True
        overlap = np.minimum(np.array(left)[:, None, :], np.array(right)[None, :, :]).sum(axis=2)
        return bool((overlap >= MIN_HUE_OVERLAP).all())

    def joined(self, root: int, other: int) -> None:
        moved = self.palettes.pop(other, [])
        if moved:
            palette = self.palettes.setdefault(root, [])
            palette.extend(moved[: self.MAX_PALETTE - len(palette)])


def signatures(paths: list[str], max_pixels: int, max_bytes: int) -> list[np.ndarray | None]:
    """Hue signatures of files; a file that cannot be read again gets None (it passes)."""
    found = []
    for path in paths:
        try:
            found.append(hue_signature(read_image(path, SPEC, max_pixels, max_bytes)[0]))
        except (ImageReadError, OSError):
            found.append(None)
    return found
