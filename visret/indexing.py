"""Writing indexes: build, add, remove and sync, each crash-safe and resumable.

Every option is checked before any image is embedded. Vectors are computed in parts committed
to the index's staging area as they come (an interrupted run resumes where it stopped), then
become immutable shards of a new generation that ``visret.store.writer`` puts in place.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from visret import vectors
from visret.dataset import ImageRecord, scan_folder
from visret.loaders import find_images
from visret.distances import Distance, default_metric, get_distance
from visret.errors import VisretError
from visret.backends import DEFAULT_BACKEND, backend_for, backend_named
from visret.engines import SHARD_SIZE, EmbedOptions, StreamingEmbedder, open_embedder
from visret.extractor import DEFAULT_EXTRACTOR, FeatureExtractor
from visret.fitting import fit_extractor
from visret.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, ImageReadError, file_sha256, is_image_path, utf8_name
from visret.index import Index, default_index_path, open_at
from visret.plugins import resolve_extractor
from visret.rerank import parse_rerank
from visret.store import crashpoints, entries
from visret.store.layout import read_manifest
from visret.store.staging import Part, Staging, skipped_paths
from visret.store.writer import Generation, Writer, check_target

#: Longest vector an index stores (4 MiB each): a guard against parameters that would exhaust memory.
MAX_VECTOR_DIM = 2**20
#: What a new generation takes over from the current one's manifest (with its search structure's fields).
CARRIED_FIELDS = ("extractor", "dim", "vector_dim", "metric", "search", "build", "rerank", "last_id")
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
def _embed_resumably(
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


def _fitted(staging: Staging, extractor: FeatureExtractor, records: Sequence[ImageRecord], options: EmbedOptions) -> None:
    """Fit a learning extractor once per run: an interrupted run reuses the saved state."""
    if not extractor.requires_fit:
        return
    state = staging.load_state()
    if state is not None:
        extractor.set_state(state)
        return
    fit_extractor(extractor, records, options.max_pixels, max_bytes=options.max_bytes)
    staging.save_state(extractor.get_state())


def _shard_files(path: Path, shards: Sequence[dict[str, Any]]) -> list[Path]:
    return [path / s["name"] for s in shards]


def _checked_factory(factory: str, extractor: FeatureExtractor, distance: Distance, n_images: int) -> None:
    """The backend a factory names refuses what it cannot build, before any image is embedded."""
    if factory not in ("auto", "Flat"):
        backend, spec = backend_for(factory)
        backend.check(spec, distance.vector_dim(extractor.dim), distance, n_images)


# ---- build ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Target:
    """A new index's place and settings, every one checked before any vector is computed."""

    path: Path
    extractor: FeatureExtractor
    metric: str
    distance: Distance
    factory: str
    max_memory: int | None
    search: dict[str, int]
    rerank: str | None

    @property
    def vector_dim(self) -> int:
        return self.distance.vector_dim(self.extractor.dim)


def _target(index, extractor: FeatureExtractor, metric: str | None, factory: str, max_memory: int | None,
            nprobe: int, ef_search: int, rerank: str | None) -> _Target:
    parse_rerank(rerank)
    metric = metric or default_metric(extractor)
    distance = get_distance(metric)
    if metric == "hamming" and not extractor.binary:  # known before any image is embedded
        raise VisretError(f"distance hamming needs 0/1 features (perceptual hashes such as phash), not {extractor.name}; use l2 or cosine")
    distance.check_factory("Flat" if factory == "auto" else factory)
    if max_memory is not None and max_memory <= 0:
        raise VisretError(f"max memory must be positive, got {max_memory}")
    if nprobe < 1 or ef_search < 1:
        raise VisretError(f"nprobe and ef_search must be at least 1, got {nprobe} and {ef_search}")
    path = Path(index) if index is not None else default_index_path()
    check_target(path)
    target = _Target(path, extractor, metric, distance, factory, max_memory, {"nprobe": nprobe, "ef_search": ef_search}, rerank)
    if target.vector_dim > MAX_VECTOR_DIM:
        raise VisretError(f"{extractor.name} with metric {metric} gives {target.vector_dim}-d vectors, more than the {MAX_VECTOR_DIM} supported; use smaller parameters")
    return target


