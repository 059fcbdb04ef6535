"""Writing indexes: build, add, remove and sync, each crash-safe and resumable.

Embeddings are computed in parts committed to ``.staging`` as they come (so an interrupted
run resumes where it stopped), then become immutable ``.npy`` shards of the index; the FAISS
index is built from the shards. Every write produces a new generation of the entries table and
the FAISS file and then swaps the manifest; one writer at a time holds the directory's lock.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import faiss
import numpy as np

from visret import __version__, vectors
from visret.dataset import ImageRecord, scan_folder
from visret.errors import VisretError
from visret.extraction import extract_records
from visret.extractor import FeatureExtractor
from visret.images import DEFAULT_MAX_PIXELS, ImageReadError, is_image_path, read_image
from visret.index import FORMAT_VERSION, MANIFEST, Index, default_index_path, load_rows, open_at, read_manifest
from visret.plugins import get_extractor
from visret.staging import STAGING, Part, Staging
from visret.storage import TEMP_PREFIX, LockTimeout, atomic_path, sha256_file, writer_lock

DATA_PREFIXES = ("vectors-", "entries-", "extractor-")
SHARDS = "shards"
#: Images embedded per committed part (and per shard).
SHARD_SIZE = 2048
#: Seconds a writer waits for another writer before giving up.
LOCK_TIMEOUT = 60.0
#: Removed HNSW entries (which FAISS cannot delete) trigger a rebuild past this share of the index.
TOMBSTONE_REBUILD = 0.25

ProgressCallback = Callable[[int, int], None]


@dataclass
class Changes:
    """What a lifecycle command did."""

    added: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: int = 0
    seconds: float = 0.0


# ---- helpers -------------------------------------------------------------------------------
def resolve_extractor(extractor: str | FeatureExtractor, params: dict[str, Any] | None = None) -> FeatureExtractor:
    if isinstance(extractor, FeatureExtractor):
        if params:
            raise VisretError("pass params only with an extractor name")
        return extractor
    return get_extractor(extractor, **(params or {}))


def fit_extractor(extractor: FeatureExtractor, records: Sequence[ImageRecord], max_pixels: int, seed: int = 0) -> None:
    """Fit a learning extractor on the readable images among ``records`` (or a seeded sample)."""
    wanted = extractor.fit_sample_size()
    if wanted is not None and wanted < len(records):
        chosen = np.sort(np.random.default_rng(seed).choice(len(records), wanted, replace=False))
        records = [records[i] for i in chosen]
    images, labels = [], []
    for record in records:
        try:
            images.append(read_image(record.path, extractor.input_spec, max_pixels)[0])
            labels.append(record.label)
        except ImageReadError:
            continue  # reported once, by the extraction pass
    if not images:
        raise VisretError("no readable image to fit the extractor on")
    try:
        extractor.fit(images, labels if all(label is not None for label in labels) else None)
    except ValueError as exc:
        raise VisretError(f"cannot fit extractor {extractor.name!r}: {exc}") from None


def _check_target(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise VisretError(f"{path} exists and is not a directory")
    if path.is_dir() and not (path / MANIFEST).exists():
        ours = (TEMP_PREFIX, *DATA_PREFIXES, SHARDS, STAGING, ".lock", "README.md", ".gitkeep")
        if any(not p.name.startswith(ours) for p in path.iterdir()):
            raise VisretError(f"{path} is not empty and is not a visret index; choose another --index path")


class _Lock:
    """The writer lock, with a one-line error when another writer holds it too long."""

    def __init__(self, path: Path):
        self.context = writer_lock(path, LOCK_TIMEOUT)

    def __enter__(self):
        try:
            return self.context.__enter__()
        except LockTimeout as exc:
            raise VisretError(f"{exc}; wait for it to finish") from None

    def __exit__(self, *exc):
        return self.context.__exit__(*exc)


def _embed_resumably(
    staging: Staging,
    extractor: FeatureExtractor,
    records: Sequence[ImageRecord],
    batch_size: int,
    workers: int | None,
    max_pixels: int,
    progress: ProgressCallback | None,
    shard_size: int,
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

    for start in range(0, len(todo), shard_size):
        staging.commit(extract_records(extractor, todo[start : start + shard_size], batch_size, workers, max_pixels, advance))
    return staging.parts()


def _fitted(staging: Staging, extractor: FeatureExtractor, records: Sequence[ImageRecord], max_pixels: int) -> None:
    """Fit a learning extractor once per run: an interrupted run reuses the saved state."""
    if not extractor.requires_fit:
        return
    state = staging.load_state()
    if state is not None:
        extractor.set_state(state)
        return
    fit_extractor(extractor, records, max_pixels)
    staging.save_state(extractor.get_state())


# ---- generations ---------------------------------------------------------------------------
def _entry_rows(ids, rows, placements) -> list[tuple]:
    """Rows of the entries table: id, path, label, sha256, time added, shard, row."""
    now = time.time()
    return [(int(i), p, label, sha, now, shard, row) for i, (p, label, sha), (shard, row) in zip(ids, rows, placements)]



def _entries_file(path: Path, base: Path | None, new_rows: list[tuple], removed: Sequence[int], tombstoned: Sequence[int]) -> None:
    """A new entries table: a copy of ``base`` (if any) with rows added, removed and tombstoned."""
    if base is not None:
        shutil.copyfile(base, path)
    db = sqlite3.connect(path)
    try:
        db.execute(
            "CREATE TABLE IF NOT EXISTS entries (id INTEGER PRIMARY KEY, path TEXT NOT NULL, label TEXT, "
            "sha256 TEXT NOT NULL, added_at REAL NOT NULL, shard TEXT NOT NULL, row INTEGER NOT NULL)"
        )
        db.execute("CREATE TABLE IF NOT EXISTS tombstones (id INTEGER PRIMARY KEY)")
        db.execute("CREATE INDEX IF NOT EXISTS entries_path ON entries (path)")
        db.execute("CREATE INDEX IF NOT EXISTS entries_sha256 ON entries (sha256)")
        db.executemany("DELETE FROM entries WHERE id = ?", [(int(i),) for i in removed])
        db.executemany("INSERT INTO tombstones VALUES (?)", [(int(i),) for i in tombstoned])
        db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)", new_rows)
        db.commit()
    finally:
        db.close()


def _commit(
    path: Path,
    previous: dict[str, Any] | None,
    extractor: FeatureExtractor,
    faiss_index: faiss.Index,
    write_entries: Callable[[Path], None],
    shards: list[dict[str, Any]],
    fields: dict[str, Any],
) -> dict[str, Any]:
    """Write a generation and swap the manifest; keep the previous generation for open readers."""
    generation = secrets.token_hex(4)
    files: dict[str, dict[str, Any]] = {}

    def place(role: str, suffix: str, write: Callable[[Path], None]) -> None:
        name = f"{role}-{generation}{suffix}"
        with atomic_path(path / name) as temporary:
            write(temporary)
        files[role] = {"name": name, "sha256": sha256_file(path / name), "bytes": (path / name).stat().st_size}

    place("vectors", ".faiss", lambda p: faiss.write_index(faiss_index, str(p)))
    place("entries", ".sqlite", write_entries)
    state = extractor.get_state()
    if state:
        place("extractor", ".npz", lambda p: _save_arrays(p, state))
    with sqlite3.connect(path / files["entries"]["name"]) as db:
        count = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        labels = sorted(row[0] for row in db.execute("SELECT DISTINCT label FROM entries WHERE label IS NOT NULL"))
        tombstones = db.execute("SELECT COUNT(*) FROM tombstones").fetchone()[0]
    now = time.time()
    manifest = {
        "format_version": FORMAT_VERSION,
        "visret_version": __version__,
        "extractor": extractor.get_config(),
        "dim": extractor.dim,
        "count": count,
        "classes": labels,
        "tombstones": tombstones,
        "created_at": (previous or {}).get("created_at", now),
        "updated_at": now,
        "files": files,
        "shards": shards,
        **fields,
    }
    with atomic_path(path / MANIFEST) as temporary:
        temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    _remove_unreferenced(path, [manifest, previous])
    return manifest


def _save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _referenced(manifest: dict[str, Any] | None) -> set[str]:
    if not manifest:
        return set()
    return {f["name"] for f in manifest.get("files", {}).values()} | {s["name"] for s in manifest.get("shards", [])}


def _remove_unreferenced(path: Path, manifests: list[dict[str, Any] | None]) -> None:
    keep = set().union(*(_referenced(m) for m in manifests))
    for child in list(path.iterdir()) + list((path / SHARDS).glob("*")):
        name = child.relative_to(path).as_posix()
        if name not in keep and child.is_file() and child.name.startswith((TEMP_PREFIX, *DATA_PREFIXES, "emb-")):
            child.unlink(missing_ok=True)


def _adopt_parts(path: Path, parts: list[Part], generation: str) -> tuple[list[dict[str, Any]], dict[str, tuple[str, int]]]:
    """Move committed parts into the index as shards; return their manifest entries and where each path's row is."""
    (path / SHARDS).mkdir(exist_ok=True)
    shards, where = [], {}
    for number, part in enumerate(parts):
        name = f"{SHARDS}/emb-{generation}-{number:06d}.npy"
        part.embeddings.replace(path / name)
        shards.append({"name": name, "sha256": sha256_file(path / name), "bytes": (path / name).stat().st_size, "rows": len(part.rows)})
        where.update({row[0]: (name, i) for i, row in enumerate(part.rows)})
    return shards, where


