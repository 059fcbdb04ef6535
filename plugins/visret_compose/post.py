"""``post``: post-processing of any extractor's features, fitted on the indexed data where it learns.

Steps, applied in order: ``l1``, ``l2`` (normalise), ``sqrt`` (signed square root; after ``l1``
this is the Hellinger / RootSIFT mapping), ``power:A`` (signed power), ``standardize`` (zero mean,
unit variance per dimension), ``pca:N`` and ``pca-whiten:N`` (projection on the N leading
components, whitened or not). Learned statistics are saved with the index.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from visret import FeatureExtractor, InputSpec
from visret.params import check_positive_int
from visret.plugins import extractor_from_spec
from visret_compose.combine import normalise_rows

FITTED = ("standardize", "pca", "pca-whiten")


def parse_step(step: str) -> tuple[str, float | None]:
    """``"pca:64"`` -> ``("pca", 64)``; ``"l2"`` -> ``("l2", None)``."""
    if not isinstance(step, str):
        raise ValueError(f"a step must be a string, got {step!r}")
    kind, _, argument = step.partition(":")
    if kind in ("l1", "l2", "sqrt", "standardize") and not argument:
        return kind, None
    if kind == "power" and argument:
        return kind, float(argument)
    if kind in ("pca", "pca-whiten") and argument.isdigit() and int(argument) > 0:
        return kind, int(argument)
    raise ValueError(f"unknown step {step!r} (steps: l1, l2, sqrt, power:A, standardize, pca:N, pca-whiten:N)")


class Postprocess(FeatureExtractor):
    """Another extractor's features, post-processed by ``steps`` (normalisation, power, standardisation, PCA)."""

    name: ClassVar[str] = "post"

    def __init__(self, extractor="hog", steps=("l2",), fit_images: int = 5000):
        self.extractor = extractor
        self.steps = steps
        self.fit_images = fit_images

    def _steps(self) -> list[tuple[str, float | None]]:
        steps = self.steps if isinstance(self.steps, (list, tuple)) else [self.steps]
        return [parse_step(step) for step in steps]

    def validate(self) -> None:
        if not self._steps():
            raise ValueError("steps must name at least one step")
        check_positive_int("fit_images", self.fit_images, minimum=2)
        self.base  # noqa: B018 - creates (and so checks) the wrapped extractor

    @property
    def base(self) -> FeatureExtractor:
        if getattr(self, "_base", None) is None:
            self._base = extractor_from_spec(self.extractor)
        return self._base

    @property
    def requires_fit(self) -> bool:
        return self.base.requires_fit or any(kind in FITTED for kind, _ in self._steps())

    @property
    def parallel(self) -> bool:
        return self.base.parallel

    @property
    def input_spec(self) -> InputSpec:
        return self.base.input_spec

    @property
    def dim(self) -> int:
        dim = self.base.dim
        for kind, argument in self._steps():
            if kind in ("pca", "pca-whiten"):
                dim = min(int(argument), dim)
        return dim

    def fit_sample_size(self) -> int | None:
        return self.fit_images

    def fit(self, images, labels=None) -> Postprocess:
        if self.base.requires_fit:
            self.base.fit(images, labels)
        features = np.asarray(self.base.extract(images), dtype=np.float64)
        self.stats_ = {}
        for i, (kind, argument) in enumerate(self._steps()):
            if kind == "standardize":
                self.stats_[f"{i}.mean"] = features.mean(axis=0)
                self.stats_[f"{i}.scale"] = 1.0 / np.maximum(features.std(axis=0), 1e-12)
            elif kind in ("pca", "pca-whiten"):
                n = int(argument)
                if n > min(features.shape):
                    raise ValueError(f"{kind}:{n} needs at least {n} images and {n} dimensions, got {features.shape}")
                mean = features.mean(axis=0)
                _, singular, components = np.linalg.svd(features - mean, full_matrices=False)
                self.stats_[f"{i}.mean"] = mean
                self.stats_[f"{i}.components"] = components[:n]
                variance = singular[:n] ** 2 / max(len(features) - 1, 1)
                self.stats_[f"{i}.scale"] = 1.0 / np.sqrt(np.maximum(variance, 1e-12)) if kind == "pca-whiten" else np.ones(n)
            features = self._apply(i, kind, argument, features)
        return self

    def _apply(self, i: int, kind: str, argument, features: np.ndarray) -> np.ndarray:
        if kind in ("l1", "l2"):
            return normalise_rows(features, kind)
        if kind == "sqrt":
            return np.sign(features) * np.sqrt(np.abs(features))
        if kind == "power":
            return np.sign(features) * np.abs(features) ** argument
        if kind == "standardize":
            return (features - self.stats_[f"{i}.mean"]) * self.stats_[f"{i}.scale"]
        return (features - self.stats_[f"{i}.mean"]) @ self.stats_[f"{i}.components"].T * self.stats_[f"{i}.scale"]

    def get_state(self) -> dict[str, np.ndarray]:
        state = {f"base.{key}": value for key, value in self.base.get_state().items()}
        state.update({f"step.{key}": value for key, value in getattr(self, "stats_", {}).items()})
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        base = {key[5:]: value for key, value in state.items() if key.startswith("base.")}
        if base:
            self.base.set_state(base)
        self.stats_ = {key[5:]: value for key, value in state.items() if key.startswith("step.")}

    def extract(self, images):
        features = np.asarray(self.base.extract(images), dtype=np.float64)
        for i, (kind, argument) in enumerate(self._steps()):
            if kind in FITTED and f"{i}.mean" not in getattr(self, "stats_", {}):
                raise RuntimeError(f"post step {kind} must be fitted before extracting")
            features = self._apply(i, kind, argument, features)
        return features.astype(np.float32)
