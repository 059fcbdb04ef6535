"""Resumable runs: vectors committed in parts as they are computed, picked up after a crash.

A run lives in ``INDEX/.staging``: ``run.json`` says what it computes (an interrupted run is
resumed only by the same command on the same generation), ``state.npz`` holds a fitted
extractor's state, and each committed part is ``part-N.npy`` (vectors) plus ``part-N.json``
(which files they are, written last). Staging heals itself: a part whose JSON or vectors are
missing, unreadable or inconsistent is deleted and recomputed, never an error.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from visret.store import crashpoints
from visret.store.entries import Row
from visret.store.files import atomic_path, own_directory, save_npy, save_npz
from visret.store.layout import STAGING


@dataclass
class Part:
    """One committed part: ``rows`` are ``(path, label, sha256)`` of its vectors, in order."""

    vectors: Path
    rows: list[Row]
    skipped: list[tuple[str, str]]

    @property
    def paths(self) -> set[str]:
        return {row[0] for row in self.rows} | {path for path, _ in self.skipped}


def _npy_shape(path: Path) -> tuple[tuple[int, ...], np.dtype] | None:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
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
            data = json.loads(meta.read_text())
            rows = [(str(p), None if label is None else str(label), str(h)) for p, label, h in data["rows"]]
            skipped = [(str(p), str(reason)) for p, reason in data["skipped"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        vectors = meta.with_suffix(".npy")
        header = _npy_shape(vectors)
        if header is None or header[0] != (len(rows), self.vector_dim) or header[1] != np.dtype("<f4"):
            return None
        return Part(vectors, rows, skipped)

    def parts(self) -> list[Part]:
        """The committed parts, in order; damaged ones are deleted on the way."""
        found = []
        for meta in sorted(self.folder.glob("part-*.json")):
            part = self._valid(meta)
            if part is None:
                meta.unlink(missing_ok=True)
                meta.with_suffix(".npy").unlink(missing_ok=True)
            else:
                found.append(part)
        return found

    def done_paths(self) -> set[str]:
        return set().union(*(part.paths for part in self.parts()))

    def commit(self, vectors: np.ndarray, rows: Sequence[Row], skipped: Sequence[tuple[str, str]]) -> None:
        numbers = [int(p.stem.split("-")[1]) for p in self.folder.glob("part-*.*") if p.stem.split("-")[1].isdigit()]
        name = f"part-{max(numbers, default=-1) + 1:06d}"
        save_npy(self.folder / f"{name}.npy", np.ascontiguousarray(vectors, dtype="<f4").reshape(len(rows), self.vector_dim))
        meta = {"rows": [list(r) for r in rows], "skipped": [list(s) for s in skipped]}
        with atomic_path(self.folder / f"{name}.json") as temporary:
            temporary.write_text(json.dumps(meta))
        crashpoints.reached("part-committed")

    def load_state(self) -> dict[str, np.ndarray] | None:
        file = self.folder / "state.npz"
        if not file.is_file():
            return None
        try:
            with np.load(file, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError):
            file.unlink(missing_ok=True)
            return None

    def save_state(self, state: dict[str, np.ndarray]) -> None:
        save_npz(self.folder / "state.npz", state)

    def clear(self) -> None:
        if self.folder.is_symlink():
            own_directory(self.folder)  # a one-line error: never delete through a link
        shutil.rmtree(self.folder, ignore_errors=True)
