"""Decoding at once, bounded by pixels rather than by requests: small images pass side by side, a
huge one waits until it can decode alone, so memory follows ``total`` (or one image), not the
number of clients."""

from __future__ import annotations

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