# ---- build ---------------------------------------------------------------------------------
def build_index(
    folder: str | Path,
    extractor: str | FeatureExtractor = "color-hist",
    index: str | Path | None = None,
    metric: str = "l2",
    params: dict[str, Any] | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: ProgressCallback | None = None,
    *,
    factory: str = "Flat",
    max_memory: int | None = None,
    nprobe: int = 16,
    ef_search: int = 64,
    shard_size: int = SHARD_SIZE,
) -> Index:
    """Index every image in ``folder`` (ImageFolder layout gives labels) and return the opened index.

    Unreadable files are skipped with a warning each; their count is in
    ``index.manifest["build"]``. An interrupted build resumes when run again with the same
    arguments. ``factory`` is any FAISS index-factory string, or ``auto`` (chosen by size and
    ``max_memory`` bytes). ``progress(done, total)`` is called as batches finish.
    """
    extractor = resolve_extractor(extractor, params)
    try:
        vectors.check_metric(metric, "Flat" if factory == "auto" else factory)
    except ValueError as exc:
        raise VisretError(str(exc)) from None
    if batch_size < 1 or shard_size < 1:
        raise VisretError(f"batch size and shard size must be at least 1, got {batch_size} and {shard_size}")
    path = Path(index) if index is not None else default_index_path()
    _check_target(path)
    records = scan_folder(folder)
    if not records:
        raise VisretError(f"no image files found in {folder}")
    with _Lock(path):
        start = time.perf_counter()
        run = {"kind": "build", "source": str(Path(folder).absolute()), "extractor": extractor.get_config(), "metric": metric}
        staging = Staging(path, run)
        _fitted(staging, extractor, records, max_pixels)
        parts = _embed_resumably(staging, extractor, records, batch_size, workers, max_pixels, progress, shard_size)
        rows = [row for part in parts for row in part.rows]
        if not rows:
            raise VisretError(f"none of the {len(records)} image files in {folder} could be read")
        order = {str(r.path): i for i, r in enumerate(records)}
        rows.sort(key=lambda row: (order.get(row[0], len(order)), row[0]))  # the same order a fresh run gives
        generation = secrets.token_hex(4)
        shards, where = _adopt_parts(path, parts, generation)
        placements = [where[row[0]] for row in rows]
        embeddings = load_rows(path, placements, extractor.dim)
        chosen = vectors.choose_factory(len(rows), extractor.dim, max_memory) if factory == "auto" else factory
        try:
            faiss_index = vectors.new_index(extractor.dim, metric, chosen)
        except ValueError as exc:
            raise VisretError(str(exc)) from None
        ids = np.arange(1, len(rows) + 1)
        try:
            vectors.train_and_add(faiss_index, embeddings, ids, metric)
        except RuntimeError as exc:
            reason = str(exc).split("Error: ")[-1].splitlines()[0]
            raise VisretError(f"cannot train a {chosen} index on {len(rows)} vectors: {reason}") from None
        entry_rows = _entry_rows(ids, rows, placements)
        previous = read_manifest(path) if (path / MANIFEST).exists() else None
        build = {
            "source": run["source"],
            "indexed": len(rows),
            "skipped": sum(len(part.skipped) for part in parts),
            "seconds": round(time.perf_counter() - start, 3),
        }
        _commit(
            path, None if previous is None else {k: v for k, v in previous.items() if k != "created_at"}, extractor,
            faiss_index, lambda p: _entries_file(p, None, entry_rows, [], []), shards,
            {"metric": metric, "factory": chosen, "search": {"nprobe": nprobe, "ef_search": ef_search}, "build": build},
        )
        staging.clear()
    return open_at(path, extractor)


