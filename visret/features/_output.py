"""Every extractor's output checked once, where it enters visret, before anything is written or searched.

One rule for built-in extractors, plugins and networks alike, and the one the conformance kit holds
them to: numbers convertible to float32, a 2-D array of one row per image and the extractor's
declared ``dim`` columns, every value finite. A wrong shape or type means the extractor cannot work
and is one line that names it and its plugin; a non-finite row is that image's fault, skipped with a
logged line while indexing and refused in one line for a query.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from visret.errors import VisretError
from visret.features._extractor import FeatureExtractor
from visret.features._lookup import plugin_of


def _who(extractor: FeatureExtractor) -> str:
    plugin = plugin_of(extractor)
    return f"extractor {extractor.name!r}" + (f" (plugin {plugin})" if plugin else "")


def checked_features(extractor: FeatureExtractor, output: Any, count: int) -> np.ndarray:
    """``output`` of ``extractor.extract`` on ``count`` images as float32 ``(count, dim)``, or one line
    naming the extractor, its plugin and what was expected. Values are not checked here: see
    ``finite_rows``."""
    try:
        array = np.asarray(output)
    except Exception as exc:  # a plugin may return anything: ragged lists, objects
        raise VisretError(f"{_who(extractor)} gave output that is not an array ({type(exc).__name__}); "
                          f"expected float32 of shape ({count}, {extractor.dim})") from None
    dim = extractor.dim
    if array.dtype.kind not in "fiub":
        raise VisretError(f"{_who(extractor)} gave {array.dtype} values; expected float32 of shape ({count}, {dim})")
    if array.shape != (count, dim):
        raise VisretError(f"{_who(extractor)} gave an array of shape {array.shape} for {count} images; "
                          f"expected ({count}, {dim}) (one row of its dim per image)")
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf: not finite
        return array.astype(np.float32, copy=False)


def finite_rows(features: np.ndarray) -> np.ndarray:
    """Which rows hold only finite values (NaN and infinity never reach a store or a ranking)."""
    return np.isfinite(features).all(axis=1)


def checked_query_features(extractor: FeatureExtractor, output: Any, count: int, what: str = "query image",
                           first: int = 0, total: int | None = None) -> np.ndarray:
    """``checked_features`` for images that are asked about: a non-finite row is refused in one line
    (``first`` and ``total`` place a batch among all the images asked about)."""
    features = checked_features(extractor, output, count)
    bad = np.flatnonzero(~finite_rows(features))
    if len(bad):
        raise VisretError(f"{_who(extractor)} gave NaN or infinite features for {what} {first + int(bad[0]) + 1} of {total or count}")
    return features
