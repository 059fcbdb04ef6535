"""Index backends: the approximate-search structure kept beside an index's shards.

A Flat index is searched exactly, straight from its shards; any other ``--factory`` names a
structure built from the shards by a backend, saved as the generation's ``vectors`` file, kept up
to date by ``add``/``remove``/``sync``. FAISS is the built-in backend and takes every factory
string it knows; a plugin adds backends with the hook ``register_index_backends``, chosen by a
``NAME:`` prefix of the factory string (``--factory mine:SPEC``).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from visret.errors import VisretError
from visret.index.distances import Distance
from visret.plugins._registry import ExtensionPoint

#: The backend of factory strings without a ``NAME:`` prefix, and of indexes that record none.
DEFAULT_BACKEND = "faiss"


class SearchStructure:
    """A built structure: searches, takes new vectors, forgets removed ones, saves itself."""

    #: Vectors held (removed ones it could not forget included) and their length.
    ntotal: int
    d: int

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(distances in the metric's raw form, ids)``, ``(len(queries), k)``; id ``-1`` pads."""
        raise NotImplementedError

    def add(self, shards: Sequence[np.ndarray | Path], ids: np.ndarray) -> None:
        raise NotImplementedError

    def remove(self, ids: np.ndarray) -> bool:
        """Forget these ids; return False when the structure cannot (they become tombstones)."""
        return False

    def write(self, path: Path) -> None:
        raise NotImplementedError

    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Query-time knobs; structures without them ignore them."""

    def search_knobs(self) -> dict[str, int]:
        """The query-time knobs this structure has (``nprobe``, ``ef_search``) and the largest value that
        still changes an answer: what a build tunes for recall (``visret.index._search_params``)."""
        return {}

    #: Whether it keeps every vector as a code smaller than its float32 form, decodes codes back
    #: (``reconstruct``) and forgets removed ids: an index can then keep its vectors only here, as
    #: codes, with no shards beside them (``keep_vectors``).
    holds_codes: bool = False

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The vectors of these ids decoded from its codes, ``(len(ids), d)`` float32 (``holds_codes`` only)."""
        raise NotImplementedError


class IndexBackend:
    """Builds and reads one kind of ``SearchStructure``."""

    name: ClassVar[str] = ""

    def check(self, spec: str, vector_dim: int, distance: Distance, n_vectors: int) -> None:
        """Refuse a spec it cannot build, in one line (``VisretError``), before any image is embedded."""

    def build(self, spec: str, vector_dim: int, distance: Distance, shards: Sequence[np.ndarray | Path], ids: np.ndarray) -> SearchStructure:
        """The structure over the shards (arrays or ``.npy`` files, read one at a time), ``ids`` row by row."""
        raise NotImplementedError

    def read(self, path: Path, distance: Distance, mmap: bool = False) -> SearchStructure:
        raise NotImplementedError


BACKENDS = ExtensionPoint("index backend", "register_index_backends", IndexBackend, ("build", "read"), table="backends")


def backend_for(factory: str) -> tuple[IndexBackend, str]:
    """The backend a factory string names and the spec it is given: ``NAME:SPEC`` or, without a
    registered prefix, FAISS with the whole string."""
    backends = BACKENDS.classes()
    prefix, colon, spec = factory.partition(":")
    if colon and prefix in backends:
        return backends[prefix][0](), spec
    if DEFAULT_BACKEND not in backends:
        raise VisretError(f"no index backend for {factory!r} (backends: {', '.join(sorted(backends)) or 'none'})")
    return backends[DEFAULT_BACKEND][0](), factory


def backend_named(name: str) -> IndexBackend:
    backends = BACKENDS.classes()
    if name not in backends:
        raise VisretError(f"index backend {name!r} is not installed (backends: {', '.join(sorted(backends)) or 'none'}); install its plugin")
    return backends[name][0]()