# ---- add / remove / sync -------------------------------------------------------------------
def _gather(inputs: Sequence[str | Path]) -> list[ImageRecord]:
    """Folders (ImageFolder labels) and single image files (unlabelled), without duplicates."""
    records: dict[str, ImageRecord] = {}
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found = scan_folder(item)
        elif item.is_file() and is_image_path(item):
            found = [ImageRecord(Path(item).absolute(), None)]
        else:
            raise VisretError(f"{item} is not a folder or an image file")
        records.update({str(r.path): r for r in found})
    return list(records.values())


def _apply(
    path: Path,
    kind: str,
    removals: Sequence[int],
    additions: Sequence[ImageRecord],
    batch_size: int,
    workers: int | None,
    max_pixels: int,
    progress: ProgressCallback | None,
    shard_size: int,
) -> tuple[Index, int]:
    """Remove entries and embed and add records as one new generation; return the index and skips."""
    current = open_at(path)
    manifest, extractor = current.manifest, current.extractor
    run = {"kind": kind, "generation": manifest["files"]["vectors"]["name"], "paths": sorted(str(r.path) for r in additions)}
    staging = Staging(path, run)
    parts = _embed_resumably(staging, extractor, additions, batch_size, workers, max_pixels, progress, shard_size) if additions else []
    new_rows = [row for part in parts for row in part.rows]
    order = {str(r.path): i for i, r in enumerate(additions)}
    new_rows.sort(key=lambda row: order.get(row[0], len(order)))
    shards, where = _adopt_parts(path, parts, secrets.token_hex(4))
    faiss_index = vectors.read(path / manifest["files"]["vectors"]["name"])  # in memory: it is modified
    removals = sorted({int(i) for i in removals})
    tombstoned: list[int] = []
    if removals:
        if vectors.supports_removal(faiss_index):
            faiss_index.remove_ids(np.array(removals, dtype=np.int64))
        else:
            tombstoned = removals
    last_id = max(current.sql("SELECT COALESCE(MAX(id), 0) FROM entries UNION ALL SELECT COALESCE(MAX(id), 0) FROM tombstones"))[0]
    ids = np.arange(last_id + 1, last_id + 1 + len(new_rows))
    placements = [where[row[0]] for row in new_rows]
    if new_rows:
        vectors.add(faiss_index, load_rows(path, placements, extractor.dim), ids, current.metric)
    entry_rows = _entry_rows(ids, new_rows, placements)
    base = path / manifest["files"]["entries"]["name"]
    dead = current.tombstones + len(tombstoned)
    rebuild = tombstoned and dead > TOMBSTONE_REBUILD * faiss_index.ntotal
    current.close()
    fields = {key: manifest[key] for key in ("metric", "factory", "search", "build")}
    if rebuild:
        faiss_index, write_entries = _rebuilt(path, manifest, base, entry_rows, removals, extractor)
    else:
        def write_entries(p):
            _entries_file(p, base, entry_rows, removals, tombstoned)
    _commit(path, manifest, extractor, faiss_index, write_entries, manifest.get("shards", []) + shards, fields)
    staging.clear()
    return open_at(path, extractor), sum(len(part.skipped) for part in parts)


