"""Building an index: from images (``build_index``) or from vectors computed elsewhere (``index_from_arrays``).

Every option is checked before any image is embedded; vectors are committed in parts to the staging
area as they come, so an interrupted build resumes where it stopped (``_changes`` has the machinery).
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence, Sized

import numpy as np

from visret.embedding._fitting import fit_extractor
from visret.embedding.engines import SHARD_SIZE, EmbedOptions, open_embedder
from visret.errors import VisretError
from visret.features._extractor import DEFAULT_EXTRACTOR, FeatureExtractor
from visret.features._lookup import resolve_extractor
from visret.images._folders import ImageRecord
from visret.images.loaders import find_images
from visret.index import _search_params, _vectors as vectors
from visret.index._changes import MAX_VECTOR_DIM, ProgressCallback, embed_resumably, shard_files
from visret.index._index import Index, open_at
from visret.index._reader import default_index_path
from visret.index._store import entries
from visret.index._store.staging import Part, Staging, skipped_paths
from visret.index._store.layout import CODES
from visret.index._store.writer import Generation, Writer, check_target
from visret.index.backends import DEFAULT_BACKEND, backend_for
from visret.index.distances import Distance, default_metric, get_distance
from visret.index._rerank import parse_rerank

def _prepared(staging: Staging, extractor: FeatureExtractor, records: Sequence[ImageRecord], options: EmbedOptions) -> None:
    """Fit a learning extractor once per run (an interrupted run reuses the saved state); take any
    other's state now, before embedding: a CNN exports its network then (``visret_keras.exported``),
    so the collection is embedded by the runtime that will embed its queries."""
    if not extractor.requires_fit:
        extractor.get_state()
        return
    state = staging.load_state()
    if state is not None:
        extractor.set_state(state)
        return
    fit_extractor(extractor, records, options.max_pixels, max_bytes=options.max_bytes)
    staging.save_state(extractor.get_state())


#: ``keep_vectors=False`` with a structure that needs the vectors.
NO_CODES = ("{factory!r} does not keep vectors as codes it can decode and forget (IVF with SQ8 or PQ does): "
            "its index needs the stored vectors; leave keep_vectors unset")


def _checked_factory(factory: str, extractor: FeatureExtractor, distance: Distance, n_images: int, keep_vectors: bool | None) -> None:
    """The backend a factory names refuses what it cannot build, before any image is embedded; so does a FAISS
    factory asked to keep the vectors as codes alone when it does not code them."""
    if keep_vectors is False and factory == "Flat":
        raise VisretError(NO_CODES.format(factory=factory))
    if factory not in ("auto", "Flat"):
        backend, spec = backend_for(factory)
        vector_dim = distance.vector_dim(extractor.dim)
        backend.check(spec, vector_dim, distance, n_images)
        if keep_vectors is False and backend.name == DEFAULT_BACKEND:
            from visret.index._faiss_structure import FaissStructure

            if not FaissStructure(vectors.new_index(vector_dim, distance, spec)).holds_codes:
                raise VisretError(NO_CODES.format(factory=factory))


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
    keep_vectors: bool | None

    @property
    def vector_dim(self) -> int:
        return self.distance.vector_dim(self.extractor.dim)


def _target(index, extractor: FeatureExtractor, metric: str | None, factory: str, max_memory: int | None,
            nprobe: int | None, ef_search: int | None, rerank: str | None, keep_vectors: bool | None) -> _Target:
    parse_rerank(rerank)
    metric = metric or default_metric(extractor)
    distance = get_distance(metric)
    if metric == "hamming" and not extractor.binary:  # known before any image is embedded
        raise VisretError(f"distance hamming needs 0/1 features (perceptual hashes such as phash), not {extractor.name}; use l2 or cosine")
    distance.check_factory("Flat" if factory == "auto" else factory)
    if max_memory is not None and max_memory <= 0:
        raise VisretError(f"max memory must be positive, got {max_memory}")
    if any(value is not None and value < 1 for value in (nprobe, ef_search)):
        raise VisretError(f"nprobe and ef_search must be at least 1, got {nprobe} and {ef_search}")
    path = Path(index) if index is not None else default_index_path()
    check_target(path)
    target = _Target(path, extractor, metric, distance, factory, max_memory, {"nprobe": nprobe, "ef_search": ef_search}, rerank, keep_vectors)
    if target.vector_dim > MAX_VECTOR_DIM:
        raise VisretError(f"{extractor.name} with metric {metric} gives {target.vector_dim}-d vectors, more than the {MAX_VECTOR_DIM} supported; use smaller parameters")
    return target


def _commit_build(writer: Writer, target: _Target, parts: Sequence[Part], order: dict[str, int] | None, build: dict[str, Any]) -> None:
    """Committed parts as the first generation: ids follow ``order`` (the scan or list order; ``None``: the
    parts' own). The entries table's rows stream from the staged parts into SQLite: per entry the build
    keeps an int64 or two, where the rows, dicts of ids and places and a list of table rows held at once
    cost ~800 bytes an entry (docs/benchmarks.md)."""
    parts = [part for part in parts if part.size]
    ids = _ids(parts, order)
    vector_dim = target.vector_dim
    chosen = vectors.choose_factory(len(ids), vector_dim, target.max_memory) if target.factory == "auto" else target.factory
    structure, backend = None, None
    search = {knob: value for knob, value in target.search.items() if value is not None}
    if chosen != "Flat":
        backend, spec = backend_for(chosen)
        staged = [part.vectors for part in parts]
        structure = backend.build(spec, vector_dim, target.distance, staged, ids)
        search = _tuned_search(structure, staged, ids, target)
    as_codes = _as_codes(structure, target.keep_vectors, chosen)
    shards = [] if as_codes else writer.adopt(parts, places=False)[0]
    now = time.time()
    sizes: Counter[str] = Counter()  # entries per class, counted as the rows stream

    def table_rows():
        start = 0
        for number, part in enumerate(parts):
            shard = "" if as_codes else shards[number]["name"]
            rows = part.rows
            sizes.update(row[1] for row in rows if row[1] is not None)
            for place, (row, entry_id) in enumerate(zip(rows, ids[start : start + part.size].tolist())):
                yield (entry_id, *row, now, shard, -1 if as_codes else place)
            start += part.size

    def write_entries(path: Path) -> None:
        entries.write(path, None, table_rows())
        generation.summary = (len(ids), dict(sorted(sizes.items())))

    extractor = target.extractor
    fields = {
        "extractor": extractor.get_config(), "dim": extractor.dim, "vector_dim": vector_dim, "metric": target.metric,
        "factory": chosen, "search": search, "build": build, "created_at": time.time(), "last_id": len(ids),
    }
    if as_codes:
        fields["stored_as"] = CODES
    if target.rerank and target.rerank != "none":
        fields["rerank"] = target.rerank
    if backend is not None:
        fields["backend"] = backend.name
    generation = Generation(shards, ids, write_entries, fields, structure, extractor.get_state())
    writer.commit(generation)


def _as_codes(structure, keep_vectors: bool | None, factory: str) -> bool:
    """Whether the index keeps its vectors only as the structure's codes, no shards: by default when the
    structure codes them (10M x 128 float32 shards are 5.1 GB beside 1.3 GB of SQ8 codes)."""
    if keep_vectors is False and (structure is None or not structure.holds_codes):
        raise VisretError(NO_CODES.format(factory=factory))  # auto chose it, or a plugin's backend
    return keep_vectors is not True and structure is not None and structure.holds_codes


def _ids(parts: Sequence[Part], order: dict[str, int] | None) -> np.ndarray:
    """Each staged row's id, rows in part order: ids follow ``order`` (rows it does not know last, by
    path), else the parts' own order."""
    total = sum(part.size for part in parts)
    if order is None:
        return np.arange(1, total + 1, dtype=np.int64)
    keys = np.fromiter((order.get(row[0], len(order)) for part in parts for row in part.rows), np.int64, total)
    ranking = np.argsort(keys, kind="stable")
    unknown = np.flatnonzero(keys[ranking] == len(order))
    if len(unknown):
        missing = set(ranking[unknown].tolist())
        paths = {}
        for j, row in enumerate(row for part in parts for row in part.rows):
            if j in missing:
                paths[j] = row[0]
        ranking[unknown] = sorted(missing, key=paths.__getitem__)
    ids = np.empty(total, np.int64)
    ids[ranking] = np.arange(1, total + 1)
    return ids


