"""Indexes of vectors computed elsewhere: the same index as embedding the files, in bounded memory."""

from __future__ import annotations

import numpy as np
import pytest

import visret
from visret import VisretError

HOG = {"size": 32, "pixels_per_cell": 4}


@pytest.fixture(scope="module")
def embedded(digits_index):
    """The digits index's vectors, paths, labels and hashes, in id order."""
    with visret.open_index(digits_index) as index:
        rows = [(e.id, e.path, e.label, e.sha256) for e in index]
        return index.vectors([r[0] for r in rows]), [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]


def test_arrays_give_the_index_that_embedding_gives(digits, digits_index, embedded, tmp_path):
    X, paths, labels, hashes = embedded
    extractor = visret.get_extractor("hog", **HOG)
    built = visret.index_from_arrays(X, paths, labels, tmp_path / "arrays", extractor, hashes=hashes, shard_size=40)
    reference = visret.open_index(digits_index)
    assert [(e.id, e.path, e.label, e.sha256) for e in built] == [(e.id, e.path, e.label, e.sha256) for e in reference]
    np.testing.assert_array_equal(built.vectors(list(range(1, 151))), reference.vectors(list(range(1, 151))))
    query = sorted((digits / "test" / "5").iterdir())[0]
    assert built.query(query, k=5).to_dict() == reference.query(query, k=5).to_dict()
    assert len(built.manifest["shards"]) == 4  # committed 40 rows at a time
    # with content hashes, add recognises what is indexed
    assert visret.add_images([digits / "train"], tmp_path / "arrays").unchanged == 150


def test_a_memory_map_or_row_blocks_build_an_ivf_index(embedded, tmp_path):
    X, paths, labels, _ = embedded
    np.save(tmp_path / "x.npy", X)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    extractor = visret.get_extractor("hog", **HOG)
    a = visret.index_from_arrays(mapped, paths, labels, tmp_path / "a", extractor, factory="IVF4,Flat", nprobe=4)
    b = visret.index_from_arrays((X[i : i + 33] for i in range(0, 150, 33)), paths, labels, tmp_path / "b", extractor,
                                 factory="IVF4,Flat", nprobe=4)
    assert a.manifest["factory"] == "IVF4,Flat" and len(a) == len(b) == 150
    for index in (a, b):
        assert [r.neighbors[0].id for r in index.query_vectors(X[:10], k=1)] == list(range(1, 11))
    assert a.recall_at_10() == b.recall_at_10() == 1.0  # every list probed: exact
    for wrong in (X[:3, :10], X[0]):  # another extractor's vectors, or one vector not in a batch
        with pytest.raises(VisretError, match=r"search vectors must be \(n, \d+\)"):
            a.query_vectors(wrong, k=1)


def test_paths_labels_and_hashes_may_stream_in_step_with_the_vectors(embedded, tmp_path):
    """Generators instead of lists (ten million paths need not be held): the same index, and the same checks."""
    X, paths, labels, hashes = embedded
    extractor = visret.get_extractor("hog", **HOG)
    listed = visret.index_from_arrays(X, paths, labels, tmp_path / "listed", extractor, hashes=hashes, shard_size=40)
    streamed = visret.index_from_arrays((X[i : i + 50] for i in range(0, 150, 50)), iter(paths), iter(labels),
                                        tmp_path / "streamed", extractor, hashes=(h for h in hashes), shard_size=40)
    assert [(e.id, e.path, e.label, e.sha256) for e in streamed] == [(e.id, e.path, e.label, e.sha256) for e in listed]
    np.testing.assert_array_equal(streamed.vectors(list(range(1, 151))), listed.vectors(list(range(1, 151))))
    for vectors, names, given, message in [
        (X, iter(paths[:-1] + paths[:1]), None, "given twice"),
        (X, iter(paths[:100]), None, "more vectors than the 100 paths"),
        (X[:100], iter(paths), None, "100 vectors for more paths"),
        (X, iter(paths), iter(labels[:3]), "fewer labels or hashes than paths"),
        (X, iter(paths), iter(labels + ["x"]), "more labels or hashes than the 150 paths"),
    ]:
        with pytest.raises(VisretError, match=message):
            visret.index_from_arrays(vectors, names, given, tmp_path / "bad", extractor)
        assert not (tmp_path / "bad" / "manifest.json").exists()


