"""Writing a generation: new files beside the current ones, then the manifest swapped atomically.

One writer at a time holds the directory's lock. Committed parts of a run become shards by
hard link, so the run's staging stays intact until the new manifest is in place; removed
entries are compacted out of the shards they were in. After the swap, files that neither the
new nor the previous manifest names are deleted (the previous generation is kept for readers
that are opening it).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from visret.errors import VisretError
from visret.index._store import crashpoints, entries
from visret.index._store.files import (
    TEMP_PREFIX,
    LockTimeout,
    atomic_path,
    link_or_copy,
    own_directory,
    save_npy,
    sha256_file,
    xxh3_file,
    writer_lock,
)
from visret.index._store.layout import (
    FORMAT_VERSION,
    LOCK,
    MANIFEST,
    SHARDS,
    STAGING,
    checksum,
    data_file,
    is_data_name,
    read_manifest,
    referenced,
    shard_file,
)
from visret.index._store.reader import check_content
from visret.index._store.staging import Part, clear_stale
from visret.version import __version__

#: Seconds a writer waits for another writer before giving up.
LOCK_TIMEOUT = 60.0


def check_target(path: Path) -> None:
    """A path a new index may be built at: absent, an index, or an empty folder."""
    if path.exists() and not path.is_dir():
        raise VisretError(f"{path} exists and is not a directory")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise VisretError(f"cannot create the index at {path}: {parent} is not a directory")
            break
    if path.is_dir() and not (path / MANIFEST).exists():
        ours = (TEMP_PREFIX, SHARDS, STAGING, LOCK, "README.md", ".gitkeep")
        if any(not (p.name.startswith(ours) or is_data_name(p.name)) for p in path.iterdir()):
            raise VisretError(f"{path} is not empty and is not a visret index; choose another --index path")


def _file_entry(path: Path, name: str) -> dict[str, Any]:
    file = path / name
    return {"name": name, "bytes": file.stat().st_size, "sha256": sha256_file(file), "xxh3": xxh3_file(file)}


@dataclass
class Generation:
    """What a write puts in place of the current generation."""

    shards: list[dict[str, Any]]
    ids: np.ndarray
    write_entries: Callable[[Path], None]
    fields: dict[str, Any]
    structure: Any = None  # a visret.index.backends.SearchStructure, or None for a Flat index
    state: dict[str, np.ndarray] = field(default_factory=dict)
    #: ``(entries, entries per class)`` when the writer knows them (from the rows it wrote or changed; may be
    #: set by ``write_entries``, which runs first): otherwise counted over the new table, which costs
    #: seconds at 10M entries whatever the change
    summary: tuple[int, dict[str, int]] | None = None


class Writer:
    """One write to the index at ``path``; use as a context manager (it holds the writer lock)."""

    def __init__(self, path: Path, replace: bool = False):
        self.path = path
        self.replace = replace  # a build: an unreadable previous index is replaced, not an error
        self.generation = secrets.token_hex(4)
        self._shard_number = 0

    def __enter__(self) -> Writer:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VisretError(f"cannot create the index at {self.path}: {exc.strerror}") from None
        self._lock = writer_lock(self.path, LOCK_TIMEOUT)
        try:
            self._lock.__enter__()
        except LockTimeout as exc:
            raise VisretError(f"{exc}; wait for it to finish") from None
        try:
            own_directory(self.path / SHARDS)
            self.previous = self._previous()
            clear_stale(self.path, self.previous["generation"] if self.previous else None)
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._lock.__exit__(*exc)

    def _previous(self) -> dict[str, Any] | None:
        if not (self.path / MANIFEST).exists():
            return None
        try:
            return read_manifest(self.path)
        except VisretError:
            if self.replace:
                return None
            raise

    def _new_shard_name(self) -> str:
        name = shard_file(self.generation, self._shard_number)
        self._shard_number += 1
        return name

    def adopt(self, parts: Sequence[Part], places: bool = True) -> tuple[list[dict[str, Any]], dict[str, tuple[str, int]]]:
        """Committed parts as new shards (hard links: the staging copy stays until the swap);
        return their manifest entries and (with ``places``) where each path's vector is."""
        shards, where = [], {}
        for part in parts:
            if not part.size:
                continue
            name = self._new_shard_name()
            link_or_copy(part.vectors, self.path / name)
            shards.append({**_file_entry(self.path, name), "rows": part.size})
            if places:
                where.update({row[0]: (name, i) for i, row in enumerate(part.rows)})
        crashpoints.reached("adopted")
        return shards, where

    def compact(self, shards: list[dict[str, Any]], ids: np.ndarray, removed: Sequence[int]):
        """Shards without the removed entries: untouched shards are kept, touched ones rewritten.

        Returns ``(shards, ids, moved)`` where ``moved`` lists ``(shard, row, id)`` of every
        entry whose place changed.
        """
        gone = np.asarray(sorted(set(int(i) for i in removed)), np.int64)
        kept_shards, kept_ids, moved = [], [], []
        start = 0
        for shard in shards:
            shard_ids = np.asarray(ids[start : start + shard["rows"]])
            keep = ~np.isin(shard_ids, gone)
            if keep.all():
                kept_shards.append(shard)
                kept_ids.append(shard_ids)
            elif keep.any():
                name = self._new_shard_name()
                check_content(self.path, shard)  # what a rewrite copies must not carry a damaged value on
                vectors = np.load(self.path / shard["name"], mmap_mode="r", allow_pickle=False)[keep]
                save_npy(self.path / name, vectors)
                kept_shards.append({**_file_entry(self.path, name), "rows": int(keep.sum())})
                kept_ids.append(shard_ids[keep])
                moved += [(name, row, int(i)) for row, i in enumerate(shard_ids[keep])]
            start += shard["rows"]
        all_ids = np.concatenate(kept_ids) if kept_ids else np.zeros(0, np.int64)
        return kept_shards, all_ids, moved

    def commit(self, generation: Generation) -> dict[str, Any]:
        """Write the generation's files, swap the manifest, delete what no manifest names."""
        files: dict[str, dict[str, Any]] = {}

        def place(role: str, write: Callable[[Path], None]) -> None:
            name = data_file(role, self.generation)
            with atomic_path(self.path / name) as temporary:
                write(temporary)
            files[role] = _file_entry(self.path, name)

        if generation.structure is not None:
            place("vectors", generation.structure.write)
            crashpoints.reached("vectors-written")
        place("entries", generation.write_entries)
        crashpoints.reached("entries-written")
        place("ids", lambda p: _save_ids(p, generation.ids))
        if generation.state:
            place("extractor", lambda p: _save_state(p, generation.state))
        if generation.summary is None:
            count, class_sizes, tombstones = entries.summary(self.path / files["entries"]["name"])
        else:
            (count, class_sizes), tombstones = generation.summary, entries.tombstone_count(self.path / files["entries"]["name"])
        if count != len(generation.ids):
            raise RuntimeError(f"entries ({count}) and stored vectors ({len(generation.ids)}) disagree")
        now = time.time()
        manifest = {
            "format_version": FORMAT_VERSION,
            "visret_version": __version__,
            "generation": self.generation,
            "count": count,
            "classes": list(class_sizes),
            "class_sizes": list(class_sizes.values()),
            "tombstones": tombstones,
            "created_at": (self.previous or {}).get("created_at", now),
            "updated_at": now,
            "files": files,
            "shards": generation.shards,
            **generation.fields,
        }
        manifest["checksum"] = checksum(manifest)
        crashpoints.reached("before-swap")
        with atomic_path(self.path / MANIFEST) as temporary:
            temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        crashpoints.reached("swapped")
        self._remove_unreferenced([manifest, self.previous])
        return manifest

    def _remove_unreferenced(self, manifests: list[dict[str, Any] | None]) -> None:
        keep = set().union(*(referenced(m) for m in manifests))
        for folder in (self.path, self.path / SHARDS):
            for name in os.listdir(folder):
                relative = name if folder == self.path else f"{SHARDS}/{name}"
                if relative not in keep and (name.startswith(TEMP_PREFIX) or is_data_name(relative)):
                    child = folder / name
                    if child.is_file() or child.is_symlink():
                        child.unlink(missing_ok=True)


def _save_ids(path: Path, ids: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(ids, dtype="<i8"), allow_pickle=False)


def _save_state(path: Path, state: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **state)