def _commit_build(writer: Writer, target: _Target, parts: Sequence[Part], order: dict[str, int], build: dict[str, Any]) -> None:
    """Committed parts as the first generation: ids follow ``order`` (the scan or list order)."""
    rows = [row for part in parts for row in part.rows]
    ranked = sorted(rows, key=lambda row: (order.get(row[0], len(order)), row[0]))
    id_of = {row[0]: i for i, row in enumerate(ranked, start=1)}
    shards, where = writer.adopt(parts)
    ids = np.array([id_of[row[0]] for part in parts for row in part.rows], np.int64)
    vector_dim = target.vector_dim
    chosen = vectors.choose_factory(len(rows), vector_dim, target.max_memory) if target.factory == "auto" else target.factory
    structure, backend = None, None
    if chosen != "Flat":
        backend, spec = backend_for(chosen)
        structure = backend.build(spec, vector_dim, target.distance, _shard_files(writer.path, shards), ids)
    added = entries.new_rows([id_of[r[0]] for r in ranked], ranked, [where[r[0]] for r in ranked])
    extractor = target.extractor
    fields = {
        "extractor": extractor.get_config(), "dim": extractor.dim, "vector_dim": vector_dim, "metric": target.metric,
        "factory": chosen, "search": target.search, "build": build, "created_at": time.time(), "last_id": len(ranked),
    }
    if target.rerank and target.rerank != "none":
        fields["rerank"] = target.rerank
    if backend is not None:
        fields["backend"] = backend.name
    writer.commit(Generation(shards, ids, lambda p: entries.write(p, None, added), fields, structure, extractor.get_state()))


def build_index(
    source: str | Path,
    extractor: str | FeatureExtractor = DEFAULT_EXTRACTOR,
    index: str | Path | None = None,
    metric: str | None = None,
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
    max_bytes: int = DEFAULT_MAX_BYTES,
    rerank: str | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    actors: int | None = None,
) -> Index:
    """Index every image in ``source`` and return the opened index.

    ``source`` is a folder (ImageFolder layout gives labels) or a ``.csv``/``.parquet`` list
    with ``path`` and optional ``label`` columns (``visret.image_list``). ``engine`` is
    ``local`` (worker processes) or ``ray`` (a Ray Data actor pool, ``actors`` of them, on the
    cluster at ``ray_address``; see ``visret.engines``): the index is the same either way.

    Unreadable files are skipped with a warning each; their count is in
    ``index.manifest["build"]``. An interrupted build resumes when run again with the same
    arguments. ``factory`` is any FAISS index-factory string, or ``auto`` (chosen by size and
    ``max_memory`` bytes). ``metric``: ``l2``, ``cosine``, ``l1``, ``intersection``, ``chi2`` or
    ``hamming``; by default ``hamming`` for perceptual hashes, else ``l2``.
    ``rerank`` is the re-ranking queries get by default (see ``visret.rerank``).
    ``progress(done, total)`` is called as batches finish.
    """
    options = EmbedOptions(batch_size, workers, max_pixels, max_bytes, shard_size, engine, ray_address, actors)
    options.check()
    extractor = resolve_extractor(extractor, params)
    target = _target(index, extractor, metric, factory, max_memory, nprobe, ef_search, rerank)
    records = find_images(source)
    if not records:
        raise VisretError(f"no image files found in {source}")
    _checked_factory(factory, extractor, target.distance, len(records))
    start = time.perf_counter()
    with Writer(target.path, replace=True) as writer:
        run = {"kind": "build", "source": str(Path(source).absolute()), "extractor": extractor.get_config(),
               "metric": target.metric, "generation": writer.previous["generation"] if writer.previous else None}
        staging = Staging(target.path, run)
        with open_embedder(extractor, options) as embedder:  # the engine first: a cluster that cannot be reached fails now
            _fitted(staging, extractor, records, options)
            staging.vector_dim = target.vector_dim  # final once fitted (LDA)
            parts = _embed_resumably(staging, embedder, target.distance, records, progress, shard_size)
        indexed = sum(len(part.rows) for part in parts)
        if not indexed:
            raise VisretError(f"none of the {len(records)} image files in {source} could be read")
        build = {"source": run["source"], "indexed": indexed, "skipped": len(skipped_paths(parts)),
                 "seconds": round(time.perf_counter() - start, 3)}
        _commit_build(writer, target, parts, {str(r.path): i for i, r in enumerate(records)}, build)
        staging.clear()
    return open_at(target.path, extractor)