def _rebuilt(path, manifest, base, entry_rows, removals, extractor):
    """A fresh FAISS index of the live entries (HNSW cannot delete), and an entries table without tombstones."""
    scratch = path / f"{TEMP_PREFIX}rebuild.sqlite"
    _entries_file(scratch, base, entry_rows, removals, [])
    with sqlite3.connect(scratch) as db:
        dead = [row[0] for row in db.execute("SELECT id FROM tombstones")]
        db.executemany("DELETE FROM entries WHERE id = ?", [(i,) for i in dead])
        db.execute("DELETE FROM tombstones")
        live = db.execute("SELECT id, shard, row FROM entries ORDER BY id").fetchall()
    faiss_index = vectors.new_index(extractor.dim, manifest["metric"], manifest["factory"])
    embeddings = load_rows(path, [(shard, row) for _, shard, row in live], extractor.dim)
    vectors.train_and_add(faiss_index, embeddings, np.array([i for i, _, _ in live]), manifest["metric"])

    def write_entries(p):
        shutil.copyfile(scratch, p)
        scratch.unlink(missing_ok=True)

    return faiss_index, write_entries


def _existing_index(index: str | Path | None) -> Path:
    """The path of an index that must exist already (a one-line error otherwise)."""
    path = Path(index) if index is not None else default_index_path()
    read_manifest(path)
    return path


