"""Thresholds people can read: a default per kind of feature, one chosen from the data, and a
similarity calibrated on the collection itself.

A pair's *similarity* is the share of random pairs of the collection's images that lie farther
apart than it: 0.999 means closer than 999 in 1,000 pairs of distinct images, whatever the
feature and its units.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from visret.errors import VisretError

#: Default thresholds of extractors at their default parameters: cosine distance for ``gist``,
#: bits of 64 for the hashes (scaled to other hash sizes). Each is the best pair F1 on the
#: calibration set of ``benchmarks/duplicates.py --part calibrate`` (re-encoded, resized,
#: cropped, turned, re-lit and grey copies of images kept apart from the reported set).
CALIBRATED = {"gist": 0.03, "phash": 10, "dhash": 2, "ahash": 2, "whash": 2}
#: Distances below this share of the median random pair are candidates for the automatic threshold.
CANDIDATE_SHARE = 0.5
#: A gap separates duplicates from distinct images only if its far side is this many times its near side.
MIN_GAP_RATIO = 2.0


@dataclass(frozen=True)
class Threshold:
    value: float
    #: How it was chosen, in words, for reports.
    how: str


def check(value: float, binary: bool, bits: int) -> None:
    upper = bits if binary else 2.0
    if not 0 <= value <= upper:
        unit = f"bits, 0 to {bits}" if binary else "cosine distance, 0 to 2"
        raise VisretError(f"threshold must be in {unit}, got {value:g}")


def default(extractor) -> Threshold | None:
    """The calibrated threshold of ``extractor``; None when it has none (the threshold is then
    chosen from the data)."""
    value = CALIBRATED.get(extractor.name)
    if value is None:
        return None
    if getattr(extractor, "binary", False):
        bits = extractor.dim
        value = float(round(value * bits / 64))
        return Threshold(value, f"calibrated default of {extractor.name}: at most {value:g} of {bits} bits differ")
    if json.dumps(extractor.get_params(deep=False)) != json.dumps(type(extractor).param_defaults()):
        return None  # other parameters, other scale
    return Threshold(value, f"calibrated default of {extractor.name}: cosine distance at most {value:g}")


def automatic(nearest: np.ndarray, random_pairs: np.ndarray, binary: bool) -> Threshold:
    """The threshold at the widest gap in the distances of images to their nearest neighbour,
    among those under half the median distance of random pairs, that at least doubles the
    distance: duplicates sit below it, distinct images above it. No such gap: exact copies only."""
    if len(random_pairs) == 0:
        return Threshold(0.0, "automatic: fewer than two distinct images, exact copies only")
    bound = CANDIDATE_SHARE * float(np.median(random_pairs))
    values = np.append(np.unique(nearest[nearest < bound]), bound)
    floor = bound / 100  # differences among near-zero distances are noise, not gaps
    lower, upper = np.maximum(values[:-1], floor), values[1:]
    width = np.where(upper >= MIN_GAP_RATIO * lower, upper - lower, -1.0)
    if len(width) == 0 or width.max() < 0:
        return Threshold(0.0, f"automatic: no gap in nearest-neighbour distances below {bound:.4g} (half the median random pair); exact copies only")
    gap = int(np.argmax(width))
    value = float(values[gap])
    unit = "bits" if binary else "cosine distance"
    return Threshold(value, f"automatic: {value:.4g} {unit}, below the widest gap ({values[gap]:.4g} to {values[gap + 1]:.4g}) in nearest-neighbour distances")


def similarity(distances: np.ndarray, random_pairs: np.ndarray) -> np.ndarray:
    """Share of random pairs farther apart than each distance (1.0: closer than every one sampled)."""
    if len(random_pairs) == 0:
        return np.ones(len(distances))
    ordered = np.sort(random_pairs)
    return 1.0 - np.searchsorted(ordered, distances, side="right") / len(ordered)
