"""Row normalisations of feature matrices, shared by extractors (their ``norm`` parameter),
``combine`` blocks and ``post`` steps.

``none``, ``l1``, ``l2``, ``hellinger`` (L1, then the signed square root: the Hellinger kernel
map, RootSIFT; histograms come out with unit L2 norm) and ``power:A`` (signed power ``A``, then
L2: the power normalisation of Fisher vectors and VLAD).
"""

from __future__ import annotations

import numpy as np

NORMS = ("none", "l1", "l2", "hellinger", "power:A")


def rows_l1(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L1 norm (zero rows stay zero)."""
    return features / np.maximum(np.abs(features).sum(axis=1, keepdims=True), 1e-12)


def rows_l2(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def signed_power(features: np.ndarray, exponent: float) -> np.ndarray:
    return np.sign(features) * np.abs(features) ** exponent


def parse_norm(norm: str) -> tuple[str, float | None]:
    """``"power:0.5"`` -> ``("power", 0.5)``; ``"l2"`` -> ``("l2", None)``; ``ValueError`` otherwise."""
    if not isinstance(norm, str):
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    kind, _, argument = norm.partition(":")
    if kind in ("none", "l1", "l2", "hellinger") and not argument:
        return kind, None
    if kind == "power":
        try:
            exponent = float(argument)
        except ValueError:
            exponent = 0.0
        if 0 < exponent <= 1:
            return kind, exponent
    raise ValueError(f"norm must be one of {', '.join(NORMS)} (0 < A <= 1), got {norm!r}")


def normalize(features: np.ndarray, norm: str) -> np.ndarray:
    """Apply a named normalisation to every row; float32 out."""
    kind, argument = parse_norm(norm)
    x = np.asarray(features, dtype=np.float64)
    if kind == "l1":
        x = rows_l1(x)
    elif kind == "l2":
        x = rows_l2(x)
    elif kind == "hellinger":
        x = signed_power(rows_l1(x), 0.5)
    elif kind == "power":
        x = rows_l2(signed_power(x, argument))
    return x.astype(np.float32)
