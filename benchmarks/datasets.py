"""The project's fair splits of ``../shared/datasets``, materialised as train/test image folders.

- COIL-100: angles that are multiples of 10 degrees indexed, the others queried.
- COIL-20: even poses indexed, odd poses queried.
- UMIST, MNIST test split, Animal-MNIST: seeded stratified 80/20 (shuffled first).
- Oxford 17 Flowers: ``flowers`` is split1 of ``splits_seeded.csv`` (train + val indexed or trained
  on, test queried or tested: 1,020 / 340), ``flowers:2`` and ``flowers:3`` the other two.

Image folders are made of symbolic links (nothing is copied); array datasets are written as PNG.
"""

from __future__ import annotations

import csv
import gzip
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
NAMES = ("coil100", "coil20", "umist", "mnist", "animal-mnist", "flowers")
FLOWER_SPLITS = ("flowers", "flowers:2", "flowers:3")


def _link(files: list[Path], labels: list[str], folder: Path) -> None:
    for file, label in zip(files, labels):
        (folder / label).mkdir(parents=True, exist_ok=True)
        os.symlink(file, folder / label / file.name)


def _write(images: np.ndarray, labels: np.ndarray, folder: Path) -> None:
    for i, (image, label) in enumerate(zip(images, labels)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / str(label) / f"{i:05d}.png")


def stratified_test_mask(labels: np.ndarray, test_size: float = 0.2, seed: int = 0) -> np.ndarray:
    """A seeded stratified choice of about ``test_size`` of each class."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        mask[members[: int(round(len(members) * test_size))]] = True
    return mask


def _coil(name: str, indexed) -> tuple[list[Path], list[str], np.ndarray]:
    files = sorted((SHARED / name).glob("obj*/obj*__*.png"))
    labels = [f.parent.name for f in files]
    view = np.array([int(re.search(r"__(\d+)\.png$", f.name).group(1)) for f in files])
    return files, labels, ~indexed(view)


def _flowers(split: int) -> tuple[list[Path], list[str], np.ndarray]:
    folder = SHARED / "oxford-flowers17"
    lines = (folder / "splits_seeded.csv").read_text().splitlines()
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    files = [folder / row["path"] for row in rows]
    return files, [f.parent.name for f in files], np.array([row[f"split{split}"] == "test" for row in rows])


def materialise(name: str, root: Path) -> tuple[Path, Path]:
    """Write dataset ``name``'s split under ``root`` (once: later calls find it); return ``(train folder, test folder)``."""
    train, test = root / name.replace(":", "-") / "train", root / name.replace(":", "-") / "test"
    if (train.parent / ".written").exists():
        return train, test
    _split(name, train, test)
    (train.parent / ".written").touch()
    return train, test


def _split(name: str, train: Path, test: Path) -> None:
    if name in FLOWER_SPLITS:
        files, labels, is_test = _flowers(int(name.partition(":")[2] or 1))
    elif name in ("coil100", "coil20"):
        rule = (lambda angle: angle % 10 == 0) if name == "coil100" else (lambda pose: pose % 2 == 0)
        files, labels, is_test = _coil(name, rule)
    elif name == "umist":
        files = sorted((SHARED / "umist").glob("*/*.pgm"))
        labels = [f.parent.name for f in files]
        is_test = stratified_test_mask(np.array(labels))
    else:
        if name == "mnist":
            raw = SHARED / "mnist-test"
            images = np.frombuffer(gzip.open(raw / "t10k-images-idx3-ubyte.gz").read()[16:], np.uint8).reshape(-1, 28, 28)
            targets = np.frombuffer(gzip.open(raw / "t10k-labels-idx1-ubyte.gz").read()[8:], np.uint8)
        else:
            with np.load(SHARED / "animal-mnist" / "animal_mnist.npz", allow_pickle=False) as data:
                images, targets = data["x"], data["y"]
        is_test = stratified_test_mask(targets)
        _write(images[~is_test], targets[~is_test], train)
        _write(images[is_test], targets[is_test], test)
        return
    _link([f for f, t in zip(files, is_test) if not t], [l for l, t in zip(labels, is_test) if not t], train)
    _link([f for f, t in zip(files, is_test) if t], [l for l, t in zip(labels, is_test) if t], test)
