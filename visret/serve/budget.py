"""Decoding at once, bounded by pixels rather than by requests: small images pass side by side, a
huge one waits until it can decode alone, so memory follows ``total`` (or one image), not the
number of clients."""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import threading
from contextlib import contextmanager
from typing import Iterator

from PIL import Image


def pixels_of(data: bytes) -> int:
    """Width x height from an encoded image's header (nothing decoded); 1 when unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return max(image.width * image.height, 1)
    except Exception:  # noqa: BLE001 - an unreadable file costs nothing to refuse later
        return 1


#: glibc's ``mallopt`` parameter number for the size above which a block is its own memory map.
M_MMAP_THRESHOLD = -3
#: Blocks of at least this many bytes (decoded images, Pillow's 16 MB blocks) go back to the system when freed.
MMAP_THRESHOLD = 1 << 20


def return_large_blocks_to_the_system() -> None:
    """Have glibc map every block of 1 MiB or more on its own, so that freeing it gives it back.

    By default glibc raises that threshold to the size of the blocks it sees freed (up to 32 MiB) and
    then keeps such blocks in one heap per thread: a server whose threads decode one huge image each,
    one after another, ends up holding one image's memory per thread (``benchmarks/serve_memory.py``:
    12 clients of a 88 Mpx upload left 8.4 GB, 11x one client; with a fixed threshold, 1.0x)."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "mallopt"):  # glibc; other C libraries keep their own rules
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


class PixelBudget:
    def __init__(self, total: int):
        self.total = total
        self._free = total
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Wait until ``pixels`` (at most the whole budget) are free, and hold them."""
        need = min(max(int(pixels), 1), self.total)
        with self._changed:
            self._changed.wait_for(lambda: self._free >= need)
            self._free -= need
        try:
            yield
        finally:
            with self._changed:
                self._free += need
                self._changed.notify_all()
