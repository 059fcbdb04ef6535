"""Reading a saved index: its manifest, FAISS vectors, SQLite entries and embedding shards.

An index is a directory. ``manifest.json`` names the generation of data files in use and their
checksums; writers (``visret.indexing``) put a new generation beside the old one and then
atomically replace the manifest, so a reader sees either the old index or the new one. The
previous generation is kept until the next write, for readers that are opening it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from visret import __version__, vectors
from visret.errors import VisretError
from visret.extractor import FeatureExtractor
from visret.images import DEFAULT_MAX_PIXELS, ImageReadError, as_array
from visret.knn import WEIGHTINGS, encode_labels, vote
from visret.plugins import get_extractor
from visret.storage import sha256_file

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DEFAULT_INDEX = Path("indexes") / "default"
#: Vector files larger than this open memory-mapped and are checked by size, not checksum, on open.
MMAP_BYTES = 256 * 2**20


def default_index_path() -> Path:
    """``$VISRET_INDEX`` if set, else ``indexes/default``."""
    return Path(os.environ.get("VISRET_INDEX") or DEFAULT_INDEX)


@dataclass
class Neighbor:
    id: int
    path: str
    label: str | None
    distance: float


@dataclass
class QueryResult:
    """The neighbours of one query image and, when the index is labelled, the k-NN vote."""

    query: str
    neighbors: list[Neighbor]
    prediction: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Index:
    """An opened index; create one with ``build_index`` or ``open_index``."""

    def __init__(self, path: Path, manifest: dict[str, Any], extractor: FeatureExtractor, vectors_index, db):
        self.path = path
        self.manifest = manifest
        self.extractor = extractor
        self._vectors = vectors_index
        self._db = db
        self.classes = np.array(manifest["classes"], dtype=str)
        self.tombstones = int(manifest.get("tombstones", 0))
        params = manifest.get("search", {})
        self.set_search_params(params.get("nprobe"), params.get("ef_search"))

    @property
    def metric(self) -> str:
        return self.manifest["metric"]

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def __repr__(self) -> str:
        return f"<visret.Index {self.path} {self.manifest['extractor']['name']} n={len(self)}>"

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Query-time knobs of approximate indexes (IVF lists probed, HNSW beam)."""
        vectors.set_search_params(self._vectors, nprobe, ef_search)

    # ---- lookups -------------------------------------------------------------------------
    def sql(self, query: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Rows of a read-only query on the entries table (``entries``, ``tombstones``)."""
        return self._db.execute(query, params).fetchall()

    def rows_for(self, query: str, ids: Sequence[int]) -> list[tuple]:
        """Rows of ``query`` (with ``IN ({})``) for the given ids, in chunks SQLite accepts."""
        wanted = sorted({int(i) for i in ids if i >= 0})
        rows: list[tuple] = []
        for start in range(0, len(wanted), 900):  # SQLite's bound-parameter limit
            chunk = wanted[start : start + 900]
            rows += self.sql(query.format(",".join("?" * len(chunk))), chunk)
        return rows

    def entries(self, ids: Sequence[int]) -> dict[int, tuple[str, str | None]]:
        """``id -> (path, label)`` for the given ids that are in the index."""
        return {row[0]: (row[1], row[2]) for row in self.rows_for("SELECT id, path, label FROM entries WHERE id IN ({})", ids)}

    def labelled_ids(self) -> tuple[np.ndarray, np.ndarray]:
        """Every entry's id and label (``""`` for unlabelled entries)."""
        rows = self.sql("SELECT id, COALESCE(label, '') FROM entries ORDER BY id")
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        return ids, np.array([r[1] for r in rows], dtype=str)

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The stored embeddings of the given ids, read from the shards (exact, whatever the index type)."""
        where = {row[0]: (row[1], row[2]) for row in self.rows_for("SELECT id, shard, row FROM entries WHERE id IN ({})", ids)}
        return load_rows(self.path, [where[int(i)] for i in ids], int(self.manifest["dim"]))

    # ---- search --------------------------------------------------------------------------
    def search(self, features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS search on embeddings: ``(distances, ids)``; removed entries never come back."""
        if not self.tombstones:
            return vectors.search(self._vectors, features, k, self.metric)
        distances, ids = vectors.search(self._vectors, features, k + self.tombstones, self.metric)
        dead = {row[0] for row in self.sql("SELECT id FROM tombstones")}
        keep = ~np.isin(ids, list(dead))
        out_d = np.full((len(ids), k), np.inf, np.float32)
        out_i = np.full((len(ids), k), -1, np.int64)
        for q in range(len(ids)):
            alive = np.flatnonzero(keep[q])[:k]
            out_d[q, : len(alive)], out_i[q, : len(alive)] = distances[q, alive], ids[q, alive]
        return out_d, out_i

    def embed(self, images: Sequence[Any]) -> np.ndarray:
        """Embed query images (paths, Pillow images or uint8 arrays) with the index's extractor."""
        spec = self.extractor.input_spec
        arrays = []
        for image in images:
            try:
                arrays.append(as_array(image, spec, DEFAULT_MAX_PIXELS))
            except ImageReadError as exc:
                raise VisretError(f"cannot read query image {image}: {exc}") from None
        return np.asarray(self.extractor.extract(arrays), dtype=np.float32)

    def query(self, image: Any, k: int = 5, weights: str = "uniform") -> QueryResult:
        """The ``k`` nearest indexed images to one image, with the k-NN prediction."""
        return self.query_batch([image], k=k, weights=weights)[0]

    def query_batch(self, images: Sequence[Any], k: int = 5, weights: str = "uniform") -> list[QueryResult]:
        if k < 1:
            raise VisretError(f"k must be at least 1, got {k}")
        if weights not in WEIGHTINGS:
            raise VisretError(f"weights must be one of {', '.join(WEIGHTINGS)}, got {weights!r}")
        if not images:
            return []
        distances, ids = self.search(self.embed(images), k)
        entries = self.entries(ids.ravel())
        labels = [[entries[i][1] if i in entries else None for i in row] for row in ids.tolist()]
        results = []
        if len(self.classes):
            codes = np.array([encode_labels(row, self.classes) for row in labels]).reshape(ids.shape)
            predicted, proba = vote(codes, distances, len(self.classes), weights)
        for q, image in enumerate(images):
            neighbors = [
                Neighbor(int(i), entries[i][0], entries[i][1], float(d))
                for i, d in zip(ids[q].tolist(), distances[q].tolist())
                if i in entries
            ]
            result = QueryResult(query=_describe(image), neighbors=neighbors)
            if len(self.classes) and predicted[q] >= 0:
                result.prediction = str(self.classes[predicted[q]])
                result.probabilities = {str(c): round(float(p), 6) for c, p in zip(self.classes, proba[q]) if p > 0}
            results.append(result)
        return results

    def recall_at_10(self, sample: int = 1000, seed: int = 0) -> float:
        """Recall@10 of this index against exact search over the stored embeddings, on a sample of them."""
        ids, _ = self.labelled_ids()
        stored = self.vectors(ids)
        queries = stored[np.random.default_rng(seed).choice(len(stored), min(sample, len(stored)), replace=False)]
        exact = vectors.new_index(stored.shape[1], self.metric)
        vectors.add(exact, stored, ids, self.metric)
        k = min(10, len(ids))
        truth = vectors.search(exact, queries, k, self.metric)[1]
        found = self.search(queries, k)[1]
        return float(np.mean([len(set(t) & set(f)) / k for t, f in zip(truth.tolist(), found.tolist())]))

    def info(self) -> dict[str, Any]:
        """The manifest plus where the index is and its size on disk, for ``visret info``."""
        size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file() and ".staging" not in f.parts)
        return {"path": str(self.path), "bytes": size, **self.manifest}


