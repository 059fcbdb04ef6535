"""The built-in dataset loaders, registered through the same hook as third-party ones."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from visret.images._folders import ImageRecord, scan_folder
from visret.plugins.hookspecs import hookimpl
from visret.images._lists import is_image_list, read_image_list
from visret.images.loaders import DatasetLoader


class FolderLoader(DatasetLoader):
    """A folder: sub-folders are class labels (ImageFolder layout); images directly in it are unlabelled."""

    name: ClassVar[str] = "folder"

    @classmethod
    def recognises(cls, source: str) -> bool:
        return Path(source).expanduser().is_dir()

    def records(self, source: str) -> list[ImageRecord]:
        return scan_folder(source)


class ListLoader(DatasetLoader):
    """A ``.csv`` or ``.parquet`` table with a ``path`` and an optional ``label`` column."""

    name: ClassVar[str] = "list"

    @classmethod
    def recognises(cls, source: str) -> bool:
        return is_image_list(source)

    def records(self, source: str) -> list[ImageRecord]:
        return read_image_list(source)


@hookimpl
def register_dataset_loaders(register):
    register(FolderLoader)
    register(ListLoader)
