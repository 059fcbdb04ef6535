"""TensorFlow/Keras set-up, imported only when a CNN extractor is used.

Quiet logs, GPU memory growth, a compiled forward pass, and a one-line message when ImageNet
weights cannot be downloaded.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
from pathlib import Path

import numpy as np

from visret import VisretError


@contextlib.contextmanager
def native_stderr_silenced():
    """Hide what TensorFlow's C++ start-up prints straight to file descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def first_line(exc: BaseException) -> str:
    """An exception's message as one line (its type's name when it has none): what TensorFlow,
    Keras and the converters raise is often pages long."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@functools.cache
def tensorflow():
    """Import TensorFlow once, quietly, with memory growth on every GPU it sees."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr_silenced():
        import tensorflow as tf

        tf.constant(0.0) + 1.0  # the first op prints CPU-feature notices too

    tf.get_logger().setLevel("ERROR")  # e.g. retracing notices when many models are built
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised by the caller: leave their choice
            pass
    return tf


def keras():
    tensorflow()
    import keras

    return keras


def load_model(path: Path):
    """A saved ``.keras`` model, loaded in safe mode (no code from the file runs), uncompiled."""
    from visret_keras.feature_norm import signed_power_layer

    signed_power_layer()  # registered: classifiers trained on a network's normalised features carry it
    try:
        return keras().saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for unsafe or damaged files
        raise VisretError(f"cannot load {path} in safe mode: {first_line(exc)}") from None


def compiled_forward(model):
    """``model(x, training=False)`` as a traced graph over any batch size."""
    tf = tensorflow()
    shape = [None, *model.input_shape[1:]]
    spec = tf.TensorSpec(shape, tf.float32)
    return tf.function(lambda x: model(x, training=False), input_signature=[spec])


def run(forward, batch: np.ndarray) -> np.ndarray:
    return forward(batch).numpy().astype(np.float32, copy=False)


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def download_error(label: str, exc: Exception) -> VisretError:
    """Turn Keras' download failure into one line saying which file to put where."""
    message = first_line(exc)
    match = re.search(r"(https?://\S+?)(?::|\s|$)", message)
    name = match.group(1).rsplit("/", 1)[-1] if match else "the weights file"
    return VisretError(
        f"cannot download ImageNet weights for {label} (offline?): put {name} in {keras_cache_dir()}/ "
        f"or pass weights=PATH to a local weights file"
    )


def check_weights(weights) -> None:
    """``imagenet``, ``none`` or the path of an existing weights file."""
    if weights in ("imagenet", "none", None):
        return
    if not isinstance(weights, str) or not Path(weights).expanduser().is_file():
        raise ValueError(f"weights must be 'imagenet', 'none' or an existing weights file, got {weights!r}")
