"""``visret.Index``: an opened index that can also be changed, following each new generation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from visret.features._extractor import FeatureExtractor
from visret.index._reader import IndexReader, default_index_path, open_reader

if TYPE_CHECKING:
    from visret.index._changes import Changes


class Index(IndexReader):
    """An opened index; create one with ``build_index`` or ``open_index``."""

    def __enter__(self) -> Index:
        return self

    # ---- changes: each one a new generation, after which this object follows it -----------------
    def add(self, *inputs: str | Path, **options: Any) -> Changes:
        """Embed and add what is new among folders, image lists and files (``visret.add_images``)."""
        from visret.index._changes import add_images  # a query never imports what changes an index

        return self._follow(add_images(inputs, self.path, **options))

    def remove(self, *paths: str | Path) -> Changes:
        """Remove the entries of files, or of every file under folders (``visret.remove_images``)."""
        from visret.index._changes import remove_images

        return self._follow(remove_images(paths, self.path))

    def _follow(self, changes: Changes) -> Changes:
        fresh = open_at(self.path, self.extractor)
        self.close()
        self.__dict__.update(fresh.__dict__)
        return changes


def open_index(path: str | Path | None = None, *, verify: bool = False) -> Index:
    """Open a saved index, checking its format, files and extractor (``verify``: checksum every file)."""
    return open_at(Path(path) if path is not None else default_index_path(), verify=verify)


def open_at(path: Path, extractor: FeatureExtractor | None = None, verify: bool = False) -> Index:
    """Open the index at ``path``; ``extractor``, when given, is the one that just wrote it."""
    return open_reader(path, extractor, verify, cls=Index)
