"""What every Keras-backed extractor shares: a lazily built feature model, batched inference."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from visret import FeatureExtractor, InputSpec, VisretError
from visret_keras import runtime


class KerasExtractor(FeatureExtractor):
    """A feature model from ``build_model`` run on batches; subclasses say how to build it.

    The model (``model_``) is built on first use, so listing and validating extractors never
    imports TensorFlow. Images are passed as float32 in the 0-255 range through
    ``preprocess`` (identity unless the family needs its own scaling).
    """

    parallel: ClassVar[bool] = False  # TensorFlow uses every core itself; decoding overlaps in workers
    normalize: bool = False

    def build_model(self):
        """Return a Keras model mapping a batch of images to ``(n, dim)`` features."""
        raise NotImplementedError

    def preprocess(self, batch: np.ndarray) -> np.ndarray:
        return batch

    def preprocessing_layers(self) -> list:
        """``preprocess`` as Keras layers, put inside a classifier trained on this network."""
        return []

    @property
    def model(self):
        if getattr(self, "model_", None) is None:
            try:
                self.model_ = self.build_model()
            except ValueError as exc:  # e.g. a layer that does not exist, an input too small
                raise VisretError(f"{self.name}: {str(exc).splitlines()[0]}") from None
            self.forward_ = runtime.compiled_forward(self.model_)
        return self.model_

    @property
    def input_spec(self) -> InputSpec:
        _, height, width, channels = self.model.input_shape
        return InputSpec(mode="L" if channels == 1 else "RGB", size=(height, width))

    @property
    def dim(self) -> int:
        return int(self.model.output_shape[-1])

    def extract(self, images):
        self.model  # noqa: B018 - builds the model and its compiled forward pass
        batch = np.stack(images).astype(np.float32)
        if batch.ndim == 3:
            batch = batch[..., None]
        expected = tuple(self.model.input_shape[1:])
        if len(expected) != batch.ndim - 1 or any(e not in (None, g) for e, g in zip(expected, batch.shape[1:])):
            raise VisretError(f"{self.name} extracts from {'x'.join(map(str, expected))} arrays (its input_spec), "
                              f"got {'x'.join(map(str, batch.shape[1:]))}: visret.embed_images decodes and resizes any image")
        features = runtime.run(self.forward_, self.preprocess(batch))
        if self.normalize:
            norms = np.linalg.norm(features, axis=1, keepdims=True)
            features = features / np.maximum(norms, 1e-12)
        return features

    def __getstate__(self):
        """Pickle parameters only; the model is rebuilt where it is used."""
        return {k: v for k, v in self.__dict__.items() if k not in ("model_", "forward_")}
