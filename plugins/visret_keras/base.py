"""What every Keras-backed extractor shares: a lazily built feature model, batched inference, and
the same network exported for the light runtime (``visret_keras.exported``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from visret import FeatureExtractor, InputSpec, VisretError
from visret_keras import derived, exported, runtime


class KerasExtractor(FeatureExtractor):
    """A feature model from ``build_model`` run on batches; subclasses say how to build it.

    The model (``model_``) is built on first use, so listing and validating extractors never
    imports TensorFlow. Images are passed as float32 in the 0-255 range through
    ``preprocess`` (identity unless the family needs its own scaling).

    The network runs as an ONNX graph exported on this machine and cached (``visret_keras.derived``)
    once its state has been taken or given, or as soon as this machine has derived it before. Its
    state (``get_state``) records which network it is and the features it gives on a seeded probe
    batch, never the graph: an extractor given a state (``set_state``) derives or loads its own
    graph and refuses to run if that graph's probe features are not the recorded ones.
    """

    parallel: ClassVar[bool] = False  # the runtime uses every core itself; threads decode the next batches meanwhile
    normalize: bool = False

    def build_model(self):
        """Return a Keras model mapping a batch of images to ``(n, dim)`` features."""
        raise NotImplementedError

    def preprocess(self, batch: np.ndarray) -> np.ndarray:
        return batch

    def preprocessing_layers(self) -> list:
        """``preprocess`` as Keras layers, put inside a classifier trained on this network."""
        return []

    def feature_norm(self) -> str:
        """The normalisation ``extract`` applies to the network's output (``visret.features.normalization``)."""
        return "l2" if self.normalize else "none"

    def shipped_weights_sha256(self) -> str | None:
        """The SHA-256 of the ImageNet weights a package ships for this network (no download), else None."""
        return None

    def check_shipped_weights(self) -> None:
        """A config that records other shipped weights than the installed ones is refused (``validate``)."""
        recorded = getattr(self, "weights_sha256", None)
        if recorded is not None and getattr(self, "weights", None) == "imagenet" and recorded != self.shipped_weights_sha256():
            raise ValueError(f"the installed ImageNet weights of {self.name} differ from the ones this was built with (SHA-256)")

    def get_config(self) -> dict[str, Any]:
        """What an index records; with shipped ImageNet weights, their SHA-256 too (checked on reopening)."""
        config = super().get_config()
        params = config["params"]
        if getattr(self, "weights", None) == "imagenet" and "weights_sha256" in params and params["weights_sha256"] is None:
            params["weights_sha256"] = self.shipped_weights_sha256()
        return config

    def weights_file(self) -> Path | None:
        """A weights file the network is built from whose SHA-256 the config does not record: its
        content is part of the key the derived graph is cached under."""
        return None

    @property
    def model(self):
        if getattr(self, "model_", None) is None:
            try:
                self.model_ = self.build_model()
            except ValueError as exc:  # e.g. a layer that does not exist, an input too small
                raise VisretError(f"{self.name}: {str(exc).splitlines()[0]}") from None
            self.forward_ = runtime.compiled_forward(self.model_)
        return self.model_

    # ---- the graph derived on this machine ------------------------------------------------------
    def graph_key(self) -> str:
        """What the graph is cached under: this config, its weights, the export (``derived.key``)."""
        if getattr(self, "key_", None) is None:
            file = self.weights_file()
            self.key_ = derived.key(self.get_config(), derived.sha256_file(file) if file is not None else None)
        return self.key_

    def _graph(self, derive: bool) -> bytes | None:
        """The exported network: derived in this process, else from this machine's cache, else (when
        ``derive``) exported now and cached. ``None`` while Keras runs it."""
        if "onnx_" in self.__dict__:
            return self.onnx_
        if not exported.runtime_installed(self.name):
            self.onnx_ = None
            return None
        data = derived.load(self.graph_key())
        if data is None:
            if not derive:
                return None
            data = exported.export(self.model, self.preprocessing_layers(), self.name)
            if data is not None:
                derived.store(self.graph_key(), data)
        self.onnx_ = data
        return data

    @property
    def session(self):
        """The ONNX Runtime session on the derived network, or ``None`` when Keras runs it (not derived
        yet, ``VISRET_RUNTIME=keras``, or no export: said once, in one line)."""
        if getattr(self, "session_", None) is None and exported.wanted():
            data = self._graph(derive="recorded_" in self.__dict__)
            runner = exported.session(data, self.name, quiet=True) if data is not None else None
            if data is not None and runner is None:  # exports load (export checks it): a damaged cache file
                derived.forget(self.graph_key())
                self.__dict__.pop("onnx_")
                data = self._graph(derive=True)
                runner = exported.session(data, self.name) if data is not None else None
            if data is not None:
                self.session_ = runner or False
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

    def _network(self, batch: np.ndarray) -> np.ndarray:
        """The network's own output (before any normalisation), by whichever runtime runs it."""
        session = self.session
        if session is not None:
            return exported.run(session, batch)
        self.model  # noqa: B018 - builds the model and its compiled forward pass
        return runtime.run(self.forward_, self.preprocess(batch.astype(np.float32, copy=False)))

    def _check_recorded(self) -> None:
        """Refuse to run a network whose probe features are not the ones the index recorded."""
        recorded = self.__dict__.get("recorded_") or {}
        if "probe" not in recorded or self.__dict__.get("checked_"):
            return
        apart = exported.difference(self._network(exported.probe_batch(self._input_shape())), recorded["probe"])
        if not apart <= RECORD_TOLERANCE:
            raise VisretError(f"{self.name} as installed here gives other features than the network this was built with "
                              f"(probe differs by {apart:.1e}): rebuild it, or install the weights it was built with")
        self.checked_ = True

    def extract(self, images):
        batch = np.stack(images)  # 0-255, as decoded: converted to float a chunk at a time where it runs
        if batch.ndim == 3:
            batch = batch[..., None]
        expected = self._input_shape()
        if len(expected) != batch.ndim - 1 or any(e not in (None, g) for e, g in zip(expected, batch.shape[1:])):
            raise VisretError(f"{self.name} extracts from {'x'.join(map(str, expected))} arrays (its input_spec), "
                              f"got {'x'.join(map(str, batch.shape[1:]))}: visret.embed_images decodes and resizes any image")
        self._check_recorded()
        features = self._network(batch)
        if self.normalize:
            norms = np.linalg.norm(features, axis=1, keepdims=True)
            features = features / np.maximum(norms, 1e-12)
        return features

    def get_state(self) -> dict[str, np.ndarray]:
        """Which network this is (its graph key) and its features on the probe batch; the graph is
        derived (exported and cached on this machine) on the first call."""
        if exported.wanted():
            self._graph(derive=True)
            if self.__dict__.get("session_") is False:  # Keras ran it before the graph was derived: the graph runs now
                del self.__dict__["session_"]
        recorded = self.__dict__.get("recorded_") or {}
        if "probe" in recorded:
            self._check_recorded()
            probe = recorded["probe"]
        else:
            if getattr(self, "probe_", None) is None:
                self.probe_ = self._network(exported.probe_batch(self._input_shape()))
            probe = self.probe_
        return {GRAPH_KEY: np.frombuffer(bytes.fromhex(self.graph_key()), np.uint8), PROBE_KEY: probe}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Take what ``get_state`` recorded; a graph the state may carry (older indexes) is never run."""
        for cached in ("session_", "onnx_", "probe_", "checked_"):
            self.__dict__.pop(cached, None)
        recorded: dict[str, Any] = {}
        if PROBE_KEY in state:
            probe = np.asarray(state[PROBE_KEY])
            if probe.ndim != 2 or probe.shape[0] != 2 or not np.issubdtype(probe.dtype, np.floating) or not np.isfinite(probe).all():
                raise VisretError(f"{self.name}: the recorded probe features are not two finite rows")
            recorded["probe"] = probe.astype(np.float32)
        self.recorded_ = recorded

    def __getstate__(self):
        """Pickle parameters, the record and the graph derived here; models and sessions are rebuilt where used."""
        return {k: v for k, v in self.__dict__.items() if k not in ("model_", "forward_", "session_")}


#: State keys: the derived graph's key (32 bytes) and the network's features on the probe batch.
GRAPH_KEY, PROBE_KEY = "graph", "probe"
#: How far (row-relative) a network run here may be from the recorded probe features: runtimes and
#: processors differ by about 1e-6, another network or other weights by far more.
RECORD_TOLERANCE = 1e-3
