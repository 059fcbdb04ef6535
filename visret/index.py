"""A saved index: FAISS vectors, a SQLite table of entries and a manifest, in one directory.

The manifest names the generation of data files it belongs to and their checksums. A write
puts new data files beside the old ones and then atomically replaces the manifest, so a
reader or a crash sees either the old index or the new one, never a mixture.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import faiss
import numpy as np

from visret import __version__, vectors
from visret.dataset import ImageRecord, scan_folder
from visret.errors import VisretError
from visret.extraction import Extracted, extract_records
from visret.extractor import FeatureExtractor
from visret.images import DEFAULT_MAX_PIXELS, ImageReadError, as_array
from visret.knn import WEIGHTINGS, encode_labels, vote
from visret.plugins import get_extractor
from visret.storage import TEMP_PREFIX, atomic_path, sha256_file

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATA_PREFIXES = ("vectors-", "entries-", "extractor-")
DEFAULT_INDEX = Path("indexes") / "default"


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

    # ---- lookups -------------------------------------------------------------------------
    def entries(self, ids: Sequence[int]) -> dict[int, tuple[str, str | None]]:
        """``id -> (path, label)`` for the given ids."""
        wanted = sorted({int(i) for i in ids if i >= 0})
        found: dict[int, tuple[str, str | None]] = {}
        for start in range(0, len(wanted), 900):  # SQLite's bound-parameter limit
            chunk = wanted[start : start + 900]
            rows = self._db.execute(
                f"SELECT id, path, label FROM entries WHERE id IN ({','.join('?' * len(chunk))})", chunk
            )
            found.update({row[0]: (row[1], row[2]) for row in rows})
        return found

    def labelled_ids(self) -> tuple[np.ndarray, np.ndarray]:
        """Every entry's id and label (``""`` for unlabelled entries)."""
        rows = self._db.execute("SELECT id, COALESCE(label, '') FROM entries ORDER BY id").fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        return ids, np.array([r[1] for r in rows], dtype=str)

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The stored embeddings of the given ids (normalised ones for the cosine metric)."""
        inner = faiss.downcast_index(self._vectors.index)
        stored = inner.reconstruct_n(0, inner.ntotal)
        row_of_id = {int(i): row for row, i in enumerate(faiss.vector_to_array(self._vectors.id_map))}
        return stored[[row_of_id[int(i)] for i in ids]]

    # ---- search --------------------------------------------------------------------------
    def search(self, features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw FAISS search on embeddings: ``(distances, ids)``."""
        return vectors.search(self._vectors, features, k, self.metric)

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
                result.probabilities = {
                    str(c): round(float(p), 6) for c, p in zip(self.classes, proba[q]) if p > 0
                }
            results.append(result)
        return results

    def info(self) -> dict[str, Any]:
        """The manifest plus where the index is, for ``visret info``."""
        size = sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())
        return {"path": str(self.path), "bytes": size, **self.manifest}


def _describe(image: Any) -> str:
    if isinstance(image, (str, Path)):
        return str(image)
    return f"<{type(image).__name__}>"


