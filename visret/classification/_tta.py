"""Test-time augmentation for any pipeline: the posteriors of an image and of views of it, averaged.

The views are deterministic (the same image always gets the same views, so a TTA result can be
reproduced): small shifts first, then centred crops scaled back to the input size, and
horizontal flips only when asked, since a mirrored digit or letter is another symbol.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from PIL import Image

#: Shift (share of the side) and crop (share of the side kept) of each view, in the order used.
_VIEWS = (
    ("shift", (1, 0)), ("shift", (-1, 0)), ("shift", (0, 1)), ("shift", (0, -1)),
    ("crop", 0.9), ("shift", (1, 1)), ("shift", (-1, -1)), ("crop", 0.8),
    ("shift", (1, -1)), ("shift", (-1, 1)), ("crop", 0.95), ("crop", 0.85),
)
SHIFT = 1 / 16


def _shift(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Move the content by (dx, dy) pixels, repeating the edge into the space it leaves."""
    h, w = image.shape[:2]
    pad = [(abs(dy), abs(dy)), (abs(dx), abs(dx))] + [(0, 0)] * (image.ndim - 2)
    padded = np.pad(image, pad, mode="edge")
    top, left = abs(dy) - dy, abs(dx) - dx
    return padded[top : top + h, left : left + w]


def _crop(image: np.ndarray, keep: float) -> np.ndarray:
    h, w = image.shape[:2]
    ch, cw = max(1, round(h * keep)), max(1, round(w * keep))
    top, left = (h - ch) // 2, (w - cw) // 2
    cropped = Image.fromarray(image[top : top + ch, left : left + cw])
    return np.asarray(cropped.resize((w, h), Image.Resampling.BILINEAR))


def max_views(flip: bool = False) -> int:
    return (2 * len(_VIEWS) + 1) if flip else len(_VIEWS)


def views(image: np.ndarray, n: int, flip: bool = False) -> list[np.ndarray]:
    """``n`` augmented views of a uint8 image (``(h, w)`` or ``(h, w, 3)``), the image itself excluded."""
    if not 0 <= n <= max_views(flip):
        raise ValueError(f"test-time augmentation takes 0 to {max_views(flip)} views{' with flips' if flip else ''}, got {n}")
    h, w = image.shape[:2]
    step = (max(1, round(w * SHIFT)), max(1, round(h * SHIFT)))
    chosen: list[np.ndarray] = [image[:, ::-1]] if flip else []
    for kind, value in _VIEWS:
        if len(chosen) >= n:
            break
        view = _shift(image, value[0] * step[0], value[1] * step[1]) if kind == "shift" else _crop(image, value)
        chosen += [view, view[:, ::-1]] if flip else [view]
    return [np.ascontiguousarray(v) for v in chosen[:n]]


def averaged(predict: Callable[[list[np.ndarray]], np.ndarray], images: Sequence[np.ndarray], n: int, flip: bool = False) -> np.ndarray:
    """``predict(images)`` averaged with ``predict`` over ``n`` views of each image."""
    total = np.asarray(predict(list(images)), np.float64)
    if n <= 0:
        return total
    per_image = [views(image, n, flip) for image in images]
    for i in range(n):
        total += np.asarray(predict([v[i] for v in per_image]), np.float64)
    return total / (n + 1)
