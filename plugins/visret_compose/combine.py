"""``combine``: several extractors side by side, each block normalised and weighted."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from visret import FeatureExtractor, InputSpec
from visret.images import as_array
from visret.normalization import normalize, parse_norm
from visret.params import check_image_size
from visret.plugins import extractor_from_spec

class Combine(FeatureExtractor):
    """Concatenate the features of several extractors, each block normalised then weighted.

    ``parts``: extractor names, or ``{"name": ..., "params": {...}}`` objects. Images are decoded
    once as RGB at ``size`` x ``size`` and converted for each part.
    """

    name: ClassVar[str] = "combine"

    def __init__(self, parts=("color-hist", "lbp", "hog"), weights=None, normalize: str = "l2", size: int = 256):
        self.parts = parts
        self.weights = weights
        self.normalize = normalize
        self.size = size

    def validate(self) -> None:
        if not isinstance(self.parts, (list, tuple)) or not self.parts:
            raise ValueError(f"parts must be a non-empty list of extractors, got {self.parts!r}")
        parse_norm(self.normalize)
        check_image_size(self.size)
        weights = self.block_weights()
        if any(isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0 for w in weights):
            raise ValueError(f"weights must be non-negative numbers, got {self.weights!r}")
        if len(weights) != len(self.parts):
            raise ValueError(f"{len(self.parts)} parts but {len(weights)} weights")
        self.extractors  # noqa: B018 - creates (and so checks) every part

    def block_weights(self) -> list[Any]:
        if self.weights is None:
            return [1.0] * len(self.parts)
        return list(self.weights) if isinstance(self.weights, (list, tuple)) else [self.weights]

    @property
    def extractors(self) -> list[FeatureExtractor]:
        if getattr(self, "_extractors", None) is None:
            self._extractors = [extractor_from_spec(spec) for spec in self.parts]
        return self._extractors

    @property
    def requires_fit(self) -> bool:
        return any(part.requires_fit for part in self.extractors)

    @property
    def supervised(self) -> bool:
        return any(part.supervised for part in self.extractors)

    @property
    def parallel(self) -> bool:
        return all(part.parallel for part in self.extractors)

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(mode="RGB", size=(self.size, self.size))

    @property
    def dim(self) -> int:
        return sum(part.dim for part in self.extractors)

    def fit_sample_size(self) -> int | None:
        sizes = [part.fit_sample_size() for part in self.extractors if part.requires_fit]
        return None if not sizes or None in sizes else max(sizes)

    def fit(self, images, labels=None) -> Combine:
        for part in self.extractors:
            if part.requires_fit:
                part.fit([as_array(image, part.input_spec) for image in images], labels)
        return self

    def get_state(self) -> dict[str, np.ndarray]:
        return {f"{i}.{key}": value for i, part in enumerate(self.extractors) for key, value in part.get_state().items()}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        for i, part in enumerate(self.extractors):
            prefix = f"{i}."
            own = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
            if own:
                part.set_state(own)

    def extract(self, images):
        blocks = []
        for part, weight in zip(self.extractors, self.block_weights()):
            converted = [as_array(image, part.input_spec) for image in images]
            features = np.asarray(part.extract(converted), dtype=np.float32)
            blocks.append(normalize(features, self.normalize) * weight)
        return np.concatenate(blocks, axis=1).astype(np.float32)