# ---- writing -------------------------------------------------------------------------------
def _check_target(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise VisretError(f"{path} exists and is not a directory")
    if path.is_dir() and not (path / MANIFEST).exists():
        strangers = [p.name for p in path.iterdir() if not p.name.startswith((TEMP_PREFIX, *DATA_PREFIXES))]
        strangers = [name for name in strangers if name not in ("README.md", ".gitkeep")]
        if strangers:
            raise VisretError(f"{path} is not empty and is not a visret index; choose another --index path")


def _write_entries(path: Path, records: Sequence[ImageRecord], hashes: Sequence[str], now: float) -> None:
    db = sqlite3.connect(path)
    try:
        db.execute(
            "CREATE TABLE entries (id INTEGER PRIMARY KEY, path TEXT NOT NULL, label TEXT, "
            "sha256 TEXT NOT NULL, added_at REAL NOT NULL)"
        )
        db.executemany(
            "INSERT INTO entries VALUES (?, ?, ?, ?, ?)",
            [(i, str(r.path), r.label, h, now) for i, (r, h) in enumerate(zip(records, hashes), start=1)],
        )
        db.commit()
    finally:
        db.close()


def write_index(
    path: str | Path,
    extractor: FeatureExtractor,
    extracted: Extracted,
    metric: str = "l2",
    factory: str = "Flat",
    build: dict[str, Any] | None = None,
) -> None:
    """Save embeddings and their entries as an index at ``path``, replacing any index there."""
    path = Path(path)
    _check_target(path)
    try:
        vectors.check_metric(metric, factory)
    except ValueError as exc:
        raise VisretError(str(exc)) from None
    features = extracted.features
    if features.shape != (len(extracted.records), extractor.dim):
        raise VisretError(
            f"extractor {extractor.name!r} returned features of shape {features.shape}, "
            f"expected ({len(extracted.records)}, {extractor.dim})"
        )
    path.mkdir(parents=True, exist_ok=True)
    generation = secrets.token_hex(4)
    files: dict[str, dict[str, str]] = {}

    def place(role: str, suffix: str, write: Callable[[Path], None]) -> None:
        name = f"{role}-{generation}{suffix}"
        with atomic_path(path / name) as temporary:
            write(temporary)
        files[role] = {"name": name, "sha256": sha256_file(path / name)}

    ids = np.arange(1, len(features) + 1, dtype=np.int64)
    faiss_index = vectors.new_index(extractor.dim, metric, factory)
    vectors.add(faiss_index, features, ids, metric)
    now = time.time()
    place("vectors", ".faiss", lambda p: faiss.write_index(faiss_index, str(p)))
    place("entries", ".sqlite", lambda p: _write_entries(p, extracted.records, extracted.hashes, now))
    state = extractor.get_state()
    if state:
        place("extractor", ".npz", lambda p: _save_arrays(p, state))
    labels = {r.label for r in extracted.records if r.label is not None}
    manifest = {
        "format_version": FORMAT_VERSION,
        "visret_version": __version__,
        "extractor": extractor.get_config(),
        "dim": extractor.dim,
        "metric": metric,
        "factory": factory,
        "count": len(features),
        "classes": sorted(labels),
        "created_at": now,
        "build": build or {},
        "files": files,
    }
    with atomic_path(path / MANIFEST) as temporary:
        temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    _remove_stale_files(path, {f["name"] for f in files.values()})


def _save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _remove_stale_files(path: Path, keep: set[str]) -> None:
    for child in path.iterdir():
        if child.name not in keep and child.name.startswith((TEMP_PREFIX, *DATA_PREFIXES)):
            child.unlink(missing_ok=True)


def resolve_extractor(extractor: str | FeatureExtractor, params: dict[str, Any] | None = None) -> FeatureExtractor:
    if isinstance(extractor, FeatureExtractor):
        if params:
            raise VisretError("pass params only with an extractor name")
        return extractor
    return get_extractor(extractor, **(params or {}))


def build_index(
    folder: str | Path,
    extractor: str | FeatureExtractor = "color-hist",
    index: str | Path | None = None,
    metric: str = "l2",
    params: dict[str, Any] | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: Callable[[int, int], None] | None = None,
) -> Index:
    """Index every image in ``folder`` (ImageFolder layout gives labels) and return the opened index.

    Unreadable files are skipped with a warning each; their count is in
    ``index.manifest["build"]``. ``progress(done, total)`` is called as batches finish.
    """
    extractor = resolve_extractor(extractor, params)
    try:
        vectors.check_metric(metric)
    except ValueError as exc:
        raise VisretError(str(exc)) from None
    if batch_size < 1:
        raise VisretError(f"batch size must be at least 1, got {batch_size}")
    path = Path(index) if index is not None else default_index_path()
    _check_target(path)
    records = scan_folder(folder)
    if not records:
        raise VisretError(f"no image files found in {folder}")
    start = time.perf_counter()
    if extractor.requires_fit:
        fit_extractor(extractor, records, max_pixels)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, len(records))

    extracted = extract_records(extractor, records, batch_size, workers, max_pixels, advance)
    if not extracted.records:
        raise VisretError(f"none of the {len(records)} image files in {folder} could be read")
    seconds = time.perf_counter() - start
    build = {
        "source": str(Path(folder).absolute()),
        "indexed": len(extracted.records),
        "skipped": len(extracted.skipped),
        "seconds": round(seconds, 3),
    }
    write_index(path, extractor, extracted, metric=metric, build=build)
    return _open(path, extractor)


def fit_extractor(extractor: FeatureExtractor, records: Sequence[ImageRecord], max_pixels: int, seed: int = 0) -> None:
    """Fit a learning extractor on the readable images among ``records`` (or a seeded sample)."""
    from visret.images import read_image

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


# ---- opening -------------------------------------------------------------------------------
def _read_manifest(path: Path) -> dict[str, Any]:
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


def _verified(path: Path, manifest: dict[str, Any], role: str) -> Path:
    entry = manifest["files"].get(role)
    if entry is None:
        raise VisretError(f"index at {path} is corrupt: its manifest lists no {role} file")
    file = path / entry["name"]
    if not file.is_file():
        raise VisretError(f"index at {path} is corrupt: {entry['name']} is missing")
    if sha256_file(file) != entry["sha256"]:
        raise VisretError(f"index at {path} is corrupt: {entry['name']} does not match its checksum")
    return file


def open_index(path: str | Path | None = None) -> Index:
    """Open a saved index, checking its format, checksums and extractor."""
    return _open(Path(path) if path is not None else default_index_path())


def _open(path: Path, extractor: FeatureExtractor | None = None) -> Index:
    """Open the index at ``path``; ``extractor``, when given, is the one that just wrote it
    (already built and fitted), used instead of creating another from the manifest."""
    manifest = _read_manifest(path)
    try:
        config, dim = manifest["extractor"], int(manifest["dim"])
        vectors_file = _verified(path, manifest, "vectors")
        entries_file = _verified(path, manifest, "entries")
        state_file = _verified(path, manifest, "extractor") if "extractor" in manifest["files"] else None
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
        raise VisretError(
            f"index at {path} holds {dim}-d vectors but extractor {name!r} now gives {extractor.dim}-d; rebuild it"
        )
    try:
        faiss_index = faiss.read_index(str(vectors_file))
    except RuntimeError:
        raise VisretError(f"index at {path} is corrupt: cannot read {vectors_file.name}") from None
    if faiss_index.d != dim or faiss_index.ntotal != int(manifest["count"]):
        raise VisretError(f"index at {path} is corrupt: vectors do not match the manifest")
    db = sqlite3.connect(f"{entries_file.resolve().as_uri()}?mode=ro", uri=True)
    return Index(path, manifest, extractor, faiss_index, db)