def _chunks(vectors: np.ndarray | Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Row blocks of at most ``size`` from an array (a memory map is read block by block) or chunks."""
    if isinstance(vectors, np.ndarray):
        for start in range(0, len(vectors), size):
            yield np.asarray(vectors[start : start + size])
        return
    for chunk in vectors:
        chunk = np.asarray(chunk)
        for start in range(0, len(chunk), size):
            yield chunk[start : start + size]


def index_from_arrays(
    vectors: np.ndarray | Iterable[np.ndarray],
    paths: Sequence[str | Path],
    labels: Sequence[str | None] | None = None,
    index: str | Path | None = None,
    extractor: str | dict[str, Any] | FeatureExtractor = DEFAULT_EXTRACTOR,
    metric: str | None = None,
    *,
    hashes: Sequence[str] | None = None,
    factory: str = "Flat",
    max_memory: int | None = None,
    nprobe: int = 16,
    ef_search: int = 64,
    shard_size: int = SHARD_SIZE,
    rerank: str | None = None,
    progress: ProgressCallback | None = None,
) -> Index:
    """An index of vectors computed elsewhere, as if ``extractor`` had embedded the files ``paths``.

    ``vectors`` is an ``(n, extractor.dim)`` array in the order of ``paths`` (a memory map is
    read one shard at a time) or an iterable of such row blocks, so the collection never has to
    fit in memory; IVF/PQ factories are trained on a seeded sample and filled shard by shard.
    Image queries are embedded by ``extractor`` (fitted already, if it learns);
    ``index.query_vectors`` takes vectors. ``hashes`` (each file's SHA-256) let ``add`` and
    ``sync`` recognise files already indexed; without them every file counts as changed.
    """
    extractor = resolve_extractor(extractor)
    target = _target(index, extractor, metric, factory, max_memory, nprobe, ef_search, rerank)
    names = [str(p) for p in paths]
    labels = [None] * len(names) if labels is None else [None if label is None else str(label) for label in labels]
    hashes = [""] * len(names) if hashes is None else [str(h) for h in hashes]
    if not names:
        raise VisretError("no vectors to index")
    if len(labels) != len(names) or len(hashes) != len(names):
        raise VisretError(f"{len(names)} paths but {len(labels)} labels and {len(hashes)} hashes")
    if len(set(names)) != len(names):
        raise VisretError("paths must be unique: each is one entry")
    _checked_factory(factory, extractor, target.distance, len(names))
    start = time.perf_counter()
    with Writer(target.path, replace=True) as writer:
        run = {"kind": "arrays", "token": secrets.token_hex(8)}  # vectors handed over are never resumed
        staging = Staging(target.path, run, target.vector_dim)
        done = 0
        for chunk in _chunks(vectors, shard_size):
            if chunk.ndim != 2 or chunk.shape[1] != extractor.dim:
                raise VisretError(f"vectors must be rows of {extractor.dim} numbers ({extractor.name}'s dim), got shape {chunk.shape}")
            if done + len(chunk) > len(names):
                raise VisretError(f"more vectors than the {len(names)} paths")
            rows = list(zip(names[done : done + len(chunk)], labels[done : done + len(chunk)], hashes[done : done + len(chunk)]))
            staging.commit(target.distance.prepare(np.asarray(chunk, np.float32)), rows, [])
            done += len(chunk)
            if progress is not None:
                progress(done, len(names))
        if done != len(names):
            raise VisretError(f"{done} vectors for {len(names)} paths")
        build = {"source": "arrays", "indexed": done, "skipped": 0, "seconds": round(time.perf_counter() - start, 3)}
        _commit_build(writer, target, staging.parts(), {name: i for i, name in enumerate(names)}, build)
        staging.clear()
    return open_at(target.path, extractor)


# ---- add / remove / sync -------------------------------------------------------------------
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
    writer: Writer, current: Index, kind: str, removals: Sequence[int], additions: Sequence[ImageRecord],
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
            parts = _embed_resumably(staging, embedder, distance, additions, progress, options.shard_size)
    order = {str(r.path): i for i, r in enumerate(additions)}
    new_rows = sorted((row for part in parts for row in part.rows), key=lambda row: order.get(row[0], len(order)))
    in_use = max(current._sql("SELECT COALESCE(MAX(id), 0) FROM entries UNION ALL SELECT COALESCE(MAX(id), 0) FROM tombstones"))[0]
    last_id = max(in_use, manifest.get("last_id", 0))  # ids of removed entries are never given again
    id_of = {row[0]: last_id + i for i, row in enumerate(new_rows, start=1)}
    new_shards, where = writer.adopt(parts)
    new_ids = np.array([id_of[row[0]] for part in parts for row in part.rows], np.int64)
    removals = sorted({int(i) for i in removals})
    shards, kept_ids, moved = writer.compact(manifest["shards"], np.asarray(current._store.ids), removals)
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
            structure = backend.build(spec, manifest["vector_dim"], distance, _shard_files(path, shards + new_shards), ids)
        else:
            structure.add(_shard_files(path, new_shards), new_ids)
    added = entries.new_rows([id_of[r[0]] for r in new_rows], new_rows, [where[r[0]] for r in new_rows])
    base = path / manifest["files"]["entries"]["name"]

    def write_entries(p: Path) -> None:
        entries.write(p, base, added, removals, [] if rebuild else tombstoned, moved, clear_tombstones=rebuild)

    fields = {key: manifest[key] for key in (*CARRIED_FIELDS, "factory", "backend", "imported") if key in manifest}
    fields["last_id"] = last_id + len(new_rows)
    current.close()
    writer.commit(Generation(shards + new_shards, ids, write_entries, fields, structure, extractor.get_state()))
    if staging is not None:
        staging.clear()
    return len(skipped_paths(parts))


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
    max_bytes: int = DEFAULT_MAX_BYTES,
    engine: str = "local",
    ray_address: str | None = None,
    actors: int | None = None,
) -> Changes:
    """Embed and add only the images whose content is not in the index yet (by SHA-256)."""
    options = EmbedOptions(batch_size, workers, max_pixels, max_bytes, shard_size, engine, ray_address, actors)
    options.check()
    path = _existing_index(index)
    start = time.perf_counter()
    records = _gather(inputs)
    with Writer(path) as writer:
        current = open_at(path)
        known = {row[0] for row in current._sql("SELECT sha256 FROM entries")}
        new, seen, unchanged = [], set(), 0
        for record in records:
            try:
                digest = file_sha256(record.path, max_bytes)
            except ImageReadError:
                digest = None  # unreadable: let extraction report it
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


def _ids_under(current: Index, targets: Sequence[Path]) -> list[int]:
    ids = []
    for target in targets:
        absolute = os.path.abspath(target)  # entries store paths the same way (see scan_folder)
        if not utf8_name(absolute):  # never indexed: such names are skipped when indexing
            continue
        rows = current._sql(
            "SELECT id FROM entries WHERE path = ? OR path LIKE ? ESCAPE '\\'",
            (absolute, absolute.rstrip("/").replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"),
        )
        ids += [row[0] for row in rows]
    return ids


def remove_images(paths: Sequence[str | Path], index: str | Path | None = None) -> Changes:
    """Remove the entries of these files (or of every file under these folders)."""
    path = _existing_index(index)
    start = time.perf_counter()
    with Writer(path) as writer:
        current = open_at(path)
        ids = _ids_under(current, [Path(p) for p in paths])
        if not ids:
            current.close()
            raise VisretError(f"none of {', '.join(map(str, paths))} is in the index at {path}")
        _apply(writer, current, "remove", ids, [], EmbedOptions(), None)
    return Changes(removed=len(set(ids)), seconds=time.perf_counter() - start)


def sync_index(
    folder: str | Path,
    index: str | Path | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: ProgressCallback | None = None,
    shard_size: int = SHARD_SIZE,
    max_bytes: int = DEFAULT_MAX_BYTES,
    engine: str = "local",
    ray_address: str | None = None,
    actors: int | None = None,
) -> Changes:
    """Make the index's entries under ``folder`` match it: add new and changed files, remove deleted ones."""
    options = EmbedOptions(batch_size, workers, max_pixels, max_bytes, shard_size, engine, ray_address, actors)
    options.check()
    path = _existing_index(index)
    start = time.perf_counter()
    records = {str(r.path): r for r in scan_folder(folder)}
    with Writer(path) as writer:
        current = open_at(path)
        ids = _ids_under(current, [Path(folder)])
        known = {row[0]: (row[1], row[2]) for row in current.rows_for("SELECT id, path, sha256 FROM entries WHERE id IN ({})", ids)}
        removals, unchanged, present = [], 0, set()
        for entry_id, (file, digest) in known.items():
            present.add(file)
            if file not in records:
                removals.append(entry_id)
                continue
            try:
                same = file_sha256(file, max_bytes) == digest
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
