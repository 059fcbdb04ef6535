"""Where the images to index come from: dataset loaders, chosen by a source's prefix or file type.

``find_images(source)`` asks the registered loaders (hook ``register_dataset_loaders``) in turn:
``NAME:rest`` goes to the loader called NAME; otherwise the first loader whose ``recognises`` says
yes, third-party loaders before the built-in ``folder`` (ImageFolder layout) and ``list`` (a CSV or
Parquet of ``path,label``), as llm picks among its loaders.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from visret.errors import VisretError
from visret.images._folders import ImageRecord
from visret.plugins._registry import ExtensionPoint


class DatasetLoader:
    """Lists the images of a source as ``ImageRecord`` (path, label); files are read later, by the
    engine, with visret's own loader and limits."""

    #: The name a source may start with: ``NAME:rest``.
    name: ClassVar[str] = ""

    @classmethod
    def recognises(cls, source: str) -> bool:
        """Whether a source without a ``NAME:`` prefix is this loader's (a file type, a folder)."""
        return False

    def records(self, source: str) -> list[ImageRecord]:
        """The images of ``source`` (the prefix already removed), in a deterministic order."""
        raise NotImplementedError


LOADERS = ExtensionPoint("dataset loader", "register_dataset_loaders", DatasetLoader, ("records",), table="loaders")


def find_images(source: str | Path) -> list[ImageRecord]:
    """The images of ``source``: a folder, an image list, or anything a loader plugin reads."""
    loaders = LOADERS.classes()
    text = str(source)
    prefix, colon, rest = text.partition(":")
    if colon and prefix in loaders and not Path(text).exists():
        return loaders[prefix][0]().records(rest)
    builtin = [name for name, (_, owner) in loaders.items() if owner == "loaders"]
    for name in [n for n in loaders if n not in builtin] + builtin:
        if loaders[name][0].recognises(text):
            return loaders[name][0]().records(text)
    raise VisretError(f"{source} is not a folder, a .csv or .parquet image list, nor a source a loader reads "
                      f"(loaders: {', '.join(sorted(loaders))}; NAME:SOURCE picks one)")
