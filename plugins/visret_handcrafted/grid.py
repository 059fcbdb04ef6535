"""Splitting images into a grid of cells, for descriptors pooled per cell (spatial layout)."""

from __future__ import annotations

import numpy as np


def cell_bounds(length: int, cells: int) -> list[tuple[int, int]]:
    """``cells`` contiguous ``(start, stop)`` ranges covering ``range(length)`` as evenly as possible."""
    edges = np.linspace(0, length, cells + 1).round().astype(int)
    return list(zip(edges[:-1], edges[1:]))


def grid_cells(image: np.ndarray, cells: int) -> list[np.ndarray]:
    """The ``cells`` x ``cells`` blocks of an image (row by row)."""
    rows, cols = cell_bounds(image.shape[0], cells), cell_bounds(image.shape[1], cells)
    return [image[r0:r1, c0:c1] for r0, r1 in rows for c0, c1 in cols]


def grid_means(maps: np.ndarray, cells: int) -> np.ndarray:
    """Mean of each map over each grid cell: ``(..., h, w)`` -> ``(..., cells * cells)``."""
    rows, cols = cell_bounds(maps.shape[-2], cells), cell_bounds(maps.shape[-1], cells)
    return np.stack([maps[..., r0:r1, c0:c1].mean(axis=(-2, -1)) for r0, r1 in rows for c0, c1 in cols], axis=-1)