def _tuned_search(structure, files: Sequence[Path], ids: np.ndarray, target: _Target) -> dict[str, Any]:
    """The search parameters given, and those left unset chosen for recall (``visret.index._search_params``)."""
    given = {knob: value for knob, value in target.search.items() if value is not None}
    chosen: dict[str, Any] = {}
    if not set(structure.search_knobs()) <= set(given):
        chosen = _search_params.choose(structure, files, ids, target.distance)  # this build's own, read one at a time
    structure.set_search_params(**{knob: value for knob, value in {**chosen, **given}.items() if knob != "recall_at_10"})
    return {**chosen, **given}


def build_index(
    source: str | Path,
    extractor: str | FeatureExtractor = DEFAULT_EXTRACTOR,
    index: str | Path | None = None,
    *,
    metric: str | None = None,
    params: dict[str, Any] | None = None,
    factory: str = "Flat",
    max_memory: int | None = None,
    nprobe: int | None = None,
    ef_search: int | None = None,
    rerank: str | None = None,
    keep_vectors: bool | None = None,
    progress: ProgressCallback | None = None,
    **embedding: Any,
) -> Index:
    """Index every image in ``source`` and return the opened index.

    ``source`` is a folder (ImageFolder layout gives labels) or a ``.csv``/``.parquet`` list
    with ``path`` and optional ``label`` columns (``visret.images._lists``). ``engine`` is
    ``local`` (worker processes) or ``ray`` (a Ray Data actor pool, ``actors`` of them, on the
    cluster at ``ray_address``; see ``visret.embedding.engines``): the index is the same either way.

    Unreadable files are skipped with a warning each; their count is in
    ``index.manifest["build"]``. An interrupted build resumes when run again with the same
    arguments. ``factory`` is any FAISS index-factory string, or ``auto`` (chosen by size and
    ``max_memory`` bytes). ``metric``: ``l2``, ``cosine``, ``l1``, ``intersection``, ``chi2`` or
    ``hamming``; by default ``hamming`` for perceptual hashes, else ``l2``.
    ``rerank`` is the re-ranking queries get by default (see ``visret.index._rerank``). ``keep_vectors``:
    whether the float32 vectors stay in shards beside a structure that codes them (SQ8, PQ); by default
    (None) they do not, and whatever reads stored vectors (re-ranking, duplicates, evaluation, export)
    reads them decoded from the codes; True keeps them exact (4 bytes a dimension more on disk).
    ``progress(done, total)`` is called as batches finish. ``embedding`` keywords are the fields of
    ``EmbedOptions`` (``batch_size``, ``workers``, ``max_pixels``, ``max_bytes``, ``shard_size``,
    ``engine``, ``ray_address``, ``actors``).
    """
    options = EmbedOptions.from_keywords("build_index", embedding)
    extractor = resolve_extractor(extractor, params)
    target = _target(index, extractor, metric, factory, max_memory, nprobe, ef_search, rerank, keep_vectors)
    records = find_images(source)
    if not records:
        raise VisretError(f"no image files found in {source}")
    _checked_factory(factory, extractor, target.distance, len(records), keep_vectors)
    start = time.perf_counter()
    with Writer(target.path, replace=True) as writer:
        shown = str(Path(source).absolute()) if Path(source).exists() else str(source)  # a loader's NAME:SOURCE as given
        run = {"kind": "build", "source": shown, "extractor": extractor.get_config(),
               "metric": target.metric, "generation": writer.previous["generation"] if writer.previous else None}
        staging = Staging(target.path, run)
        with open_embedder(extractor, options) as embedder:  # the engine first: a cluster that cannot be reached fails now
            _prepared(staging, extractor, records, options)
            staging.vector_dim = target.vector_dim  # final once fitted (LDA)
            parts = embed_resumably(staging, embedder, target.distance, records, progress, options.shard_size)
        indexed = sum(part.size for part in parts)
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


