"""The index a server answers from, following the one on disk.

Every request asks for the current index; when another process has committed a new generation
(``visret add``, ``remove``, ``sync``: the manifest is replaced atomically), the next request
opens it and later ones use it, while requests already running finish on the generation they
started with (a writer keeps the previous generation's files until its next write). Per-generation
results (the leave-one-out evaluation) are cached with the generation they belong to.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from visret.errors import VisretError
from visret.index._index import Index, open_index

#: Thumbnails kept in memory (about 10 KB each).
THUMBNAILS = 4096


class LiveIndex:
    """The current ``Index`` at ``path``, reopened when its manifest changes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._index: Index | None = None
        self._cache: dict[tuple[Any, str], Any] = {}
        self._computing: dict[str, threading.Lock] = {}
        self.thumbnails: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self.current()

    def _manifest_stamp(self) -> tuple[int, int, int]:
        try:
            info = os.stat(self.path / "manifest.json")
        except OSError:
            raise VisretError(f"the index at {self.path} is gone (deleted or moved while being served)") from None
        return info.st_ino, info.st_mtime_ns, info.st_size

    def current(self) -> Index:
        """The index as committed now (opened again only when a writer has committed since)."""
        stamp = self._manifest_stamp()
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    self._index = open_index(self.path)  # the old one stays valid for requests still using it
                    self._stamp = stamp
                    self._cache = {key: value for key, value in self._cache.items() if key[0] == stamp}
        return self._index

    def cached(self, name: str, compute: Callable[[Index], Any]) -> Any:
        """``compute(index)`` once per generation (requests arriving meanwhile wait for it)."""
        self.current()
        with self._lock:
            index, key = self._index, (self._stamp, name)
        with self._computing.setdefault(name, threading.Lock()):
            if key not in self._cache:
                self._cache[key] = compute(index)
            return self._cache[key]

    def thumbnail(self, key: tuple[str, int], make: Callable[[], bytes]) -> bytes:
        """A thumbnail by (content hash, size), made once and kept in a bounded cache."""
        with self._lock:
            if key in self.thumbnails:
                self.thumbnails.move_to_end(key)
                return self.thumbnails[key]
        data = make()
        with self._lock:
            self.thumbnails[key] = data
            while len(self.thumbnails) > THUMBNAILS:
                self.thumbnails.popitem(last=False)
        return data