def add_images(
    inputs: Sequence[str | Path],
    index: str | Path | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: ProgressCallback | None = None,
    shard_size: int = SHARD_SIZE,
) -> Changes:
    """Embed and add only the images whose content is not in the index yet (by SHA-256)."""
    path = _existing_index(index)
    start = time.perf_counter()
    records = _gather(inputs)
    with _Lock(path):
        with open_at(path) as current:
            known = {row[0] for row in current.sql("SELECT sha256 FROM entries")}
        new, seen, unchanged = [], set(), 0
        for record in records:
            try:
                digest = sha256_file(record.path)
            except OSError:
                digest = None  # unreadable: let extraction report it
            if digest is not None and (digest in known or digest in seen):
                unchanged += 1
                continue
            seen.add(digest)
            new.append(record)
        if not new:
            return Changes(unchanged=unchanged, seconds=time.perf_counter() - start)
        updated, skipped = _apply(path, "add", [], new, batch_size, workers, max_pixels, progress, shard_size)
        updated.close()
    return Changes(added=len(new) - skipped, unchanged=unchanged, skipped=skipped, seconds=time.perf_counter() - start)


def _ids_under(current: Index, targets: Sequence[Path]) -> list[int]:
    ids = []
    for target in targets:
        absolute = os.path.abspath(target)  # entries store paths the same way (see scan_folder)
        rows = current.sql(
            "SELECT id FROM entries WHERE path = ? OR path LIKE ? ESCAPE '\\'",
            (absolute, absolute.rstrip("/").replace("%", "\\%").replace("_", "\\_") + "/%"),
        )
        ids += [row[0] for row in rows]
    return ids


def remove_images(paths: Sequence[str | Path], index: str | Path | None = None) -> Changes:
    """Remove the entries of these files (or of every file under these folders)."""
    path = _existing_index(index)
    start = time.perf_counter()
    with _Lock(path):
        with open_at(path) as current:
            ids = _ids_under(current, [Path(p) for p in paths])
        if not ids:
            raise VisretError(f"none of {', '.join(map(str, paths))} is in the index at {path}")
        _apply(path, "remove", ids, [], 32, 1, DEFAULT_MAX_PIXELS, None, SHARD_SIZE)[0].close()
    return Changes(removed=len(set(ids)), seconds=time.perf_counter() - start)


def sync_index(
    folder: str | Path,
    index: str | Path | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: ProgressCallback | None = None,
    shard_size: int = SHARD_SIZE,
) -> Changes:
    """Make the index's entries under ``folder`` match it: add new and changed files, remove deleted ones."""
    path = _existing_index(index)
    start = time.perf_counter()
    records = {str(r.path): r for r in scan_folder(folder)}
    with _Lock(path):
        with open_at(path) as current:
            ids = _ids_under(current, [Path(folder)])
            known = {row[0]: (row[1], row[2]) for row in current.rows_for("SELECT id, path, sha256 FROM entries WHERE id IN ({})", ids)}
        removals, unchanged, present = [], 0, set()
        for entry_id, (file, digest) in known.items():
            present.add(file)
            if file not in records:
                removals.append(entry_id)
                continue
            try:
                same = sha256_file(Path(file)) == digest
            except OSError:
                same = False
            if same:
                unchanged += 1
            else:
                removals.append(entry_id)
                present.discard(file)
        additions = [r for p, r in records.items() if p not in present]
        if not removals and not additions:
            return Changes(unchanged=unchanged, seconds=time.perf_counter() - start)
        updated, skipped = _apply(path, "sync", removals, additions, batch_size, workers, max_pixels, progress, shard_size)
        updated.close()
    return Changes(added=len(additions) - skipped, removed=len(removals), unchanged=unchanged, skipped=skipped, seconds=time.perf_counter() - start)
