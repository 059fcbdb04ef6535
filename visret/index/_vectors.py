"""FAISS indexes for approximate search: factory strings checked before any work, chosen by size,
trained on a seeded sample and filled shard by shard (never all vectors in memory at once)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import faiss
import numpy as np

from visret.index.distances import Distance
from visret.errors import VisretError

#: Vectors a FAISS index is trained on at least (a seeded sample of the collection) ...
TRAIN_SAMPLE = 100_000
#: ... and per inverted list, when more (k-means wants about 40 points per centroid).
TRAIN_PER_LIST = 50
#: The ``factory`` an index records once a FAISS index built elsewhere is attached (``visret.index._autofaiss``).
IMPORTED = "imported"


def new_index(vector_dim: int, distance: Distance, factory: str) -> faiss.Index:
    """An empty FAISS index whose ids are ours (the entries table's ids)."""
    distance.check_factory(factory)
    try:
        inner = faiss.index_factory(vector_dim, factory, distance.faiss_metric)
    except RuntimeError:
        raise VisretError(f"{factory!r} is not a FAISS index-factory string for {vector_dim}-d vectors") from None
    _without_polysemous_training(inner)
    if isinstance(inner_index(inner), faiss.IndexIVF):
        return inner  # IVF stores the ids it is given and removes by them; an id map over it goes out of step on removal
    return faiss.IndexIDMap2(inner)


def _without_polysemous_training(index: faiss.Index) -> None:
    """FAISS's factory turns on polysemous training for PQ codes: 20x longer training (120 s
    instead of 5 s for PQ64 on 30,000 vectors), for a Hamming pre-filter visret's searches never use."""
    inner = inner_index(index)
    if hasattr(inner, "do_polysemous_training"):
        inner.do_polysemous_training = False


_TRIAL = """
import sys, numpy as np, faiss
d, metric, factory, n = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
index = faiss.index_factory(d, factory, metric)
inner = index
while isinstance(inner, faiss.IndexPreTransform):
    inner = faiss.downcast_index(inner.index)
if hasattr(inner, "do_polysemous_training"):
    inner.do_polysemous_training = False
ivf = faiss.try_extract_index_ivf(index)
if ivf is not None:
    ivf.cp.niter = 1
x = np.random.default_rng(0).random((n, d), dtype=np.float32)
if not index.is_trained:
    index.train(x)
index.add(x[:64])
index.search(x[:2], 3)
"""


def check_factory(factory: str, vector_dim: int, distance: Distance, n_vectors: int) -> None:
    """Refuse a factory string that FAISS cannot build, train or search, before anything runs.

    FAISS aborts the whole process on some inputs (``HNSW0``), so the trial runs in a child
    process on a small random sample.
    """
    index = new_index(vector_dim, distance, factory)
    if factory == "Flat":
        return
    ivf = inner_index(index)
    nlist = int(ivf.nlist) if isinstance(ivf, faiss.IndexIVF) else 0
    if nlist > n_vectors:
        raise VisretError(f"{factory!r} has {nlist} inverted lists, more than the {n_vectors} images to index; use fewer lists or --factory auto")
    sample = min(n_vectors, max(256, nlist))  # never more than the real data will offer
    trial = subprocess.run(
        [sys.executable, "-c", _TRIAL, str(vector_dim), str(distance.faiss_metric), factory, str(sample)],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if trial.returncode != 0:
        lines = [line for line in trial.stderr.splitlines() if line.strip()]
        reason = lines[-1].split("Error: ")[-1].split(" failed in ")[0].strip() if lines else f"exit status {trial.returncode}"
        raise VisretError(f"FAISS cannot use {factory!r} on {vector_dim}-d vectors: {reason[:200]}")


#: Memory ``auto`` gives an index when no ``max_memory`` is set: raw vectors that fit stay exact in
#: IVF-Flat lists; past it they are coded (10M x 128 float32 is 5.1 GB: 1.3 GB as SQ8 codes).
AUTO_MEMORY = 4 * 2**30
#: Inverted lists from which the coarse quantizer is an HNSW graph: brute-force assignment of 10M
#: vectors to 16,384 centroids would cost more than the rest of the build.
HNSW_QUANTIZER_FROM = 16_384


def choose_factory(n: int, dim: int, max_memory: int | None = None) -> str:
    """An index type for ``n`` vectors, in the spirit of autofaiss: exact search below 50,000
    vectors, then ~4 sqrt(n) inverted lists holding the raw vectors while they fit ``max_memory``
    bytes (``AUTO_MEMORY`` unset), else 8-bit scalar codes (one byte a dimension) or PQ codes of the
    largest size that fits."""
    budget = AUTO_MEMORY if max_memory is None else max_memory
    raw = n * dim * 4
    if n < 50_000 and raw <= budget:
        return "Flat"
    nlist = int(2 ** round(np.log2(4 * np.sqrt(n))))
    lists = f"IVF{nlist}_HNSW32" if nlist >= HNSW_QUANTIZER_FROM else f"IVF{nlist}"
    if raw * 1.1 <= budget:
        return f"{lists},Flat"
    per_vector = budget * 0.8 / n  # bytes each vector's code may take
    if per_vector >= dim:
        return f"{lists},SQ8"
    choices = [m for m in (1, 2, 4, 8, 16, 32, 64, 128) if dim % m == 0]
    fitting = [m for m in choices if m <= per_vector]
    return f"{lists},PQ{max(fitting) if fitting else choices[0]}"


def shard_rows(shard: np.ndarray | Path) -> int:
    return len(np.load(shard, mmap_mode="r", allow_pickle=False)) if isinstance(shard, Path) else len(shard)


def read_shard(shard: np.ndarray | Path) -> np.ndarray:
    """A shard's vectors: a ``.npy`` file is read, not mapped, so it leaves memory with the array (a
    mapped file's pages stay resident once touched: a build that searched 10M mapped vectors peaked at 7 GB)."""
    return np.load(shard, allow_pickle=False) if isinstance(shard, Path) else np.asarray(shard)


def training_sample(shards: Sequence[np.ndarray | Path], seed: int = 0, size: int = TRAIN_SAMPLE) -> np.ndarray:
    """A seeded sample of rows drawn across all shards, reading one shard at a time."""
    total = sum(shard_rows(s) for s in shards)
    return rows_at(shards, np.sort(np.random.default_rng(seed).choice(total, min(size, total), replace=False)))


def rows_at(shards: Sequence[np.ndarray | Path], positions: np.ndarray) -> np.ndarray:
    """The float32 vectors at sorted ``positions`` over all shards, a shard at a time (a file mapped for
    just those rows)."""
    found, start = [], 0
    for shard in shards:
        size = shard_rows(shard)
        inside = positions[(positions >= start) & (positions < start + size)] - start
        if len(inside):
            array = np.load(shard, mmap_mode="r", allow_pickle=False) if isinstance(shard, Path) else shard
            found.append(np.asarray(array[inside], np.float32))
        start += size
    return np.concatenate(found) if found else np.zeros((0, 0), np.float32)


def fill(index: faiss.Index, shards: Sequence[np.ndarray | Path], ids: np.ndarray, seed: int = 0) -> None:
    """Train ``index`` when its type needs it, then add the shards one at a time.

    Shards are arrays or ``.npy`` files; with files, memory holds the training sample and one
    shard, never the whole collection.
    """
    if not index.is_trained:
        ivf = inner_index(index)
        size = max(TRAIN_SAMPLE, TRAIN_PER_LIST * int(ivf.nlist)) if isinstance(ivf, faiss.IndexIVF) else TRAIN_SAMPLE
        try:
            index.train(training_sample(shards, seed, size))
        except RuntimeError as exc:
            reason = str(exc).split("Error: ")[-1].splitlines()[0]
            raise VisretError(f"cannot train the FAISS index on {sum(map(shard_rows, shards))} vectors: {reason}") from None
    add(index, shards, ids)


def add(index: faiss.Index, shards: Sequence[np.ndarray | Path], ids: np.ndarray) -> None:
    start = 0
    for shard in shards:
        vectors = np.ascontiguousarray(read_shard(shard), dtype=np.float32)
        index.add_with_ids(vectors, np.ascontiguousarray(ids[start : start + len(vectors)], dtype=np.int64))
        start += len(vectors)


def inner_index(index: faiss.Index) -> faiss.Index:
    """The index under the id map and any pre-transform (OPQ, PCA), downcast to its type."""
    inner = faiss.downcast_index(index.index if isinstance(index, faiss.IndexIDMap) else index)
    while isinstance(inner, faiss.IndexPreTransform):
        inner = faiss.downcast_index(inner.index)
    return inner


def set_search_params(index: faiss.Index, nprobe: int | None = None, ef_search: int | None = None) -> None:
    """Query-time knobs: inverted lists probed (IVF) and the HNSW search beam, each bounded by the data
    (at most every list, a beam of at most every entry): past that they change no answer, only the
    memory and time a search takes."""
    inner = inner_index(index)
    if nprobe is not None and hasattr(inner, "nprobe"):
        inner.nprobe = max(1, min(int(nprobe), inner.nlist))
    if ef_search is not None and hasattr(inner, "hnsw"):
        inner.hnsw.efSearch = max(1, min(int(ef_search), max(inner.ntotal, 1)))


def supports_removal(index: faiss.Index) -> bool:
    """Whether ``remove_ids`` keeps every other id right: not for HNSW graphs, nor for an IVF under
    an id map (IVF does not renumber its entries, the map does; such indexes are tombstoned)."""
    inner = inner_index(index)
    return not hasattr(inner, "hnsw") and not (isinstance(index, faiss.IndexIDMap) and isinstance(inner, faiss.IndexIVF))


def read(path: Path, mmap: bool = False) -> faiss.Index:
    """Read an index file, memory-mapped (read-only) when asked; one that keeps its vectors in
    another file is refused before anything writes to it.

    The file is first mapped without copying (``IO_FLAG_MMAP_IFC``), which refuses an array whose
    size prefix runs past the end of the file: a plain read allocates whatever the prefix claims
    first (a 400 KB file claiming 2 GB cost 1.9 GB of memory before FAISS refused it). Before that,
    a probe that skips the inverted lists (``IO_FLAG_SKIP_IVF_DATA``) tells whether they live in
    another file: FAISS would open that file read-write while reading them."""
    _check_lists_inside(path)
    faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)  # the probe; its mapping is dropped at once
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
    index = faiss.read_index(str(path), flags)
    check_self_contained(index, path)
    return index


def _check_lists_inside(path: Path) -> None:
    """Refuse a file whose inverted lists live in another file without opening that file: read with
    ``IO_FLAG_SKIP_IVF_DATA``, which FAISS 1.x honours for on-disk lists but refuses for in-file ones
    ("could not load ArrayInvertedLists"), the kind that is wanted."""
    try:
        probe = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_SKIP_IVF_DATA)
    except RuntimeError as exc:
        if "ArrayInvertedLists" in str(exc):
            return
        raise
    check_self_contained(probe, path)


def check_self_contained(index: faiss.Index, path: Path) -> None:
    """Refuse an IVF index whose inverted lists live elsewhere (``OnDiskInvertedLists`` names a
    file of its own): visret would write to it on removal, and no checksum of the index covers it."""
    inner = inner_index(index)
    if isinstance(inner, faiss.IndexIVF) and not _lists_of_this_file(faiss.downcast_InvertedLists(inner.invlists)):
        raise VisretError(f"{path.name} keeps its inverted lists in another file; build or merge it in memory "
                          "(ArrayInvertedLists) so that everything it holds is in the one file")


def _lists_of_this_file(lists) -> bool:
    """In-file inverted lists: read into memory (``ArrayInvertedLists``), or mapped from the same file
    (``IO_FLAG_MMAP`` maps them as ``OnDiskInvertedLists`` with no file name of their own)."""
    return isinstance(lists, faiss.ArrayInvertedLists) or (isinstance(lists, faiss.OnDiskInvertedLists) and not lists.filename)


def use_threads(n_queries: int) -> None:
    """One thread for a single query (a thread team costs more than it saves), all cores for batches."""
    faiss.omp_set_num_threads(1 if n_queries == 1 else os.cpu_count() or 1)
