"""The one train / validation / test split every pipeline is trained and tested on.

Seeded and stratified, so a feature pipeline and a CNN trained on the same folder with the same
seed see the same images in each part; the test part (or a separate ``--test-dir``) never
touches training, early stopping or the choice of hyper-parameters. The split is saved with
each trained pipeline, so what it was tested on can always be told.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from visret.images._folders import ImageRecord
from visret.images.loaders import find_images
from visret.errors import VisretError
from visret.evaluation._protocols import stratified_test_mask

PARTS = ("train", "val", "test")


@dataclass
class Split:
    """The records of each part, the sorted class names and how the split was made."""

    train: list[ImageRecord]
    val: list[ImageRecord]
    test: list[ImageRecord]
    classes: list[str]
    seed: int

    def parts(self) -> dict[str, list[ImageRecord]]:
        return {name: getattr(self, name) for name in PARTS}

    def sizes(self) -> dict[str, int]:
        return {name: len(part) for name, part in self.parts().items()}

    def to_dict(self, **extra: Any) -> dict[str, Any]:
        return {"classes": self.classes, "seed": self.seed, **extra, **{n: [str(r.path) for r in p] for n, p in self.parts().items()}}

    def save(self, path: str | Path, **extra: Any) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(**extra), indent=1))
        return path


def labelled_records(source: str | Path) -> list[ImageRecord]:
    """The images of a folder, an image list or any source a loader reads that have a class (images
    directly in a folder, and list rows without a label, have none)."""
    return [r for r in find_images(source) if r.label is not None]


def train_and_test_folders(data, test_data):
    """A folder holding ``train/`` and ``test/`` (each an ImageFolder) is read as both parts."""
    if isinstance(data, (str, Path)):
        root = Path(data).expanduser()
        if (root / "train").is_dir() and (root / "test").is_dir():
            if test_data is not None:
                raise VisretError(f"{data} holds train/ and test/: pass {root / 'train'} with a test folder, or {data} alone")
            return root / "train", root / "test"
    return data, test_data


def make_split(
    data: str | Path | Sequence[ImageRecord],
    test_data: str | Path | Sequence[ImageRecord] | None = None,
    val_split: float = 0.1,
    test_split: float = 0.2,
    seed: int = 0,
) -> Split:
    """Split a labelled folder (or records) into train / validation / test parts.

    The test part is ``test_data`` when given (or ``data/test`` when ``data`` holds
    ``train/`` and ``test/``), else a seeded stratified ``test_split`` of each class; the validation part is a ``val_split`` of what is left. Raises ``VisretError`` for a
    folder that cannot make a fair split: fewer than two classes, a class too small for every
    part, or test classes that training never sees.
    """
    data, test_data = train_and_test_folders(data, test_data)
    records = labelled_records(data) if isinstance(data, (str, Path)) else list(data)
    test = None
    if test_data is not None:
        test = labelled_records(test_data) if isinstance(test_data, (str, Path)) else list(test_data)
    for name, value in (("validation split", val_split), ("test split", test_split)):
        if not 0 < value < 1:
            raise VisretError(f"{name} must be between 0 and 1, got {value}")
    classes = sorted({r.label for r in records})
    if len(classes) < 2:
        raise VisretError(f"{_name(data)} needs at least two classes in sub-folders to train a classifier, found {len(classes)}")
    labels = np.array([r.label for r in records])
    needed = 2 if test is not None else 3
    counts = {c: int((labels == c).sum()) for c in classes}
    small = sorted(c for c, n in counts.items() if n < needed)
    if small:
        parts = "training and validation" if test is not None else "training, validation and test"
        raise VisretError(
            f"class {small[0]!r} has {counts[small[0]]} image{'s' if counts[small[0]] != 1 else ''}; "
            f"each class needs at least {needed} for {parts}"
        )
    if test is None:
        is_test = stratified_test_mask(labels, test_split, seed)
        test = [r for r, t in zip(records, is_test) if t]
        rest = [r for r, t in zip(records, is_test) if not t]
    else:
        if not test:
            raise VisretError(f"the test folder {_name(test_data)} has no labelled images (one sub-folder per class)")
        unknown = sorted({r.label for r in test} - set(classes))
        if unknown:
            raise VisretError(f"the test folder has classes that training has not: {', '.join(unknown)}")
        rest = records
    is_val = stratified_test_mask(np.array([r.label for r in rest]), val_split, seed + 1)
    return Split(
        train=[r for r, v in zip(rest, is_val) if not v],
        val=[r for r, v in zip(rest, is_val) if v],
        test=test,
        classes=classes,
        seed=seed,
    )


def _name(data) -> str:
    return str(data) if isinstance(data, (str, Path)) else "the training images"
