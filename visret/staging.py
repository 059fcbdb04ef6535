"""Resumable runs: embeddings committed in parts as they are computed, picked up after a crash.

A run lives in ``INDEX/.staging``: ``run.json`` says what it computes (an interrupted run is
resumed only by the same command), ``state.npz`` holds a fitted extractor's state, and each
committed part is ``part-N.npy`` (embeddings) plus ``part-N.json`` (which files they are,
written last: a part without its JSON never counts).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visret.dataset import ImageRecord
from visret.extraction import Extracted
from visret.storage import atomic_path, save_npy

STAGING = ".staging"


@dataclass
class Part:
    """One committed part: ``rows`` are ``(path, label, sha256)`` of its embeddings, in order."""

    embeddings: Path
    rows: list[tuple[str, str | None, str]]
    skipped: list[tuple[str, str]]

    @property
    def paths(self) -> set[str]:
        return {row[0] for row in self.rows} | {path for path, _ in self.skipped}


class Staging:
    """The in-progress run of one index directory."""

    def __init__(self, index_path: Path, run: dict[str, Any]):
        self.folder = index_path / STAGING
        self.run = json.loads(json.dumps(run))  # the JSON form, as it compares after a restart
        current = self.folder / "run.json"
        if current.is_file():
            try:
                same = json.loads(current.read_text()) == self.run
            except ValueError:
                same = False
            if not same:  # another command's leftovers: start afresh
                self.clear()
        self.folder.mkdir(parents=True, exist_ok=True)
        if not current.is_file():
            with atomic_path(current) as temporary:
                temporary.write_text(json.dumps(self.run, sort_keys=True))

    def parts(self) -> list[Part]:
        found = []
        for meta in sorted(self.folder.glob("part-*.json")):
            data = json.loads(meta.read_text())
            found.append(Part(meta.with_suffix(".npy"), [tuple(r) for r in data["rows"]], [tuple(s) for s in data["skipped"]]))
        return found

    def done_paths(self) -> set[str]:
        return set().union(*(part.paths for part in self.parts())) if self.parts() else set()

    def commit(self, extracted: Extracted) -> None:
        number = len(list(self.folder.glob("part-*.json")))
        name = f"part-{number:06d}"
        save_npy(self.folder / f"{name}.npy", extracted.features)
        rows = [(str(r.path), r.label, h) for r, h in zip(extracted.records, extracted.hashes)]
        meta = {"rows": rows, "skipped": [(str(p), reason) for p, reason in extracted.skipped]}
        with atomic_path(self.folder / f"{name}.json") as temporary:
            temporary.write_text(json.dumps(meta))

    def load_state(self) -> dict[str, np.ndarray] | None:
        file = self.folder / "state.npz"
        if not file.is_file():
            return None
        with np.load(file, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}

    def save_state(self, state: dict[str, np.ndarray]) -> None:
        with atomic_path(self.folder / "state.npz") as temporary:
            with open(temporary, "wb") as fh:
                np.savez(fh, **state)

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def records_of(part: Part) -> list[ImageRecord]:
    return [ImageRecord(Path(path), label) for path, label, _ in part.rows]