def load_rows(path: Path, placements: Sequence[tuple[str, int]], dim: int) -> np.ndarray:
    """Embeddings at ``(shard, row)`` places of the index at ``path``, shards memory-mapped."""
    out = np.empty((len(placements), dim), np.float32)
    opened: dict[str, np.ndarray] = {}
    for i, (shard, row) in enumerate(placements):
        if shard not in opened:
            opened[shard] = np.load(path / shard, mmap_mode="r", allow_pickle=False)
        out[i] = opened[shard][row]
    return out


def _describe(image: Any) -> str:
    if isinstance(image, (str, Path)):
        return str(image)
    return f"<{type(image).__name__}>"


def read_manifest(path: Path) -> dict[str, Any]:
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise VisretError(f"no index at {path}; build one with: visret index DIR --index {path}")
    try:
        manifest = json.loads(manifest_path.read_text())
        version = int(manifest["format_version"])
    except (ValueError, KeyError, TypeError):
        raise VisretError(f"index at {path} is corrupt: unreadable {MANIFEST}") from None
    if version > FORMAT_VERSION:
        raise VisretError(
            f"index at {path} has format {version}, newer than this visret ({__version__}) reads "
            f"(format {FORMAT_VERSION}); upgrade visret"
        )
    return manifest


class _Missing(Exception):
    """A file the manifest names is gone: a writer may have just replaced the generation."""


