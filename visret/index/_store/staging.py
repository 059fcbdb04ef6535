"""Resumable runs: vectors committed in parts as they are computed, picked up after a crash.

A run lives in ``INDEX/.staging``: ``run.json`` says what it computes (an interrupted run is
resumed only by the same command on the same generation), ``state.npz`` holds a fitted
extractor's state, and each committed part is ``part-N.npy`` (vectors) plus ``part-N.json``
(which files they are, with each file's size and modification time, written last). Staging
heals itself: a part whose JSON or vectors are missing, unreadable or inconsistent is deleted and
recomputed, never an error; so is a part any of whose files was deleted or changed since (a
resumed run never adopts a stale vector), and files skipped before are tried again.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from visret._named_files import NPY_ERRORS, read_npz
from visret.index._store import crashpoints
from visret.index._store.entries import Row
from visret.index._store.files import atomic_path, own_directory, save_npy, save_npz
from visret.index._store.layout import STAGING


@dataclass
class Part:
    """One committed part: ``size`` vectors in ``vectors``, described row for row by the JSON file ``meta``.

    Its rows are read from ``meta`` when asked for, not kept: ten million staged rows held at once
    cost ~275 bytes an entry (docs/benchmarks.md), more than the index they become."""

    vectors: Path
    meta: Path
    size: int
    skipped: list[tuple[str, str]]

    @property
    def rows(self) -> list[Row]:
        """``(path, label, sha256)`` of its vectors, in order."""
        return _read_meta(self.meta)[0]

    def is_current(self) -> bool:
        """Whether every local file of the part is still the one its vector was computed from."""
        rows, stamps, _ = _read_meta(self.meta)
        return all(stamp is None or file_stamp(row[0]) == stamp for row, stamp in zip(rows, stamps))


def _read_meta(meta: Path) -> tuple[list[Row], list[list[int] | None], list[tuple[str, str]]]:
    """A part's rows, stamps and skipped files; ``ValueError`` (and JSON's, OS and type errors) when damaged."""
    data = json.loads(meta.read_text())
    rows = [(str(p), None if label is None else str(label), str(h)) for p, label, h in data["rows"]]
    skipped = [(str(p), str(reason)) for p, reason in data["skipped"]]
    stamps = [None if stamp is None else [int(stamp[0]), int(stamp[1])] for stamp in data["stamps"]]
    if len(stamps) != len(rows):
        raise ValueError("a stamp for each row")
    return rows, stamps, skipped


def file_stamp(path: str) -> list[int] | None:
    """``[size, mtime_ns]`` of a local file (``[-1, -1]`` when gone); None for a URI."""
    from visret.images._decode import is_uri

    if is_uri(path):
        return None
    try:
        info = os.stat(path)
    except OSError:
        return [-1, -1]
    return [info.st_size, info.st_mtime_ns]


def skipped_paths(parts: Sequence[Part]) -> set[str]:
    """Files skipped by some part and embedded by none (a retried skip may have succeeded)."""
    skipped = {path for part in parts for path, _ in part.skipped}
    if not skipped:
        return skipped
    return skipped - {row[0] for part in parts for row in part.rows if row[0] in skipped}


def _npy_shape(path: Path) -> tuple[tuple[int, ...], np.dtype] | None:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except NPY_ERRORS:
        return None
    return (array.shape, array.dtype) if array.flags.c_contiguous else None


def clear_stale(index_path: Path, generation: str | None) -> None:
    """Delete an interrupted run that started from another generation than the current one:
    it can never be resumed (its command may have finished, or another write came since)."""
    folder = index_path / STAGING
    if not folder.exists():
        return
    try:
        started_from = json.loads((folder / "run.json").read_text()).get("generation", "missing")
    except (OSError, ValueError, AttributeError):
        started_from = "missing"
    if started_from != generation:
        own_directory(folder)
        shutil.rmtree(folder, ignore_errors=True)


class Staging:
    """The in-progress run of one index directory; ``run["generation"]`` is the generation it
    starts from (``None`` for a first build)."""

    def __init__(self, index_path: Path, run: dict[str, Any], vector_dim: int | None = None):
        self.folder = index_path / STAGING
        #: Length of the committed vectors; a learning extractor's is known once it is fitted.
        self.vector_dim = vector_dim
        self.run = json.loads(json.dumps(run))  # the JSON form, as it compares after a restart
        current = self.folder / "run.json"
        if self.folder.exists():
            own_directory(self.folder)
            try:
                same = json.loads(current.read_text()) == self.run
            except (OSError, ValueError):
                same = False
            if not same:  # another command's leftovers, or a damaged run: start afresh
                self.clear()
        own_directory(self.folder)
        if not current.is_file():
            with atomic_path(current) as temporary:
                temporary.write_text(json.dumps(self.run, sort_keys=True))

    def _valid(self, meta: Path) -> Part | None:
        try:
            rows, _, skipped = _read_meta(meta)
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None
        vectors = meta.with_suffix(".npy")
        header = _npy_shape(vectors)
        if header is None or header[0] != (len(rows), self.vector_dim) or header[1] != np.dtype("<f4"):
            return None
        return Part(vectors, meta, len(rows), skipped)

    def parts(self, current_only: bool = False) -> list[Part]:
        """The committed parts, in order; damaged ones (and with ``current_only``, those with a
        file changed or deleted since) are deleted on the way."""
        found = []
        for meta in sorted(self.folder.glob("part-*.json")):
            part = self._valid(meta)
            if part is None or (current_only and not part.is_current()):
                meta.unlink(missing_ok=True)
                meta.with_suffix(".npy").unlink(missing_ok=True)
            else:
                found.append(part)
        return found

    def done_paths(self) -> set[str]:
        """Files embedded by a part that is still current; skipped files are not done: they are retried."""
        return {row[0] for part in self.parts(current_only=True) for row in part.rows}

    def commit(self, vectors: np.ndarray, rows: Sequence[Row], skipped: Sequence[tuple[str, str]], stamped: bool = True) -> None:
        """Save a part; ``stamped=False`` for rows that name no file to check again (vectors handed over)."""
        numbers = [int(p.stem.split("-")[1]) for p in self.folder.glob("part-*.*") if p.stem.split("-")[1].isdigit()]
        name = f"part-{max(numbers, default=-1) + 1:06d}"
        save_npy(self.folder / f"{name}.npy", np.ascontiguousarray(vectors, dtype="<f4").reshape(len(rows), self.vector_dim))
        meta = {"rows": [list(r) for r in rows], "skipped": [list(s) for s in skipped], "stamps": [file_stamp(r[0]) if stamped else None for r in rows]}
        with atomic_path(self.folder / f"{name}.json") as temporary:
            temporary.write_text(json.dumps(meta))
        crashpoints.reached("part-committed")

    def load_state(self) -> dict[str, np.ndarray] | None:
        file = self.folder / "state.npz"
        if not file.is_file():
            return None
        try:
            return read_npz(file)
        except NPY_ERRORS:
            file.unlink(missing_ok=True)
            return None

    def save_state(self, state: dict[str, np.ndarray]) -> None:
        save_npz(self.folder / "state.npz", state)

    def clear(self) -> None:
        if self.folder.is_symlink():
            own_directory(self.folder)  # a one-line error: never delete through a link
        shutil.rmtree(self.folder, ignore_errors=True)
