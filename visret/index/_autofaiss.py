"""The autofaiss / clip-retrieval layout: embeddings exported for an index built elsewhere, and
that index attached back.

``export_autofaiss`` writes ``embeddings/embeddings_NNNNN.npy`` (one float32 file per shard, the
vectors exactly as FAISS searches them here) and ``metadata/metadata_NNNNN.parquet`` (``id``,
``path``, ``label``, ``sha256``, row for row), plus ``visret-export.json``; it reads one shard at a
time, so memory stays bounded at any size. ``autofaiss build_index(embeddings=OUT/embeddings,
...)`` then builds an index whose i-th vector is the export's i-th row; ``import_faiss_index``
attaches such an index after checking its dimension, metric and count, mapping rows to the
entries' ids through the metadata (or, without it, the index's own shard order).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from visret.errors import VisretError
from visret.index._index import default_index_path, open_at
from visret.index._changes import CARRIED_FIELDS
from visret.index._store import entries
from visret.index._store.layout import read_manifest
from visret.index._store.writer import Generation, Writer

FORMAT = "autofaiss"


@dataclass
class Export:
    path: Path
    count: int
    files: int
    dim: int
    metric: str
    seconds: float


def _faiss_metric_name(distance) -> str:
    import faiss

    return "ip" if distance.faiss_metric == faiss.METRIC_INNER_PRODUCT else "l2"


def export_autofaiss(out: str | Path, index: str | Path | None = None, progress: Callable[[int, int], None] | None = None) -> Export:
    """Write the index's vectors and metadata in the autofaiss layout into the new folder ``out``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = time.perf_counter()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise VisretError(f"{out} exists and is not an empty folder; choose a new folder to export to")
    path = Path(index) if index is not None else default_index_path()
    read_manifest(path)
    current = open_at(path)
    temporary = out.with_name(f".{out.name}.partial")
    shutil.rmtree(temporary, ignore_errors=True)
    (temporary / "embeddings").mkdir(parents=True)
    (temporary / "metadata").mkdir()
    try:
        total, done, files = len(current.stored_ids()), 0, 0
        for number, (shard_ids, shard) in enumerate(current.stored_blocks()):
            files += 1
            rows = {row[0]: row for row in current.rows_for("records", shard_ids)}
            ordered = [rows[int(i)] for i in shard_ids]
            np.save(temporary / "embeddings" / f"embeddings_{number:05d}.npy", np.ascontiguousarray(shard, np.float32), allow_pickle=False)
            table = pa.table({
                "id": pa.array([r[0] for r in ordered], pa.int64()), "path": [r[1] for r in ordered],
                "label": pa.array([r[2] for r in ordered], pa.string()), "sha256": [r[3] for r in ordered],
            })
            pq.write_table(table, temporary / "metadata" / f"metadata_{number:05d}.parquet")
            done += len(shard)
            if progress is not None:
                progress(done, total)
        summary = {
            "format": FORMAT, "count": total, "dim": current.manifest["vector_dim"], "metric": current.metric,
            "faiss_metric": _faiss_metric_name(current.distance), "generation": current.manifest["generation"],
            "extractor": current.manifest["extractor"], "index": str(path.absolute()),
        }
        (temporary / "visret-export.json").write_text(json.dumps(summary, indent=2))
        if out.exists():
            out.rmdir()
        os.replace(temporary, out)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    finally:
        current.close()
    return Export(out, total, files, summary["dim"], summary["metric"], time.perf_counter() - start)


def _metadata_ids(folder: Path) -> np.ndarray:
    """The ``id`` column of every ``metadata/*.parquet`` file, in file-name order."""
    import pyarrow.parquet as pq

    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise VisretError(f"no .parquet files in {folder}")
    try:
        return np.concatenate([pq.read_table(f, columns=["id"]).column("id").to_numpy() for f in files]).astype(np.int64)
    except Exception as exc:  # pyarrow raises several types for damaged or foreign files
        raise VisretError(f"cannot read the id column of {folder}: {str(exc).splitlines()[0]}") from None


def _own_ids(faiss_index) -> np.ndarray | None:
    """The ids an index answers with when it stores them (an id map, IVF lists); None for row numbers."""
    import faiss

    from visret.index._vectors import inner_index

    if isinstance(faiss_index, faiss.IndexIDMap):
        return faiss.vector_to_array(faiss_index.id_map)
    ivf = inner_index(faiss_index)
    if isinstance(ivf, faiss.IndexIVF):
        lists = ivf.invlists
        found = [faiss.rev_swig_ptr(lists.get_ids(n), lists.list_size(n)).copy() for n in range(ivf.nlist) if lists.list_size(n)]
        return np.concatenate(found) if found else np.zeros(0, np.int64)
    return None


