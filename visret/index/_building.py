"""Building an index: from images (``build_index``) or from vectors computed elsewhere (``index_from_arrays``).

Every option is checked before any image is embedded; vectors are committed in parts to the staging
area as they come, so an interrupted build resumes where it stopped (``_changes`` has the machinery).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

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
from visret.index._store.writer import Generation, Writer, check_target
from visret.index.backends import backend_for
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
            nprobe: int | None, ef_search: int | None, rerank: str | None) -> _Target:
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
    target = _Target(path, extractor, metric, distance, factory, max_memory, {"nprobe": nprobe, "ef_search": ef_search}, rerank)
    if target.vector_dim > MAX_VECTOR_DIM:
        raise VisretError(f"{extractor.name} with metric {metric} gives {target.vector_dim}-d vectors, more than the {MAX_VECTOR_DIM} supported; use smaller parameters")
    return target


def _commit_build(writer: Writer, target: _Target, parts: Sequence[Part], order: dict[str, int] | None, build: dict[str, Any]) -> None:
    """Committed parts as the first generation: ids follow ``order`` (the scan or list order; ``None``: the
    parts' own). The entries table's rows stream into SQLite: per entry this keeps the part's row and an
    int64 or two, where dicts of ids and places and a list of table rows cost ~300 bytes an entry (840 in all
    at 1M; docs/benchmarks.md)."""
    parts = [part for part in parts if part.rows]
    rows = [row for part in parts for row in part.rows]
    counts = np.array([len(part.rows) for part in parts], np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)])
    ranking = _ranking(rows, order)
    ids = np.empty(len(rows), np.int64)
    ids[ranking] = np.arange(1, len(rows) + 1)
    shards, _ = writer.adopt(parts, places=False)
    part_of = np.repeat(np.arange(len(parts)), counts)

    now = time.time()

    def table_rows():
        for begin in range(0, len(ranking), 65536):  # Python ints for a slice at a time
            chosen = ranking[begin : begin + 65536]
            for rank, j, number in zip(range(begin + 1, begin + 1 + len(chosen)), chosen.tolist(), part_of[chosen].tolist()):
                yield (rank, *rows[j], now, shards[number]["name"], j - int(starts[number]))

    vector_dim = target.vector_dim
    chosen = vectors.choose_factory(len(rows), vector_dim, target.max_memory) if target.factory == "auto" else target.factory
    structure, backend = None, None
    search = {knob: value for knob, value in target.search.items() if value is not None}
    if chosen != "Flat":
        backend, spec = backend_for(chosen)
        files = shard_files(writer.path, shards)
        structure = backend.build(spec, vector_dim, target.distance, files, ids)
        search = _tuned_search(structure, files, ids, target)
    extractor = target.extractor
    fields = {
        "extractor": extractor.get_config(), "dim": extractor.dim, "vector_dim": vector_dim, "metric": target.metric,
        "factory": chosen, "search": search, "build": build, "created_at": time.time(), "last_id": len(rows),
    }
    if target.rerank and target.rerank != "none":
        fields["rerank"] = target.rerank
    if backend is not None:
        fields["backend"] = backend.name
    writer.commit(Generation(shards, ids, lambda p: entries.write(p, None, table_rows()), fields, structure, extractor.get_state()))


def _ranking(rows: Sequence[tuple], order: dict[str, int] | None) -> np.ndarray:
    """Positions of ``rows`` in id order: by ``order`` (rows it does not know last, by path), else as they are."""
    if order is None:
        return np.arange(len(rows))
    keys = np.fromiter((order.get(row[0], len(order)) for row in rows), np.int64, len(rows))
    ranking = np.argsort(keys, kind="stable")
    unknown = np.flatnonzero(keys[ranking] == len(order))
    if len(unknown):
        ranking[unknown] = sorted(ranking[unknown].tolist(), key=lambda j: rows[j][0])
    return ranking


def _tuned_search(structure, files: Sequence[Path], ids: np.ndarray, target: _Target) -> dict[str, Any]:
    """The search parameters given, and those left unset chosen for recall (``visret.index._search_params``)."""
    given = {knob: value for knob, value in target.search.items() if value is not None}
    chosen: dict[str, Any] = {}
    if not set(structure.search_knobs()) <= set(given):
        shards = [np.load(path, mmap_mode="r", allow_pickle=False) for path in files]  # this build's own
        chosen = _search_params.choose(structure, shards, ids, target.distance)
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
    ``rerank`` is the re-ranking queries get by default (see ``visret.index._rerank``).
    ``progress(done, total)`` is called as batches finish. ``embedding`` keywords are the fields of
    ``EmbedOptions`` (``batch_size``, ``workers``, ``max_pixels``, ``max_bytes``, ``shard_size``,
    ``engine``, ``ray_address``, ``actors``).
    """
    options = EmbedOptions.from_keywords("build_index", embedding)
    extractor = resolve_extractor(extractor, params)
    target = _target(index, extractor, metric, factory, max_memory, nprobe, ef_search, rerank)
    records = find_images(source)
    if not records:
        raise VisretError(f"no image files found in {source}")
    _checked_factory(factory, extractor, target.distance, len(records))
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
    nprobe: int | None = None,
    ef_search: int | None = None,
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
        _commit_build(writer, target, staging.parts(), None, build)  # committed in the order of names
        staging.clear()
    return open_at(target.path, extractor)


# ---- add / remove / sync -------------------------------------------------------------------
