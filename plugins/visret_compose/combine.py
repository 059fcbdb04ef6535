"""``combine``: several extractors side by side, each block normalised and weighted.

Weights are given, or ``auto`` (the default): on a labelled collection each block is weighted by
its own mAP on a validation split of the images it is fitted on, raised to the 4th power, so a
weak block cannot drown a strong one; without labels the blocks weigh the same. Measured on the
shared datasets, ``color-hist,lbp,hog`` with ``auto`` matches or beats its best part on all five,
where equal weights lose up to 0.28 mAP to it (docs/benchmarks.md); ``gist`` joined the default parts
when it lifted a trained SVM on Oxford 17 Flowers and retrieval held (COIL-20 +0.019, UMIST +0.004,
COIL-100 unchanged). A classification head is trained on equal weights instead (``for_trained_head``):
on flowers an SVM on the four blocks reaches 0.709 held out (mean of three splits) with equal weights,
0.627 with ``auto``.
"""

from __future__ import annotations

import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np

from visret import FeatureExtractor, InputSpec
from visret.embedding import embed_images
from visret.images import as_array
from visret.features.normalization import normalize, parse_norm
from visret.features.params import check_image_size, check_positive_int
from visret.features import checked_features, extractor_from_spec

class Combine(FeatureExtractor):
    """Concatenate the features of several extractors, each block normalised then weighted.

    ``parts``: extractor names, or ``{"name": ..., "params": {...}}`` objects. Images are decoded
    once as RGB at ``size`` x ``size`` and converted for each part.
    """

    name: ClassVar[str] = "combine"

    def __init__(self, parts=("color-hist", "lbp", "hog", "gist"), weights="auto", normalize: str = "l2", size: int = 256, fit_images: int = 2000):
        self.parts = parts
        self.weights = weights
        self.normalize = normalize
        self.size = size
        self.fit_images = fit_images

    def validate(self) -> None:
        if not isinstance(self.parts, (list, tuple)) or not self.parts:
            raise ValueError(f"parts must be a non-empty list of extractors, got {self.parts!r}")
        parse_norm(self.normalize)
        check_image_size(self.size)
        check_positive_int("fit_images", self.fit_images, minimum=2)
        if self.weights == "auto":
            self.extractors  # noqa: B018 - creates (and so checks) every part
            return
        weights = self.block_weights()
        if any(isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0 for w in weights):
            raise ValueError(f"weights must be non-negative numbers, got {self.weights!r}")
        if len(weights) != len(self.parts):
            raise ValueError(f"{len(self.parts)} parts but {len(weights)} weights")
        self.extractors  # noqa: B018 - creates (and so checks) every part

    def get_config(self) -> dict[str, Any]:
        """Each part as its own full config, so that what a part records (the SHA-256 of a network's
        weights, a model file's) is checked when an index or pipeline built with it is reopened."""
        config = super().get_config()
        config["params"]["parts"] = [part.get_config() for part in self.extractors]
        return config

    def for_trained_head(self) -> Combine:
        """Equal block weights in place of ``auto``: a head learns how much each block counts."""
        if self.weights != "auto":
            return self
        return type(self)(**{**self.get_params(deep=False), "weights": None})

    def block_weights(self) -> list[Any]:
        if self.weights == "auto":
            return list(getattr(self, "weights_", [1.0] * len(self.parts)))
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
        return self.weights == "auto" or any(part.requires_fit for part in self.extractors)

    @property
    def supervised(self) -> bool:
        """Learns from labels when it has them (``auto`` weights; labelled parts)."""
        return self.weights == "auto" or any(part.supervised for part in self.extractors)

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
        sizes += [self.fit_images] if self.weights == "auto" else []
        return None if not sizes or None in sizes else max(sizes)

    def fit(self, images, labels=None) -> Combine:
        for part in self.extractors:
            if part.requires_fit:
                part.fit([as_array(image, part.input_spec) for image in images], labels)
        if self.weights == "auto":
            self.weights_ = self._validation_weights(images, labels)
        return self

    def _validation_weights(self, images, labels) -> np.ndarray:
        """Each block's mAP ^ 4 on a seeded validation split of ``images`` (equal without labels)."""
        from visret.evaluation import evaluate_features, stratified_test_mask

        equal = np.ones(len(self.parts))
        if labels is None or len(set(labels)) < 2:
            return equal
        labels = np.asarray(labels, dtype=str)
        queries = stratified_test_mask(labels, 0.25, seed=0)
        if not queries.any() or queries.all():
            return equal
        scores = []
        for part in self.extractors:
            features = normalize(embed_images(images, part, what="fitting image"), self.normalize)
            report = evaluate_features(features[~queries], labels[~queries], features[queries], labels[queries], k=1, at=(1,))
            scores.append(report.map)
        scores = np.asarray(scores) ** 4
        return scores / scores.max() if scores.max() > 0 else equal

    def get_state(self) -> dict[str, np.ndarray]:
        state = {f"{i}.{key}": value for i, part in enumerate(self.extractors) for key, value in part.get_state().items()}
        if self.weights == "auto" and hasattr(self, "weights_"):
            state["weights"] = np.asarray(self.weights_, dtype=np.float64)
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        if "weights" in state:
            self.weights_ = np.asarray(state["weights"], dtype=np.float64)
        for i, part in enumerate(self.extractors):
            prefix = f"{i}."
            own = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
            if own:
                part.set_state(own)

    def _block(self, part: FeatureExtractor, weight, images) -> np.ndarray:
        converted = [as_array(image, part.input_spec) for image in images]
        features = checked_features(part, part.extract(converted), len(converted))
        return normalize(features, self.normalize) * weight

    def extract(self, images):
        jobs = list(zip(self.extractors, self.block_weights()))
        nested = threading.current_thread().name.startswith(SIDE_BY_SIDE)  # a combine inside a combine: never wait on our own pool
        if self.parallel or len(jobs) == 1 or nested:  # in a worker process of its own core: one block after another
            blocks = [self._block(part, weight, images) for part, weight in jobs]
        else:  # a network part waits on its runtime's threads: the other blocks are computed meanwhile
            blocks = list(_side_by_side().map(lambda job: self._block(*job, images), jobs))
        return np.concatenate(blocks, axis=1).astype(np.float32)


SIDE_BY_SIDE = "visret-combine"


@functools.cache
def _side_by_side() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(4, thread_name_prefix=SIDE_BY_SIDE)
