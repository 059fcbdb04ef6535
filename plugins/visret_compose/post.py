"""``post``: post-processing of any extractor's features, fitted on the indexed data where it learns.

Steps, applied in order: ``l1``, ``l2`` (normalise rows), ``sqrt`` (signed square root; after
``l1`` this is the Hellinger / RootSIFT mapping), ``power:A`` (signed power), ``standardize``
(zero mean, unit variance per dimension), ``pca:N`` and ``pca-whiten:N`` (projection on the N
leading components, whitened or not), and two steps learned from the indexed images' labels:
``lda[:S]`` (linear discriminant analysis with shrinkage S, default 0.1: at most classes - 1
dimensions) and ``learned-whiten[:N]`` (whitening by the within-class covariance, then the N
leading directions of the whitened data; Radenovic et al. 2018). Learned statistics are saved
with the index; supervised steps are refitted without the queries whenever visret evaluates.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from visret import FeatureExtractor, InputSpec
from visret.features.normalization import rows_l1, rows_l2, signed_power
from visret.features.params import check_positive_int
from visret.embedding import embed_images
from visret.features import checked_features, extractor_from_spec

PROJECTIONS = ("pca", "pca-whiten", "lda", "learned-whiten")
FITTED = ("standardize", *PROJECTIONS)
SUPERVISED = ("lda", "learned-whiten")
STEPS = "l1, l2, sqrt, power:A, standardize, pca:N, pca-whiten:N, lda[:SHRINKAGE], learned-whiten[:N]"
#: Shrinkage of the within-class covariance, towards a multiple of the identity (supervised steps).
DEFAULT_SHRINKAGE = 0.1


def parse_step(step: str) -> tuple[str, float | None]:
    """``"pca:64"`` -> ``("pca", 64)``; ``"lda"`` -> ``("lda", 0.1)``; ``"l2"`` -> ``("l2", None)``."""
    if not isinstance(step, str):
        raise ValueError(f"a step must be a string, got {step!r}")
    kind, _, argument = step.partition(":")
    if kind in ("l1", "l2", "sqrt", "standardize") and not argument:
        return kind, None
    try:
        if kind == "power" and argument:
            return kind, float(argument)
        if kind == "lda":
            shrinkage = float(argument) if argument else DEFAULT_SHRINKAGE
            if 0 <= shrinkage <= 1:
                return kind, shrinkage
        if kind == "learned-whiten" and not argument:
            return kind, None
    except ValueError:
        pass
    if kind in ("pca", "pca-whiten", "learned-whiten") and argument.isdigit() and int(argument) > 0:
        return kind, int(argument)
    raise ValueError(f"unknown step {step!r} (steps: {STEPS})")


def _inverse_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    values = np.maximum(values, 1e-9 * values.max())
    return (vectors / np.sqrt(values)) @ vectors.T


def _lda(features: np.ndarray, labels: np.ndarray, shrinkage: float) -> tuple[np.ndarray, np.ndarray]:
    """Shrinkage LDA (scikit-learn's eigen solver): ``(mean, projection)`` with projection ``(m, d)``."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage=shrinkage).fit(features, labels)
    kept = min(len(lda.classes_) - 1, features.shape[1])
    return np.zeros(features.shape[1]), lda.scalings_[:, :kept].T


def _learned_whitening(features: np.ndarray, labels: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Whitening by the shrunk within-class covariance, then the leading directions of the whitened
    total covariance: ``(mean, projection)`` with projection ``(n, d)``."""
    mean = features.mean(axis=0)
    centred = features - mean
    classes, inverse = np.unique(labels, return_inverse=True)
    class_means = np.stack([centred[inverse == c].mean(axis=0) for c in range(len(classes))])
    within = centred - class_means[inverse]
    d = features.shape[1]
    scatter = within.T @ within / max(len(features) - len(classes), 1)
    scatter = (1 - DEFAULT_SHRINKAGE) * scatter + DEFAULT_SHRINKAGE * np.trace(scatter) / d * np.eye(d)
    whiten = _inverse_sqrt(scatter)
    total = whiten @ (centred.T @ centred / max(len(features) - 1, 1)) @ whiten
    values, vectors = np.linalg.eigh(total)
    leading = vectors[:, np.argsort(values)[::-1][: n or d]]
    return mean, (whiten @ leading).T


class Postprocess(FeatureExtractor):
    """Another extractor's features, post-processed by ``steps`` (normalisation, power, standardisation, PCA, LDA)."""

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
    def supervised(self) -> bool:
        return self.base.supervised or any(kind in SUPERVISED for kind, _ in self._steps())

    @property
    def parallel(self) -> bool:
        return self.base.parallel

    @property
    def input_spec(self) -> InputSpec:
        return self.base.input_spec

    @property
    def dim(self) -> int:
        """The output length; after a supervised step it is known once fitted (at most the input's)."""
        dim, stats = self.base.dim, getattr(self, "stats_", {})
        for i, (kind, argument) in enumerate(self._steps()):
            if f"{i}.components" in stats:
                dim = len(stats[f"{i}.components"])
            elif kind in ("pca", "pca-whiten") or (kind == "learned-whiten" and argument):
                dim = min(int(argument), dim)
        return dim

    def fit_sample_size(self) -> int | None:
        return self.fit_images

    def fit(self, images, labels=None) -> Postprocess:
        if self.base.requires_fit:
            self.base.fit(images, labels)
        return self.fit_features(embed_images(images, self.base, what="fitting image").astype(np.float64), labels)

    def fit_features(self, features: np.ndarray, labels=None) -> Postprocess:
        """Fit the steps on the base extractor's features (already extracted)."""
        features = np.asarray(features, dtype=np.float64)
        self.stats_ = {}
        for i, (kind, argument) in enumerate(self._steps()):
            if kind in SUPERVISED and labels is None:
                raise ValueError(f"step {kind} learns from labels: index a labelled folder (one sub-folder per class)")
            if kind in SUPERVISED and len(set(labels)) < 2:
                raise ValueError(f"step {kind} needs at least two classes")
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
            elif kind in SUPERVISED:
                labels = np.asarray(labels, dtype=str)
                mean, projection = _lda(features, labels, argument) if kind == "lda" else _learned_whitening(features, labels, argument)
                self.stats_[f"{i}.mean"], self.stats_[f"{i}.components"] = mean, projection
                self.stats_[f"{i}.scale"] = np.ones(len(projection))
            features = self._apply(i, kind, argument, features)
        return self

    def _apply(self, i: int, kind: str, argument, features: np.ndarray) -> np.ndarray:
        if kind == "l1":
            return rows_l1(features)
        if kind == "l2":
            return rows_l2(features)
        if kind in ("sqrt", "power"):
            return signed_power(features, 0.5 if kind == "sqrt" else argument)
        if kind == "standardize":
            return (features - self.stats_[f"{i}.mean"]) * self.stats_[f"{i}.scale"]
        return (features - self.stats_[f"{i}.mean"]) @ self.stats_[f"{i}.components"].T * self.stats_[f"{i}.scale"]

    def transform_features(self, features: np.ndarray) -> np.ndarray:
        """The fitted steps applied to the base extractor's features."""
        features = np.asarray(features, dtype=np.float64)
        for i, (kind, argument) in enumerate(self._steps()):
            if kind in FITTED and f"{i}.mean" not in getattr(self, "stats_", {}):
                raise RuntimeError(f"post step {kind} must be fitted before extracting")
            features = self._apply(i, kind, argument, features)
        return features.astype(np.float32)

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
        return self.transform_features(checked_features(self.base, self.base.extract(images), len(images)))