def test_building_keeps_a_few_bytes_an_entry_beside_the_vectors(tmp_path):
    """The staged rows stream into the entries table: no list of every row, no dict of every path."""
    import tracemalloc

    n, extractor = 100_000, visret.get_extractor("pixels", size=2)
    rng = np.random.default_rng(0)
    chunks = (rng.random((10_000, extractor.dim), dtype=np.float32) for _ in range(n // 10_000))
    tracemalloc.start()
    try:
        index = visret.index_from_arrays(chunks, (f"photos/{i:07d}.jpg" for i in range(n)), None, tmp_path / "ix", extractor)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(index) == n and index.entry(n).path == f"photos/{n - 1:07d}.jpg"
    assert peak / n < 200, f"{peak / n:.0f} bytes an entry"  # ~110 here (int64 ids and path hashes); 390 when rows were held


@pytest.mark.parametrize("change, message", [
    (lambda X, p, l: (X[:, :10], p, l), "rows of"),
    (lambda X, p, l: (X[:100], p, l), "100 vectors for 150 paths"),
    (lambda X, p, l: (np.vstack([X, X[:1]]), p, l), "more vectors than the 150 paths"),
    (lambda X, p, l: (X, p[:-1] + p[:1], l), "paths must be unique"),
    (lambda X, p, l: (X, p, l[:3]), "150 paths but 3 labels"),
])
def test_mismatched_arrays_are_one_line_and_write_nothing(embedded, tmp_path, change, message):
    X, paths, labels, _ = embedded
    X, paths, labels = change(X, paths, labels)
    with pytest.raises(VisretError, match=message):
        visret.index_from_arrays(X, paths, labels, tmp_path / "ix", visret.get_extractor("hog", **HOG))
    assert not (tmp_path / "ix" / "manifest.json").exists()



@pytest.mark.parametrize("factory, knob", [("IVF64,Flat", "nprobe"), ("HNSW8", "ef_search")])
def test_an_approximate_index_is_built_with_the_fewest_probes_that_reach_the_recall_target(factory, knob, tmp_path, cli):
    """Unset, nprobe / ef_search are chosen at build: the smallest doubling value whose recall@10 against exact
    search (a seeded sample of stored vectors, each query's own entry left out) reaches 0.95, kept in the
    manifest with the recall it gave; ``visret info`` shows it, ``--recall`` measures the same again."""
    from visret.index._search_params import RECALL_TARGET

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 64))
    X = (centres[rng.integers(0, 40, 6000)] + 0.6 * rng.normal(size=(6000, 64))).astype(np.float32)
    extractor = visret.get_extractor("pixels", size=8)  # 64-d: vectors computed elsewhere
    index = visret.index_from_arrays(X, [f"x/{i}.png" for i in range(len(X))], None, tmp_path / "ix", extractor, factory=factory)
    search = index.manifest["search"]
    chosen, recall = search[knob], search["recall_at_10"]
    assert recall >= RECALL_TARGET and round(index.recall_at_10(), 4) == recall and chosen > 1  # kept to 4 places
    index.set_search_params(**{knob: chosen // 2})
    assert index.recall_at_10() < RECALL_TARGET  # one step fewer misses the target: the fewest was chosen
    shown = cli("info", "--index", tmp_path / "ix", "--recall")
    assert shown.exit_code == 0 and f'{{"{knob}": {chosen}}}' in shown.output and f"{recall:.4f}" in shown.output
    given = visret.index_from_arrays(X, [f"x/{i}.png" for i in range(len(X))], None, tmp_path / "given", extractor,
                                     factory=factory, **{knob: 3})
    assert given.manifest["search"] == {knob: 3}  # given: kept as given, nothing measured