def _with_ids(faiss_index, order: np.ndarray):
    """``faiss_index`` answering with the entries' ids: row i of the export is entry ``order[i]``.

    An IVF index gets the ids written into its inverted lists (it removes by them later); any
    other type is wrapped in an id map.
    """
    import faiss

    from visret.index._vectors import inner_index

    ivf = inner_index(faiss_index)
    if isinstance(ivf, faiss.IndexIVF):
        ivf.set_direct_map_type(faiss.DirectMap.NoMap)  # a direct map would index the old ids
        lists = ivf.invlists
        for number in range(ivf.nlist):
            size = lists.list_size(number)
            if size:
                rows = faiss.rev_swig_ptr(lists.get_ids(number), size).copy()
                ids = np.ascontiguousarray(order[rows], np.int64)
                lists.update_entries(number, 0, size, faiss.swig_ptr(ids), lists.get_codes(number))
        return faiss_index
    total = faiss_index.ntotal
    faiss_index.ntotal = 0  # FAISS wraps only empty indexes; the id map below covers every row
    wrapped = faiss.IndexIDMap2(faiss_index)
    faiss_index.ntotal = wrapped.ntotal = total
    faiss.copy_array_to_vector(np.ascontiguousarray(order, np.int64), wrapped.id_map)
    wrapped.construct_rev_map()
    return wrapped


#: Entries searched for in an imported index, and the share that must find themselves in their top 10.
SELF_CHECK_SAMPLE, SELF_CHECK_SHARE = 64, 0.5


def _check_rows_match(imported, current, ids: np.ndarray, faiss_file: Path) -> None:
    """Each sampled entry's stored vector must find that entry among its 10 nearest in ``imported``:
    a metadata or row order that maps vectors to the wrong entries finds almost none."""
    if not len(ids):
        return
    sample = np.random.default_rng(0).choice(ids, min(SELF_CHECK_SAMPLE, len(ids)), replace=False)
    _, found = imported.search(current.vectors(sample), min(10, len(ids)))
    share = float(np.mean([entry in row for entry, row in zip(sample.tolist(), found.tolist())]))
    if share < SELF_CHECK_SHARE:
        raise VisretError(f"{faiss_file.name} maps vectors to the wrong entries: only {share:.0%} of {len(sample)} sampled entries "
                          "find themselves in their top 10 (metadata from another export or a reordered one?)")


def import_faiss_index(faiss_file: str | Path, index: str | Path | None = None, metadata: str | Path | None = None) -> dict:
    """Attach a FAISS index built from this index's export; return the new manifest.

    Its dimension, metric and vector count must match the index; an index that carries its own
    ids must carry exactly the entries' ids. ``metadata`` is the export's ``metadata`` folder
    (row order to ids); without it, the index's current shard order is used, which is the
    export's order while nothing was added or removed since.
    """
    from visret.index import _vectors as vectors
    from visret.index._faiss_structure import FaissStructure
    from visret.index.backends import DEFAULT_BACKEND

    faiss_file = Path(faiss_file)
    if not faiss_file.is_file():
        raise VisretError(f"{faiss_file} is not a file")
    path = Path(index) if index is not None else default_index_path()
    read_manifest(path)
    try:
        imported = vectors.read(faiss_file)
    except RuntimeError:
        raise VisretError(f"{faiss_file} is not a FAISS index file") from None
    with Writer(path) as writer:
        current = open_at(path)
        try:
            manifest, ids = current.manifest, current.stored_ids()
            if imported.d != manifest["vector_dim"]:
                raise VisretError(f"{faiss_file.name} holds {imported.d}-d vectors; the index's are {manifest['vector_dim']}-d")
            if imported.metric_type != current.distance.faiss_metric:
                raise VisretError(f"{faiss_file.name} uses another metric than the index's {current.metric} "
                                  f"(build it with metric_type={_faiss_metric_name(current.distance)!r})")
            if imported.ntotal != len(ids):
                raise VisretError(f"{faiss_file.name} holds {imported.ntotal} vectors; the index has {len(ids)} entries")
            if current.as_codes and not FaissStructure(imported).holds_codes:
                raise VisretError(f"the index keeps its vectors only as codes, so what replaces them must code them too; "
                                  f"{faiss_file.name} ({type(vectors.inner_index(imported)).__name__}) cannot decode and forget them")
            own = _own_ids(imported)
            if own is None or not np.array_equal(np.sort(own), np.sort(ids)):  # rows of the export: give them ids
                if own is not None and not np.array_equal(np.sort(own), np.arange(len(ids))):
                    raise VisretError(f"the ids of {faiss_file.name} are neither the index's entries nor rows of its export")
                order = _metadata_ids(Path(metadata)) if metadata is not None else ids
                if len(order) != len(ids) or not np.array_equal(np.sort(order), np.sort(ids)):
                    raise VisretError(f"the rows of {faiss_file.name} are not the index's entries (was it built from another export or generation?)")
                imported = _with_ids(imported, order)
            vectors.set_search_params(imported, manifest["search"].get("nprobe"), manifest["search"].get("ef_search"))
            _check_rows_match(imported, current, ids, faiss_file)
            base = path / manifest["files"]["entries"]["name"]
            fields = {key: manifest[key] for key in CARRIED_FIELDS if key in manifest}
            fields["factory"], fields["backend"] = vectors.IMPORTED, DEFAULT_BACKEND
            fields["imported"] = {"file": str(faiss_file.absolute()), "type": type(vectors.inner_index(imported)).__name__, "at": time.time()}
            state = current.extractor_state
        finally:
            current.close()
        return writer.commit(Generation(
            manifest["shards"], ids, lambda p: entries.write(p, base, clear_tombstones=True), fields, FaissStructure(imported), state,
        ))
