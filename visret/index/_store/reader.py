"""Opening an index directory: cheap checks on every open, each file checked on first read.

Opening costs little at any size: the manifest is parsed and checked against its own
checksum and schema, each file it names must be a plain file of the recorded size, the
shards and id list must have the recorded shape and type with their data exactly filling the
file (their headers are read and the data memory-mapped), the id list must match its SHA-256
(8 bytes an entry: a flipped id would silently answer with another entry) and hold unique
positive ids, and the entries table must be a SQLite file. Then each file is checked against its
recorded word sum (``files.xxh3_file``; SHA-256 for indexes that record none) the first time a
reader reads it: the shards before the first exact search, the entries table before the first
lookup, the FAISS file before it is loaded, so that a flipped byte in what a query reads is
refused rather than answered from. Files over ``FIRST_READ_LIMIT`` that are read only in part (a
memory-mapped FAISS file, a huge entries table) are left to ``verify``, which checks the SHA-256
of every file on opening. A writer keeps the previous generation's files, so a reader that loses
a race with a write simply reads the manifest again.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from visret.errors import VisretError
from visret._named_files import NPY_ERRORS, read_npz
from visret.index._store import entries
from visret.index._store.files import plain_file, sha256_file, xxh3_file
from visret.index._store.layout import read_manifest

#: Files read only in part (the entries table, a FAISS file) are checked on first read up to this
#: size: about 60 ms of word sum here (4.5 GB/s); larger ones are memory-mapped, and ``--verify`` checks them.
FIRST_READ_LIMIT = 256 * 2**20


class _Missing(Exception):
    """A file the manifest names is gone: a writer may have just replaced the generation."""


@dataclass
class Store:
    """The files of one generation, opened: manifest, entries, ids, shards (memory-mapped)."""

    path: Path
    manifest: dict[str, Any]
    db: sqlite3.Connection
    ids: np.ndarray
    shards: list[np.ndarray]
    state: dict[str, np.ndarray] = field(default_factory=dict)
    checked: set[str] = field(default_factory=set)

    def file(self, role: str) -> Path | None:
        entry = self.manifest["files"].get(role)
        return None if entry is None else self.path / entry["name"]

    def check(self, entry: dict[str, Any], whole_read: bool = True) -> None:
        """Check a file's content before its first read (once per opening); a file read only in
        part is checked when at most ``FIRST_READ_LIMIT`` bytes."""
        if entry["name"] not in self.checked and (whole_read or entry["bytes"] <= FIRST_READ_LIMIT):
            check_content(self.path, entry)
        self.checked.add(entry["name"])

    def check_entries(self) -> None:
        self.check(self.manifest["files"]["entries"], whole_read=False)

    def check_shards(self, numbers: Sequence[int] | None = None) -> None:
        """Check the shards an exact search or a vector lookup is about to read (all by default)."""
        shards = self.manifest["shards"]
        for number in range(len(shards)) if numbers is None else numbers:
            self.check(shards[number])

    def close(self) -> None:
        self.db.close()


def corrupt(path: Path, what: str) -> VisretError:
    return VisretError(f"index at {path} is corrupt: {what}; rebuild it (visret info --verify checks every file)")


def check_content(path: Path, entry: dict[str, Any], sha256: bool = False) -> None:
    """A file's content against its recorded word sum (or SHA-256: when asked, or where the index
    records no word sum); a mismatch is a corrupt index."""
    file = path / entry["name"]
    if sha256 or "xxh3" not in entry:
        if sha256_file(file) != entry["sha256"]:
            raise corrupt(path, f"{entry['name']} does not match its checksum")
    elif xxh3_file(file) != entry["xxh3"]:
        raise corrupt(path, f"{entry['name']} does not match its checksum")


def _checked(path: Path, entry: dict[str, Any], verify: bool) -> Path:
    file = path / entry["name"]
    try:
        size = plain_file(file).st_size
    except FileNotFoundError:
        raise _Missing(entry["name"]) from None
    if size != entry["bytes"]:
        raise corrupt(path, f"{entry['name']} does not have its recorded size")
    if verify:
        check_content(path, entry, sha256=True)
    return file


def _array(path: Path, file: Path, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """A memory-mapped ``.npy`` of exactly this shape and type (never an object array)."""
    try:
        array = np.load(file, mmap_mode="r", allow_pickle=False)
    except NPY_ERRORS:
        raise corrupt(path, f"{file.name} is not a readable array") from None
    if array.shape != shape or array.dtype != np.dtype(dtype) or not array.flags.c_contiguous:
        raise corrupt(path, f"{file.name} holds {array.dtype}{list(array.shape)}, not {dtype}{list(shape)}")
    if array.offset + array.nbytes != file.stat().st_size:  # a header that moved the data start
        raise corrupt(path, f"{file.name}'s header does not match its data")
    return array


def _unique_positive(ids: np.ndarray) -> bool:
    """Whether the ids are unique positive numbers, in one pass: a flag per possible id (ids stay within a
    few times their count, removed ones never coming back). Sorting them (``np.unique``) cost most of a
    cold query at 10M entries; a larger spread, from a damaged file, is sorted."""
    low, high = int(ids.min()), int(ids.max())
    if low < 1:
        return False
    if high > 8 * len(ids) + 1024:
        return len(np.unique(ids)) == len(ids)
    seen = np.zeros(high + 1, np.bool_)
    seen[ids] = True
    return int(np.count_nonzero(seen)) == len(ids)


def _open(path: Path, manifest: dict[str, Any], verify: bool) -> Store:
    files = manifest["files"]
    entries_file = _checked(path, files["entries"], verify)
    with open(entries_file, "rb") as fh:
        if fh.read(len(entries.SQLITE_MAGIC)) != entries.SQLITE_MAGIC:
            raise corrupt(path, f"{entries_file.name} is not a SQLite file")
    ids = _array(path, _checked(path, files["ids"], verify=True), (manifest["count"],), "<i8")
    if len(ids) and not _unique_positive(ids):
        raise corrupt(path, f"{files['ids']['name']} holds ids that are not unique positive numbers")
    shards = [_array(path, _checked(path, s, verify), (s["rows"], manifest["vector_dim"]), "<f4") for s in manifest["shards"]]
    if "vectors" in files:
        _checked(path, files["vectors"], verify)
    state = {}
    if "extractor" in files:
        extractor_file = _checked(path, files["extractor"], verify)
        if not verify:
            check_content(path, files["extractor"])  # read whole, now
        data = extractor_file.read_bytes()
        try:
            state = read_npz(data)
        except NPY_ERRORS:
            raise corrupt(path, f"{files['extractor']['name']} is not readable") from None
    checked = {entry["name"] for entry in [*files.values(), *manifest["shards"]]} if verify else set()
    return Store(path, manifest, entries.open_read_only(entries_file), ids, shards, state, checked)


def open_store(path: Path, verify: bool = False) -> Store:
    """Open the current generation of the index at ``path`` (``verify``: checksum every file)."""
    for attempt in range(5):
        manifest = read_manifest(path)
        try:
            return _open(path, manifest, verify)
        except _Missing as missing:
            if read_manifest(path) == manifest:  # not a concurrent write: really missing
                raise corrupt(path, f"{missing} is missing") from None
            time.sleep(0.05 * (attempt + 1))
    raise VisretError(f"index at {path} keeps changing while it is opened; try again")
