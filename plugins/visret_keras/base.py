"""What every Keras-backed extractor shares: a lazily built feature model, batched inference, and
the same network exported for the light runtime (``visret_keras.exported``)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from visret import FeatureExtractor, InputSpec, VisretError
from visret_keras import exported, runtime


class KerasExtractor(FeatureExtractor):
    """A feature model from ``build_model`` run on batches; subclasses say how to build it.

    The model (``model_``) is built on first use, so listing and validating extractors never
    imports TensorFlow. Images are passed as float32 in the 0-255 range through
    ``preprocess`` (identity unless the family needs its own scaling).

    Its state (``get_state``) is the network exported to ONNX (``onnx_``), preprocessing
    included: an index stores it, and an extractor given it back (``set_state``) runs it with
    ONNX Runtime and never starts TensorFlow.
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
    def session(self):
        """The ONNX Runtime session on the exported network, or ``None`` when Keras runs it (no
        export given, ``VISRET_RUNTIME=keras``, or the runtime missing: said once, in one line)."""
        if getattr(self, "session_", None) is None and getattr(self, "onnx_", None) is not None and exported.wanted():
            self.session_ = exported.session(self.onnx_, self.name) or False
        return getattr(self, "session_", None) or None

    def _input_shape(self) -> tuple:
        session = self.session
        return exported.input_shape(session) if session is not None else tuple(self.model.input_shape[1:])

    @property
    def input_spec(self) -> InputSpec:
        height, width, channels = self._input_shape()
        return InputSpec(mode="L" if channels == 1 else "RGB", size=(height, width))

    @property
    def dim(self) -> int:
        session = self.session
        return exported.output_dim(session) if session is not None else int(self.model.output_shape[-1])

    def extract(self, images):
        batch = np.stack(images).astype(np.float32)
        if batch.ndim == 3:
            batch = batch[..., None]
        expected = self._input_shape()
        if len(expected) != batch.ndim - 1 or any(e not in (None, g) for e, g in zip(expected, batch.shape[1:])):
            raise VisretError(f"{self.name} extracts from {'x'.join(map(str, expected))} arrays (its input_spec), "
                              f"got {'x'.join(map(str, batch.shape[1:]))}: visret.embed_images decodes and resizes any image")
        session = self.session
        if session is not None:
            features = exported.run(session, batch)
        else:
            self.model  # noqa: B018 - builds the model and its compiled forward pass
            features = runtime.run(self.forward_, self.preprocess(batch))
        if self.normalize:
            norms = np.linalg.norm(features, axis=1, keepdims=True)
            features = features / np.maximum(norms, 1e-12)
        return features

    def get_state(self) -> dict[str, np.ndarray]:
        """The network exported to ONNX (exported on first call; nothing where it cannot be)."""
        if not hasattr(self, "onnx_"):
            self.onnx_ = exported.export(self.model, self.preprocessing_layers(), self.name)
            self.session_ = None
        return {} if self.onnx_ is None else {exported.STATE_KEY: np.frombuffer(self.onnx_, np.uint8)}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.session_ = None
        if exported.STATE_KEY in state:
            self.onnx_ = np.asarray(state[exported.STATE_KEY], np.uint8).tobytes()
        else:  # saved without an export (an older index): exported when its state is next taken
            self.__dict__.pop("onnx_", None)

    def __getstate__(self):
        """Pickle parameters and the exported network; models and sessions are rebuilt where used."""
        return {k: v for k, v in self.__dict__.items() if k not in ("model_", "forward_", "session_")}
