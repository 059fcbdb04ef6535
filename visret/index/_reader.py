"""Reading an index: query it with images or vectors, look up its entries.

The files are read by ``visret.index._store``; this module turns them into answers. Flat indexes are
searched exactly over the memory-mapped shards, approximate ones through their FAISS file. The
writers (``_changes``) read the current generation through this class; ``visret.Index`` adds the
changes on top (``_index``), so reading never imports writing.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from visret.index.backends import DEFAULT_BACKEND, backend_named
from visret.index.distances import Distance, get_distance
from visret.errors import VisretError
from visret.features._extractor import FeatureExtractor
from visret.embedding._fitting import embed_images
from visret.index._voting import WEIGHTINGS, encode_labels, vote
from visret.features._lookup import extractor_from_spec
from visret.index._rerank import Reranker
from visret.index import _search_params
from visret.index._search import ExactSearch, StructureSearch
from visret.index._store import entries
from visret.index._store.layout import CODES
from visret.index._store.reader import Store, corrupt, open_store

DEFAULT_INDEX = Path("indexes") / "default"
#: FAISS files larger than this are memory-mapped rather than read into memory.
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


@dataclass(frozen=True)
class Entry:
    """One indexed image: its id, file, label, content hash and when it was added (Unix time)."""

    id: int
    path: str
    label: str | None
    sha256: str
    added_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Entries read per query while iterating over an index.
ITER_PAGE = 10_000


class IndexReader:
    """An opened index without the methods that change it (``visret.Index`` has them)."""

    def __init__(self, store: Store, extractor: FeatureExtractor | VisretError):
        self._store = store
        self.path = store.path
        self.manifest = store.manifest
        self._extractor = extractor
        self.distance: Distance = get_distance(self.manifest["metric"])
        self.classes = np.array(self.manifest["classes"], dtype=str)
        self.tombstones = int(self.manifest["tombstones"])
        self._shard_of = {s["name"]: i for i, s in enumerate(self.manifest["shards"])}
        self._exact = ExactSearch(store.shards, store.ids, self.distance)
        self._searcher = self._exact
        if store.file("vectors") is not None:
            self._searcher = self._approximate(store)
            params = self.manifest["search"]
            self.set_search_params(params.get("nprobe"), params.get("ef_search"))

    def _approximate(self, store: Store) -> StructureSearch:
        file = store.file("vectors")
        backend = backend_named(self.manifest.get("backend", DEFAULT_BACKEND))
        mmap = file.stat().st_size > MMAP_BYTES
        store.check(self.manifest["files"]["vectors"], whole_read=not mmap)
        try:
            structure = backend.read(file, self.distance, mmap=mmap)
        except (RuntimeError, ValueError, OSError):
            raise corrupt(self.path, f"cannot read {file.name}") from None
        if structure.d != self.manifest["vector_dim"] or structure.ntotal != len(self) + self.tombstones:
            raise corrupt(self.path, f"{file.name} does not match the manifest")
        if self.as_codes and not structure.holds_codes:  # else nothing could give back the vectors it names
            raise corrupt(self.path, f"{file.name} cannot decode the vectors the manifest keeps only as its codes")
        dead = np.array([row[0] for row in self.rows("tombstones")], np.int64)
        return StructureSearch(structure, self.distance, dead)

    @property
    def extractor(self) -> FeatureExtractor:
        """The extractor that embeds queries; where it cannot be created here (its plugin is not
        installed), asking for it is that one-line error, while everything that reads only stored
        vectors (info, leave-one-out, duplicates, export) still works."""
        if isinstance(self._extractor, VisretError):
            raise self._extractor
        return self._extractor

    @property
    def has_extractor(self) -> bool:
        return not isinstance(self._extractor, VisretError)

    @property
    def metric(self) -> str:
        return self.manifest["metric"]

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def __repr__(self) -> str:
        return f"<visret.Index {self.path} {self.manifest['extractor']['name']} n={len(self)}>"

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> IndexReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Query-time knobs of approximate indexes (IVF lists probed, HNSW beam)."""
        if isinstance(self._searcher, StructureSearch):
            self._searcher.structure.set_search_params(nprobe, ef_search)

    # ---- lookups -------------------------------------------------------------------------
    def rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Rows of a named store query (``visret.index._store.entries.QUERIES``)."""
        self._store.check_entries()
        try:
            return entries.rows(self._store.db, query, params)
        except entries.sqlite3.DatabaseError as exc:
            raise corrupt(self.path, f"entries table: {exc}") from None

    def __iter__(self) -> Iterator[Entry]:
        """Every entry, in id order (read a page at a time)."""
        last = 0
        while True:
            rows = self.rows("entries after", (last, ITER_PAGE))
            yield from (Entry(*row) for row in rows)
            if len(rows) < ITER_PAGE:
                return
            last = rows[-1][0]

    def rows_for(self, query: str, ids: Sequence[int] | Sequence[str]) -> list[tuple]:
        """Rows of a named store query over ids or texts (``visret.index._store.entries.ID_QUERIES``, ``TEXT_QUERIES``)."""
        self._store.check_entries()
        try:
            return entries.rows_for(self._store.db, query, ids)
        except entries.sqlite3.DatabaseError as exc:
            raise corrupt(self.path, f"entries table: {exc}") from None

    def entries(self, ids: Sequence[int]) -> dict[int, tuple[str, str | None]]:
        """``id -> (path, label)`` for the given ids that are in the index."""
        return {row[0]: (row[1], row[2]) for row in self.rows_for("labels", ids)}

    def entry(self, entry_id: int) -> Entry | None:
        """The entry with this id, or None when the index has none."""
        rows = self.rows("entry", (int(entry_id),))
        return Entry(*rows[0]) if rows else None

    def page(self, label: str | None = None, offset: int = 0, limit: int = 60) -> list[Entry]:
        """Entries in id order, only those of ``label`` when given: ``limit`` of them from ``offset``."""
        if label is None:
            rows = self.rows("page", (int(limit), int(offset)))
        else:
            rows = self.rows("page of label", (label, int(limit), int(offset)))
        return [Entry(*row) for row in rows]

    def label_counts(self) -> dict[str, int]:
        """Entries per class, classes sorted: from the manifest (indexes written before it kept them: the table)."""
        if "class_sizes" in self.manifest:
            return dict(zip(self.manifest["classes"], self.manifest["class_sizes"]))
        return dict(self.rows("label counts"))

    def similar_by_id(self, entry_id: int, k: int = 5, weights: str = "uniform", rerank: str | None = None) -> QueryResult:
        """The ``k`` entries nearest to an indexed one (itself left out), from its stored vector."""
        if self.entry(entry_id) is None:
            raise VisretError(f"entry {entry_id} is not in the index at {self.path}")
        reranker = Reranker(self.rerank if rerank is None else rerank)
        distances, ids = reranker.search(self, self.vectors([entry_id]), min(k + 1, len(self)))
        keep = ids[0] != entry_id
        kept_ids, kept_distances = ids[0][keep][:k], distances[0][keep][:k]
        return self.results(kept_distances[None], kept_ids[None], [f"entry {entry_id}"], weights)[0]

    def labelled_ids(self) -> tuple[np.ndarray, np.ndarray]:
        """Every entry's id and label (``""`` for unlabelled entries)."""
        rows = self.rows("ids and labels")
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        return ids, np.array([r[1] for r in rows], dtype=str)

    @property
    def as_codes(self) -> bool:
        """Whether the vectors are kept only as the structure's codes (no shards): ``vectors`` decodes them."""
        return self.manifest.get("stored_as") == CODES

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The stored search vectors of the given ids: read from the shards (exact, whatever the index
        type), or decoded from the structure's codes where those are the only copy (``as_codes``)."""
        where = {row[0]: (row[1], row[2]) for row in self.rows_for("places", ids)}
        missing = [int(i) for i in np.asarray(ids).tolist() if int(i) not in where]
        if missing:
            raise VisretError(f"entry {missing[0]} is not in the index at {self.path}")
        if self.as_codes:
            return self._searcher.structure.reconstruct(np.asarray(ids, np.int64).reshape(-1))
        self._store.check_shards(sorted({self._shard_of[shard] for shard, _ in where.values()}))
        out = np.empty((len(ids), self.manifest["vector_dim"]), np.float32)
        for i, entry_id in enumerate(np.asarray(ids).tolist()):
            shard, row = where[entry_id]
            out[i] = self._store.shards[self._shard_of[shard]][row]
        return out

    def stored_ids(self) -> np.ndarray:
        """Every stored row's entry id, in storage order (shard by shard)."""
        return np.asarray(self._store.ids)

    def stored_blocks(self, size: int = 100_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(ids, vectors)`` of every stored row in storage order, a shard (checked against its sum first) or,
        for vectors kept as codes, ``size`` decoded rows at a time."""
        ids = self.stored_ids()
        if self.as_codes:  # every stored id is in the structure: decoded without looking each up in the table
            for start in range(0, len(ids), size):
                yield ids[start : start + size], self._searcher.structure.reconstruct(ids[start : start + size])
            return
        start = 0
        for number, shard in enumerate(self._store.shards):
            self._store.check_shards([number])
            yield ids[start : start + len(shard)], shard
            start += len(shard)

    @property
    def extractor_state(self):
        """The fitted state stored with the extractor (``FeatureExtractor.get_state``), if any."""
        return self._store.state

    # ---- search --------------------------------------------------------------------------
    def search(self, search_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Nearest entries to search vectors (see ``embed``): ``(distances, ids)``; removed entries never come back."""
        if self._searcher is self._exact:
            self._store.check_shards()
        return self._searcher.search(search_vectors, k)

    def exact_search(self, search_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact nearest entries over the stored vectors, whatever the index type; over the codes, with every
        knob at its widest (every list probed), where the codes are all that is kept."""
        if self.as_codes:
            structure = self._searcher.structure
            structure.set_search_params(**structure.search_knobs())
            try:
                return self._searcher.search(search_vectors, k)
            finally:
                params = self.manifest["search"]
                structure.set_search_params(params.get("nprobe"), params.get("ef_search"))
        self._store.check_shards()
        return self._exact.search(search_vectors, k)

    def embed(self, images: Sequence[Any]) -> np.ndarray:
        """Search vectors of query images (paths, Pillow images or uint8 arrays): the index's
        extractor, then its distance's map."""
        return self.distance.prepare(embed_images(images, self.extractor, what="query image"))

    @property
    def rerank(self) -> str | None:
        """The re-ranking applied to queries unless they ask for another (``visret index --rerank``)."""
        return self.manifest.get("rerank")

    def query(self, image: Any, k: int = 5, weights: str = "uniform", rerank: str | None = None) -> QueryResult:
        """The ``k`` nearest indexed images to one image, with the k-NN prediction; ``rerank``
        is a re-ranking spec (see ``visret.index._rerank``), by default the index's own, ``"none"`` for none."""
        return self.query_batch([image], k=k, weights=weights, rerank=rerank)[0]

    def query_batch(self, images: Sequence[Any], k: int = 5, weights: str = "uniform", rerank: str | None = None) -> list[QueryResult]:
        if k < 1:
            raise VisretError(f"k must be at least 1, got {k}")
        if weights not in WEIGHTINGS:
            raise VisretError(f"weights must be one of {', '.join(WEIGHTINGS)}, got {weights!r}")
        if not images:
            return []
        return self.query_vectors(self.embed(images), k, weights, rerank, [_describe(image) for image in images])

    def query_vectors(
        self, search_vectors: np.ndarray, k: int = 5, weights: str = "uniform", rerank: str | None = None,
        names: Sequence[str] | None = None,
    ) -> list[QueryResult]:
        """Like ``query_batch`` for search vectors already computed (see ``embed``)."""
        search_vectors = np.asarray(search_vectors, dtype=np.float32)
        if search_vectors.ndim != 2 or search_vectors.shape[1] != self.manifest["vector_dim"]:
            raise VisretError(f"search vectors must be (n, {self.manifest['vector_dim']}) for the index at {self.path}, "
                              f"got shape {search_vectors.shape}")
        reranker = Reranker(self.rerank if rerank is None else rerank)
        distances, ids = reranker.search(self, search_vectors, k)
        names = names if names is not None else [f"<vector {i}>" for i in range(len(ids))]
        return self.results(distances, ids, names, weights)

    def results(self, distances: np.ndarray, ids: np.ndarray, queries: Sequence[str], weights: str = "uniform") -> list[QueryResult]:
        """Search output as ``QueryResult`` objects: entries looked up, the k-NN vote taken."""
        found = self.entries(ids.ravel())
        labels = [[found[i][1] if i in found else None for i in row] for row in ids.tolist()]
        if len(self.classes):
            codes = np.array([encode_labels(row, self.classes) for row in labels]).reshape(ids.shape)
            predicted, proba = vote(codes, distances, len(self.classes), weights)
        results = []
        for q, name in enumerate(queries):
            neighbors = [
                Neighbor(int(i), found[i][0], found[i][1], float(d))
                for i, d in zip(ids[q].tolist(), distances[q].tolist())
                if i in found
            ]
            result = QueryResult(query=name, neighbors=neighbors)
            if len(self.classes) and predicted[q] >= 0:
                result.prediction = str(self.classes[predicted[q]])
                result.probabilities = {str(c): round(float(p), 6) for c, p in zip(self.classes, proba[q]) if p > 0}
            results.append(result)
        return results

    def recall_at_10(self, sample: int = _search_params.SAMPLE, seed: int = 0) -> float:
        """Recall@10 of this index's search against exact search over the stored vectors, on a seeded
        sample of them, each query's own entry left out (``visret.index._search_params``)."""
        ids = self.stored_ids()  # the live entries, in storage order as the build sampled them (an array, not 10M rows of SQL)
        chosen = ids[_search_params.sample_rows(ids, sample, seed)]
        queries = self.vectors(chosen)
        truth = self.exact_search(queries, _search_params.K + 1)[1]
        return _search_params.recall_at_10(truth, self.search(queries, _search_params.K + 1)[1], chosen)

    def info(self) -> dict[str, Any]:
        """The manifest plus where the index is and its size on disk, for ``visret info``."""
        files = [self.manifest["files"][role]["bytes"] for role in self.manifest["files"]]
        size = sum(files) + sum(s["bytes"] for s in self.manifest["shards"]) + (self.path / "manifest.json").stat().st_size
        return {"path": str(self.path), "bytes": size, **self.manifest}


def _describe(image: Any) -> str:
    if isinstance(image, (str, Path)):
        return str(image)
    return f"<{type(image).__name__}>"


def open_reader(path: Path, extractor: FeatureExtractor | None = None, verify: bool = False, cls: type[IndexReader] = IndexReader):
    """Open the index at ``path`` as ``cls``; ``extractor``, when given, is the one that just wrote it
    (already built and fitted), used instead of creating another from the manifest."""
    store = open_store(path, verify)
    try:
        config, dim = store.manifest["extractor"], store.manifest["dim"]
        if extractor is None:
            try:
                extractor = extractor_from_spec(config)
            except VisretError as exc:
                missing = VisretError(f"index at {path} was built with extractor {config['name']!r}, which cannot be created: {exc}")
                return cls(store, missing)
            if store.state:
                extractor.set_state(store.state)
        if extractor.dim != dim:
            raise VisretError(f"index at {path} holds {dim}-d vectors but extractor {config['name']!r} now gives {extractor.dim}-d; rebuild it")
        if get_distance(store.manifest["metric"]).vector_dim(dim) != store.manifest["vector_dim"]:
            raise corrupt(path, "its vector length does not match its extractor and metric")
        return cls(store, extractor)
    except BaseException:
        store.close()
        raise