#: Bytes of vectors a shard of ``index_from_arrays`` holds by default: images are committed every
#: ``SHARD_SIZE`` so an interrupted embedding loses little, but vectors handed over are never resumed, and
#: 10M of them in 2,048-row shards are 4,883 files for every query to open (131,072 rows of 128-d here).
ARRAY_SHARD_BYTES = 64 * 2**20


def index_from_arrays(
    vectors: np.ndarray | Iterable[np.ndarray],
    paths: Iterable[str | Path],
    labels: Iterable[str | None] | None = None,
    index: str | Path | None = None,
    extractor: str | dict[str, Any] | FeatureExtractor = DEFAULT_EXTRACTOR,
    metric: str | None = None,
    *,
    hashes: Iterable[str] | None = None,
    factory: str = "Flat",
    max_memory: int | None = None,
    nprobe: int | None = None,
    ef_search: int | None = None,
    shard_size: int | None = None,
    rerank: str | None = None,
    keep_vectors: bool | None = None,
    progress: ProgressCallback | None = None,
) -> Index:
    """An index of vectors computed elsewhere, as if ``extractor`` had embedded the files ``paths``.

    ``vectors`` is an ``(n, extractor.dim)`` array in the order of ``paths`` (a memory map is
    read one shard at a time) or an iterable of such row blocks; ``paths``, ``labels`` and ``hashes``
    may be lists or iterables read in step with the vectors (a generator of ten million paths costs
    nothing, a list of them ~1 GB), so the collection never has to fit in memory; IVF/PQ factories are
    trained on a seeded sample and filled shard by shard. Image queries are embedded by ``extractor``
    (fitted already, if it learns); ``index.query_vectors`` takes vectors. ``hashes`` (each file's
    SHA-256) let ``add`` and ``sync`` recognise files already indexed; without them every file counts
    as changed. ``shard_size`` (rows a shard file holds) is by default what fills ``ARRAY_SHARD_BYTES``.
    """
    extractor = resolve_extractor(extractor)
    target = _target(index, extractor, metric, factory, max_memory, nprobe, ef_search, rerank, keep_vectors)
    total = len(paths) if isinstance(paths, Sized) else 0  # 0: not known until the vectors end
    sizes = [len(column) for column in (labels, hashes) if isinstance(column, Sized)]
    if total and any(size != total for size in sizes):
        raise VisretError(f"{total} paths but {len(labels) if isinstance(labels, Sized) else total} labels and "
                          f"{len(hashes) if isinstance(hashes, Sized) else total} hashes")
    if total:
        _checked_factory(factory, extractor, target.distance, total, keep_vectors)
    columns = _Columns(paths, labels, hashes, total)
    start = time.perf_counter()
    with Writer(target.path, replace=True) as writer:
        run = {"kind": "arrays", "token": secrets.token_hex(8)}  # vectors handed over are never resumed
        staging = Staging(target.path, run, target.vector_dim)
        done = 0
        for chunk in _chunks(vectors, shard_size or max(SHARD_SIZE, ARRAY_SHARD_BYTES // (4 * target.vector_dim))):
            if chunk.ndim != 2 or chunk.shape[1] != extractor.dim:
                raise VisretError(f"vectors must be rows of {extractor.dim} numbers ({extractor.name}'s dim), got shape {chunk.shape}")
            staging.commit(target.distance.prepare(np.asarray(chunk, np.float32)), columns.take(len(chunk)), [], stamped=False)
            done += len(chunk)
            if progress is not None:
                progress(done, max(total, done))
        columns.finish(done)
        if not total:
            _checked_factory(factory, extractor, target.distance, done, keep_vectors)
        parts = staging.parts()
        columns.check_unique(parts)
        build = {"source": "arrays", "indexed": done, "skipped": 0, "seconds": round(time.perf_counter() - start, 3)}
        _commit_build(writer, target, parts, None, build)  # committed in the order of names
        staging.clear()
    return open_at(target.path, extractor)


class _Columns:
    """The rows ``index_from_arrays`` is given, read in step with its vectors: paths, labels and hashes
    as lists or iterables, each path kept only as a 64-bit hash until uniqueness is checked."""

    def __init__(self, paths: Iterable, labels: Iterable | None, hashes: Iterable | None, total: int):
        self.total = total  # 0 when not known
        self.paths, self.labels, self.hashes = iter(paths), None if labels is None else iter(labels), None if hashes is None else iter(hashes)
        self.seen: list[np.ndarray] = []

    def take(self, n: int) -> list[tuple[str, str | None, str]]:
        names = [str(p) for p in islice(self.paths, n)]
        if len(names) < n:
            raise VisretError(f"more vectors than the {self.count + len(names)} paths")
        labels = [None] * n if self.labels is None else [None if x is None else str(x) for x in islice(self.labels, n)]
        hashes = [""] * n if self.hashes is None else [str(h) for h in islice(self.hashes, n)]
        if len(labels) < n or len(hashes) < n:
            raise VisretError(f"fewer labels or hashes than paths ({self.count + len(labels)} labels, "
                              f"{self.count + len(hashes)} hashes for {self.count + n} or more paths)")
        self.seen.append(np.fromiter(map(hash, names), np.int64, n))
        return list(zip(names, labels, hashes))

    @property
    def count(self) -> int:
        return sum(map(len, self.seen))

    def finish(self, vectors: int) -> None:
        """No path, label or hash left over once the vectors end."""
        if not vectors:
            raise VisretError("no vectors to index")
        if next(self.paths, None) is not None:
            raise VisretError(f"{vectors} vectors for {self.total or 'more'} paths")
        if any(column is not None and next(column, None) is not None for column in (self.labels, self.hashes)):
            raise VisretError(f"more labels or hashes than the {vectors} paths")

    def check_unique(self, parts: Sequence[Part]) -> None:
        """Each path is one entry: equal 64-bit hashes are the only candidates, checked on the staged rows."""
        seen = np.concatenate(self.seen)
        values, counts = np.unique(seen, return_counts=True)
        shared = set(values[counts > 1].tolist())
        if not shared:
            return
        found: set[str] = set()
        for row in (row for part in parts for row in part.rows):
            if hash(row[0]) in shared:
                if row[0] in found:
                    raise VisretError(f"paths must be unique: each is one entry, and {row[0]} is given twice")
                found.add(row[0])


# ---- add / remove / sync -------------------------------------------------------------------
