"""Changing indexes: add, remove and sync, each crash-safe and resumable, and what building shares.

Every option is checked before any image is embedded. Vectors are computed in parts committed
to the index's staging area as they come (an interrupted run resumes where it stopped), then
become immutable shards of a new generation that ``visret.index._store.writer`` puts in place.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from visret.index import _vectors as vectors
from visret.images._folders import ImageRecord, scan_folder
from visret.images.loaders import find_images
from visret.index.distances import Distance
from visret.errors import VisretError
from visret.index.backends import DEFAULT_BACKEND, backend_for, backend_named
from visret.embedding.engines import EmbedOptions, StreamingEmbedder, open_embedder
from visret.images._decode import ImageReadError, file_sha256, is_image_path, utf8_name
from visret.index._reader import IndexReader, default_index_path, open_reader
from visret.index._store import crashpoints, entries
from visret.index._store.layout import read_manifest
from visret.index._store.staging import Part, Staging, skipped_paths
from visret.index._store.writer import Generation, Writer

#: Longest vector an index stores (4 MiB each): a guard against parameters that would exhaust memory.
MAX_VECTOR_DIM = 2**20
#: What a new generation takes over from the current one's manifest (with its search structure's fields).
CARRIED_FIELDS = ("extractor", "dim", "vector_dim", "metric", "search", "build", "rerank", "last_id", "stored_as")
#: Removed HNSW entries (which FAISS cannot delete) trigger a rebuild past this share of the index.
TOMBSTONE_REBUILD = 0.25

ProgressCallback = Callable[[int, int], None]
log = logging.getLogger("visret")


@dataclass
class Changes:
    """What a lifecycle command did."""

    added: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: int = 0
    seconds: float = 0.0


# ---- helpers -------------------------------------------------------------------------------
def embed_resumably(
    staging: Staging, embedder: StreamingEmbedder, distance: Distance, records: Sequence[ImageRecord],
    progress: ProgressCallback | None, shard_size: int,
) -> list[Part]:
    """Embed the records not yet committed to ``staging``, one committed part per ``shard_size``."""
    done = staging.done_paths()
    todo = [r for r in records if str(r.path) not in done]
    finished = len(records) - len(todo)
    if progress is not None:
        progress(finished, len(records))

    def advance(n: int) -> None:
        nonlocal finished
        finished += n
        if progress is not None:
            progress(finished, len(records))

    for extracted in embedder.stream(todo, shard_size, advance):
        rows = [(str(r.path), r.label, h) for r, h in zip(extracted.records, extracted.hashes)]
        staging.commit(distance.prepare(extracted.features), rows, [(str(p), reason) for p, reason in extracted.skipped])
    crashpoints.reached("embedded")
    return staging.parts()


def shard_files(path: Path, shards: Sequence[dict[str, Any]]) -> list[Path]:
    return [path / s["name"] for s in shards]


def _gather(inputs: Sequence[str | Path]) -> list[ImageRecord]:
    """Image files (unlabelled) and sources of images (folders, lists...), without duplicates."""
    records: dict[str, ImageRecord] = {}
    for item in inputs:
        if Path(item).is_file() and is_image_path(Path(item)):
            found = [ImageRecord(Path(os.path.abspath(item)), None)]
        else:
            found = find_images(item)  # a folder, an image list, a loader's source; else a one-line error
        records.update({str(r.path): r for r in found})
    return list(records.values())


def _apply(
    writer: Writer, current: IndexReader, kind: str, removals: Sequence[int], additions: Sequence[ImageRecord],
    options: EmbedOptions, progress: ProgressCallback | None,
) -> int:
    """Remove entries and embed and add records as one new generation; return how many were skipped."""
    path, manifest, extractor, distance = writer.path, current.manifest, current.extractor, current.distance
    parts: list[Part] = []
    staging = None
    if additions:
        run = {"kind": kind, "generation": manifest["generation"], "paths": sorted(str(r.path) for r in additions)}
        staging = Staging(path, run, manifest["vector_dim"])
        with open_embedder(extractor, options) as embedder:
            parts = embed_resumably(staging, embedder, distance, additions, progress, options.shard_size)
    order = {str(r.path): i for i, r in enumerate(additions)}
    new_rows = sorted((row for part in parts for row in part.rows), key=lambda row: order.get(row[0], len(order)))
    in_use = max(current.rows("largest id"))[0]
    last_id = max(in_use, manifest.get("last_id", 0))  # ids of removed entries are never given again
    id_of = {row[0]: last_id + i for i, row in enumerate(new_rows, start=1)}
    new_ids = np.array([id_of[row[0]] for part in parts for row in part.rows], np.int64)
    removals = sorted({int(i) for i in removals})
    if current.as_codes:  # the structure's codes are the only copy: no shards to add or compact
        new_shards, new_vectors = [], [part.vectors for part in parts]
        where = {row[0]: ("", -1) for part in parts for row in part.rows}
        stored = current.stored_ids()
        shards, kept_ids, moved = [], stored[~np.isin(stored, np.array(removals, np.int64))], []
    else:
        new_shards, where = writer.adopt(parts)
        new_vectors = shard_files(path, new_shards)
        shards, kept_ids, moved = writer.compact(manifest["shards"], current.stored_ids(), removals)
    ids = np.concatenate([kept_ids, new_ids])
    structure, tombstoned, rebuild = None, [], False
    if "vectors" in manifest["files"]:
        backend = backend_named(manifest.get("backend", DEFAULT_BACKEND))
        structure = backend.read(path / manifest["files"]["vectors"]["name"], distance)  # in memory: it is modified
        if removals and not structure.remove(np.array(removals, dtype=np.int64)):
            tombstoned = removals  # it cannot forget them (HNSW): filtered out of results until a rebuild
        rebuild = (bool(tombstoned) and current.tombstones + len(tombstoned) > TOMBSTONE_REBUILD * structure.ntotal
                   and manifest["factory"] != vectors.IMPORTED)  # an index built elsewhere cannot be rebuilt here
        if rebuild:  # the shards hold only live entries: rebuild from them
            backend, spec = backend_for(manifest["factory"])
            structure = backend.build(spec, manifest["vector_dim"], distance, shard_files(path, shards + new_shards), ids)
        else:
            structure.add(new_vectors, new_ids)
    added = entries.new_rows([id_of[r[0]] for r in new_rows], new_rows, [where[r[0]] for r in new_rows])
    base = path / manifest["files"]["entries"]["name"]

    def write_entries(p: Path) -> None:
        entries.write(p, base, added, removals, [] if rebuild else tombstoned, moved, clear_tombstones=rebuild)

    fields = {key: manifest[key] for key in (*CARRIED_FIELDS, "factory", "backend", "imported") if key in manifest}
    fields["last_id"] = last_id + len(new_rows)
    summary = _summary_after(current, removals, new_rows)
    current.close()
    skipped = len(skipped_paths(parts))
    writer.commit(Generation(shards + new_shards, ids, write_entries, fields, structure, extractor.get_state(), summary))
    if staging is not None:
        staging.clear()
    return skipped


def _summary_after(current: IndexReader, removals: Sequence[int], added: Sequence[tuple]) -> tuple[int, dict[str, int]]:
    """Entries and entries per class once ``removals`` are deleted and ``added`` rows inserted, from the
    current counts and the labels of just those rows: no count over the whole table."""
    removed = [row[2] for row in current.rows_for("labels", removals)]
    sizes = Counter(current.label_counts())
    sizes.subtract(label for label in removed if label is not None)
    sizes.update(row[1] for row in added if row[1] is not None)
    return current.manifest["count"] - len(removed) + len(added), {label: n for label, n in sorted(sizes.items()) if n > 0}


def _existing_index(index: str | Path | None) -> Path:
    """The path of an index that must exist already (a one-line error otherwise)."""
    path = Path(index) if index is not None else default_index_path()
    read_manifest(path)
    return path


def add_images(
    inputs: Sequence[str | Path],
    index: str | Path | None = None,
    *,
    progress: ProgressCallback | None = None,
    **embedding: Any,
) -> Changes:
    """Embed and add only the images whose content is not in the index yet (by SHA-256).

    ``embedding`` keywords are the fields of ``EmbedOptions``, as for ``build_index``.
    """
    options = EmbedOptions.from_keywords("add_images", embedding)
    path = _existing_index(index)
    start = time.perf_counter()
    records = _gather(inputs)
    with Writer(path) as writer:
        current = open_reader(path)
        digests = []
        for record in records:
            try:
                digests.append(file_sha256(record.path, options.max_bytes))
            except ImageReadError:
                digests.append(None)  # unreadable: let extraction report it
        known = {row[0] for row in current.rows_for("stored hashes", [d for d in digests if d is not None])}
        new, seen, unchanged = [], set(), 0
        for record, digest in zip(records, digests):
            if digest is not None and (digest in known or digest in seen):
                unchanged += 1
                continue
            seen.add(digest)
            new.append(record)
        if not new:
            current.close()
            return Changes(unchanged=unchanged, seconds=time.perf_counter() - start)
        unlabelled = sum(record.label is None for record in new)
        if unlabelled and len(current.classes):
            log.warning("%d of the %d images to add have no label (no class sub-folder or list label); the index's others "
                        "do: they are stored unlabelled and k-NN evaluation leaves them out", unlabelled, len(new))
        skipped = _apply(writer, current, "add", [], new, options, progress)
    return Changes(added=len(new) - skipped, unchanged=unchanged, skipped=skipped, seconds=time.perf_counter() - start)


def _ids_under(current: IndexReader, targets: Sequence[Path]) -> list[int]:
    ids = []
    for target in targets:
        absolute = os.path.abspath(target)  # entries store paths the same way (see scan_folder)
        if not utf8_name(absolute):  # never indexed: such names are skipped when indexing
            continue
        folder = absolute.rstrip("/")
        rows = current.rows("file or folder", (absolute, folder + "/", folder + "0"))
        ids += [row[0] for row in rows]
    return ids


def remove_images(paths: Sequence[str | Path], index: str | Path | None = None) -> Changes:
    """Remove the entries of these files (or of every file under these folders)."""
    path = _existing_index(index)
    start = time.perf_counter()
    with Writer(path) as writer:
        current = open_reader(path)
        ids = _ids_under(current, [Path(p) for p in paths])
        if not ids:
            current.close()
            raise VisretError(f"none of {', '.join(map(str, paths))} is in the index at {path}")
        _apply(writer, current, "remove", ids, [], EmbedOptions(), None)
    return Changes(removed=len(set(ids)), seconds=time.perf_counter() - start)


def sync_index(
    folder: str | Path,
    index: str | Path | None = None,
    *,
    progress: ProgressCallback | None = None,
    **embedding: Any,
) -> Changes:
    """Make the index's entries under ``folder`` match it: add new and changed files, remove deleted ones.

    ``folder`` may also be an image list (or any source a loader reads): its files are the scope, so listed
    files that are new or changed come in, listed files that can no longer be read go out, and entries the
    list does not name stay. ``embedding`` keywords are the fields of ``EmbedOptions``, as for ``build_index``.
    """
    options = EmbedOptions.from_keywords("sync_index", embedding)
    path = _existing_index(index)
    start = time.perf_counter()
    listed = not Path(folder).is_dir()
    records = {str(r.path): r for r in (find_images(folder) if listed else scan_folder(folder))}
    with Writer(path) as writer:
        current = open_reader(path)
        if listed:
            ids = [row[0] for row in current.rows("live files by path") if row[1] in records]
        else:
            ids = _ids_under(current, [Path(folder)])
        known = {row[0]: (row[1], row[2]) for row in current.rows_for("hashes", ids)}
        removals, unchanged, present = [], 0, set()
        for entry_id, (file, digest) in known.items():
            present.add(file)
            if file not in records:
                removals.append(entry_id)
                continue
            try:
                same = file_sha256(file, options.max_bytes) == digest
            except ImageReadError:
                same = False
            if same:
                unchanged += 1
            else:
                removals.append(entry_id)
                present.discard(file)
        additions = [r for p, r in records.items() if p not in present]
        if not removals and not additions:
            current.close()
            return Changes(unchanged=unchanged, seconds=time.perf_counter() - start)
        skipped = _apply(writer, current, "sync", removals, additions, options, progress)
    return Changes(added=len(additions) - skipped, removed=len(removals), unchanged=unchanged, skipped=skipped, seconds=time.perf_counter() - start)
