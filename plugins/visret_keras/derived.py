"""Graphs derived on this machine: a CNN extractor's ONNX graph, cached by what it was derived from.

What an index or a saved pipeline brings is data, never code: it records which network it was built
with (the extractor's config, the weights' SHA-256 where they are files) and the features that network
gave on a seeded probe batch, never a graph to execute. The graph ONNX Runtime runs is exported here,
from the extractor's config and the weights installed here, and kept in the user's cache folder under
a key of everything it was derived from; the next index or query of the same network loads it in a
fraction of a second and never starts TensorFlow. A forged index can therefore not make ONNX Runtime
read a file, loop or allocate: at worst it names a network whose features differ from its probe,
and then it is refused.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
from pathlib import Path
from typing import Any

from visret import VisretError
from visret_keras import exported

#: Bumped whenever the export changes what a graph computes or how it is built.
EXPORT_VERSION = 1


def cache_folder() -> Path:
    """``$VISRET_CACHE/graphs``, else ``$XDG_CACHE_HOME/visret/graphs``, else ``~/.cache/visret/graphs``."""
    root = os.environ.get("VISRET_CACHE")
    if root:
        if not Path(root).expanduser().is_absolute():  # relative, it would follow the working directory into any folder
            raise VisretError(f"VISRET_CACHE must be an absolute path, got {root!r}")
        return Path(root).expanduser() / "graphs"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "visret" / "graphs"


def sha256_file(path: Path) -> str:
    """The SHA-256 of a weights or model file, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def key(config: dict[str, Any], weights_sha256: str | None) -> str:
    """The SHA-256 of everything a graph is derived from: the extractor's config, the SHA-256 of a
    weights file it reads (where the config does not record one), the export's version and opset, and the
    versions of Keras and tf2onnx."""
    recipe = {"config": config, "weights_sha256": weights_sha256, "export": EXPORT_VERSION, "opset": exported.OPSET,
              "builders": _versions(("keras", "tf2onnx"))}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()


@functools.cache
def _versions(distributions: tuple[str, ...]) -> dict[str, str | None]:
    """The installed versions of what builds and converts a graph (Keras' own ImageNet weights come with Keras)."""
    found = {}
    for name in distributions:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _path(graph_key: str) -> Path:
    if len(graph_key) != 64 or any(c not in "0123456789abcdef" for c in graph_key):
        raise ValueError(f"not a graph key: {graph_key!r}")
    return cache_folder() / f"{graph_key}.onnx"


def load(graph_key: str) -> bytes | None:
    """The cached graph of ``graph_key``, or ``None`` when this machine has not derived it yet."""
    try:
        return _path(graph_key).read_bytes()
    except OSError:
        return None


def store(graph_key: str, data: bytes) -> None:
    """Keep a graph derived here; a cache that cannot be written only costs the next run an export."""
    path = _path(graph_key)
    temporary = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_bytes(data)
        os.replace(temporary, path)  # atomic: processes deriving the same graph at once agree
    except OSError:
        temporary.unlink(missing_ok=True)


def forget(graph_key: str) -> None:
    """Drop a cached graph that no longer loads (a damaged cache file): it is derived again."""
    _path(graph_key).unlink(missing_ok=True)