def verified(path: Path, entry: dict[str, Any], full: bool = False) -> Path:
    """The file a manifest entry names, checked by checksum (by size only for large files, unless ``full``)."""
    file = path / entry["name"]
    if not file.is_file():
        raise _Missing(entry["name"])
    size = file.stat().st_size
    if "bytes" in entry and size != entry["bytes"]:
        raise VisretError(f"index at {path} is corrupt: {entry['name']} does not have its recorded size")
    if (full or size <= MMAP_BYTES) and sha256_file(file) != entry["sha256"]:
        raise VisretError(f"index at {path} is corrupt: {entry['name']} does not match its checksum")
    return file


def open_index(path: str | Path | None = None, *, verify: bool = False) -> Index:
    """Open a saved index, checking its format, checksums and extractor (``verify``: checksum
    every file, large ones and shards included)."""
    return open_at(Path(path) if path is not None else default_index_path(), verify=verify)


def open_at(path: Path, extractor: FeatureExtractor | None = None, verify: bool = False) -> Index:
    """Open the index at ``path``; ``extractor``, when given, is the one that just wrote it
    (already built and fitted), used instead of creating another from the manifest."""
    for attempt in range(3):
        manifest = read_manifest(path)
        try:
            return _open(path, manifest, extractor, verify)
        except _Missing as missing:
            if read_manifest(path) == manifest:  # not a concurrent write: really missing
                raise VisretError(f"index at {path} is corrupt: {missing} is missing") from None
            time.sleep(0.05 * (attempt + 1))
    raise VisretError(f"index at {path} keeps changing while it is opened; try again")


def _open(path: Path, manifest: dict[str, Any], extractor: FeatureExtractor | None, verify: bool) -> Index:
    try:
        config, dim, files = manifest["extractor"], int(manifest["dim"]), manifest["files"]
        for role in ("vectors", "entries"):
            if role not in files:
                raise VisretError(f"index at {path} is corrupt: its manifest lists no {role} file")
        vectors_file = verified(path, files["vectors"], verify)
        entries_file = verified(path, files["entries"], True)
        state_file = verified(path, files["extractor"], True) if "extractor" in files else None
        for shard in manifest.get("shards", []):
            verified(path, shard, verify)
        name, params = config["name"], config["params"]
    except (KeyError, TypeError, ValueError):
        raise VisretError(f"index at {path} is corrupt: incomplete {MANIFEST}") from None
    if extractor is None:
        try:
            extractor = get_extractor(name, **params)
        except VisretError as exc:
            raise VisretError(f"index at {path} was built with extractor {name!r}, which cannot be created: {exc}") from None
        if state_file is not None:
            with np.load(state_file, allow_pickle=False) as data:
                extractor.set_state({key: data[key] for key in data.files})
    if extractor.dim != dim:
        raise VisretError(f"index at {path} holds {dim}-d vectors but extractor {name!r} now gives {extractor.dim}-d; rebuild it")
    try:
        faiss_index = vectors.read(vectors_file, mmap=vectors_file.stat().st_size > MMAP_BYTES)
    except RuntimeError:
        raise VisretError(f"index at {path} is corrupt: cannot read {vectors_file.name}") from None
    live = faiss_index.ntotal - int(manifest.get("tombstones", 0))
    if faiss_index.d != dim or live != int(manifest["count"]):
        raise VisretError(f"index at {path} is corrupt: vectors do not match the manifest")
    db = sqlite3.connect(f"{entries_file.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    return Index(path, manifest, extractor, faiss_index, db)
