"""The autofaiss layout: export the embeddings, build a FAISS index from them outside visret, attach it."""

from __future__ import annotations

import json
import shutil

import faiss
import numpy as np
import pyarrow.parquet as pq
import pytest

import visret
from visret import VisretError
from visret.index._autofaiss import export_autofaiss, import_faiss_index

HOG = {"size": 32, "pixels_per_cell": 4}


@pytest.fixture
def index(digits, tmp_path):
    """A HOG index of the digits' train part in several shards, with one removal compacted in."""
    path = tmp_path / "index"
    visret.build_index(digits / "train", "hog", path, params=HOG, workers=1, shard_size=64).close()
    visret.remove_images([digits / "train" / "3"], path)
    return path


def _flat_from_export(index, tmp_path):
    """Export the index, build an exact FAISS index from the export as autofaiss would: ``(export folder, rows)``."""
    out = tmp_path / "export"
    export_autofaiss(out, index)
    embeddings, rows = _read_export(out)
    flat = faiss.IndexFlatL2(embeddings.shape[1])
    flat.add(embeddings)
    faiss.write_index(flat, str(tmp_path / "flat.index"))
    return out, rows


def _read_export(out):
    embeddings = np.concatenate([np.load(f, allow_pickle=False) for f in sorted((out / "embeddings").glob("*.npy"))])
    metadata = [pq.read_table(f).to_pylist() for f in sorted((out / "metadata").glob("*.parquet"))]
    return embeddings, [row for rows in metadata for row in rows]


def test_export_writes_every_vector_with_its_entry(index, tmp_path, cli):
    out = tmp_path / "export"
    result = cli("export", str(out), "--format", "autofaiss", "--index", str(index))
    assert result.exit_code == 0, result.output
    assert "exported 135 vectors" in result.output
    embeddings, rows = _read_export(out)
    opened = visret.open_index(index)
    assert embeddings.shape == (135, opened.manifest["vector_dim"]) and embeddings.dtype == np.float32
    assert sorted(r["id"] for r in rows) == [entry.id for entry in opened]
    ids = [r["id"] for r in rows]
    np.testing.assert_array_equal(embeddings, opened.vectors(ids))  # row i is entry ids[i]
    entry = opened.entry(ids[5])
    assert (rows[5]["path"], rows[5]["label"], rows[5]["sha256"]) == (entry.path, entry.label, entry.sha256)
    assert len(list((out / "embeddings").glob("*.npy"))) == len(opened.manifest["shards"])
    summary = json.loads((out / "visret-export.json").read_text())
    assert (summary["count"], summary["faiss_metric"], summary["metric"]) == (135, "l2", "l2")
    again = cli("export", str(out), "--index", str(index))
    assert again.exit_code == 1 and "not an empty folder" in again.output


def test_an_index_built_from_the_export_is_attached_and_answers_as_exact_search(index, digits, tmp_path, cli):
    out = tmp_path / "export"
    export_autofaiss(out, index)
    embeddings, _ = _read_export(out)
    built = faiss.index_factory(embeddings.shape[1], "IVF8,Flat")  # what autofaiss does, by hand
    built.train(embeddings)
    built.add(embeddings)
    faiss.write_index(built, str(tmp_path / "knn.index"))
    exact = visret.open_index(index)
    queries = sorted((digits / "test").rglob("*.png"))[:10]
    expected = [[n.id for n in r.neighbors] for r in exact.query_batch(queries, k=5)]
    exact.close()
    result = cli("import-index", str(tmp_path / "knn.index"), "--index", str(index), "--metadata", str(out / "metadata"))
    assert result.exit_code == 0, result.output
    attached = visret.open_index(index)
    assert attached.manifest["factory"] == "imported" and attached.manifest["imported"]["type"] == "IndexIVFFlat"
    attached.set_search_params(nprobe=8)  # every list: exact
    assert [[n.id for n in r.neighbors] for r in attached.query_batch(queries, k=5)] == expected
    attached.close()
    # the attached index follows later changes like a built one
    visret.add_images([digits / "test"], index, workers=1)
    visret.remove_images([digits / "train" / "4"], index)
    changed = visret.open_index(index, verify=True)
    assert len(changed) == 135 + 50 - 15
    changed.set_search_params(nprobe=8)
    first = changed.query(queries[0], k=1).neighbors[0]
    assert first.path == str(queries[0]) and first.distance == pytest.approx(0.0, abs=1e-5)


def test_an_index_with_ids_of_its_own_is_checked(index, tmp_path):
    opened = visret.open_index(index)
    ids = np.array([entry.id for entry in opened], np.int64)
    vectors = opened.vectors(ids)
    opened.close()
    good = faiss.IndexIDMap2(faiss.IndexFlatL2(vectors.shape[1]))
    good.add_with_ids(vectors, ids)
    faiss.write_index(good, str(tmp_path / "good.index"))
    import_faiss_index(tmp_path / "good.index", index)
    assert visret.open_index(index).manifest["imported"]["type"] == "IndexFlatL2"
    wrong = faiss.IndexIDMap2(faiss.IndexFlatL2(vectors.shape[1]))
    wrong.add_with_ids(vectors, ids + 1000)
    faiss.write_index(wrong, str(tmp_path / "wrong.index"))
    with pytest.raises(VisretError, match="ids of wrong.index are neither"):
        import_faiss_index(tmp_path / "wrong.index", index)


@pytest.mark.parametrize("make, message", [
    (lambda d, n: faiss.IndexFlatL2(d + 1), "-d vectors; the index's are"),
    (lambda d, n: faiss.IndexFlatIP(d), "another metric"),
    (lambda d, n: faiss.IndexFlatL2(d), "holds 3 vectors; the index has 135"),
])
def test_a_foreign_index_is_refused_in_one_line(index, tmp_path, make, message):
    manifest = json.loads((index / "manifest.json").read_text())
    foreign = make(manifest["vector_dim"], 3)
    foreign.add(np.random.default_rng(0).random((3, foreign.d), dtype=np.float32))
    faiss.write_index(foreign, str(tmp_path / "foreign.index"))
    before = (index / "manifest.json").read_bytes()
    with pytest.raises(VisretError, match=message):
        import_faiss_index(tmp_path / "foreign.index", index)
    assert (index / "manifest.json").read_bytes() == before  # nothing written


def test_not_a_faiss_file_and_damaged_metadata(index, tmp_path, cli):
    (tmp_path / "junk.index").write_bytes(b"\x00" * 100)
    result = cli("import-index", str(tmp_path / "junk.index"), "--index", str(index))
    assert result.exit_code == 1 and "is not a FAISS index file" in result.output
    out, _ = _flat_from_export(index, tmp_path)
    shutil.rmtree(out / "metadata")
    (out / "metadata").mkdir()
    (out / "metadata" / "metadata_00000.parquet").write_bytes(b"not parquet")
    result = cli("import-index", str(tmp_path / "flat.index"), "--index", str(index), "--metadata", str(out / "metadata"))
    assert result.exit_code == 1 and "cannot read the id column" in result.output
    wrong_format = cli("export", str(tmp_path / "x"), "--format", "parquet", "--index", str(index))
    assert wrong_format.exit_code == 1 and "unknown export format" in wrong_format.output


def test_an_ivf_under_an_id_map_stays_right_after_removals(index, digits, tmp_path):
    """FAISS's IVF does not renumber on removal while an id map does: such an index is tombstoned."""
    opened = visret.open_index(index)
    ids = np.array([entry.id for entry in opened], np.int64)
    vectors = opened.vectors(ids)
    opened.close()
    ivf = faiss.IndexIDMap2(faiss.index_factory(vectors.shape[1], "IVF4,Flat"))
    ivf.train(vectors)
    ivf.add_with_ids(vectors, ids)
    faiss.write_index(ivf, str(tmp_path / "ivf.index"))
    import_faiss_index(tmp_path / "ivf.index", index)
    visret.remove_images([digits / "train" / "0"], index)
    after = visret.open_index(index)
    after.set_search_params(nprobe=4)
    for path in sorted((digits / "train" / "9").glob("*.png"))[:5]:
        first = after.query(path, k=1).neighbors[0]
        assert first.path == str(path) and first.distance == pytest.approx(0.0, abs=1e-5)


def test_an_index_keeping_its_lists_in_another_file_is_refused_and_that_file_untouched(index, tmp_path):
    out = tmp_path / "export"
    export_autofaiss(out, index)
    embeddings, _ = _read_export(out)
    quantizer = faiss.IndexFlatL2(embeddings.shape[1])
    ivf = faiss.IndexIVFFlat(quantizer, embeddings.shape[1], 4)
    ivf.train(embeddings)
    outside = tmp_path / "outside.ivfdata"
    lists = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(outside))
    ivf.replace_invlists(lists, False)  # the Python object keeps ownership, and lives as long as ivf
    ivf.add(embeddings)
    faiss.write_index(ivf, str(tmp_path / "ondisk.index"))
    del ivf, lists, quantizer
    before, manifest = outside.read_bytes(), (index / "manifest.json").read_bytes()
    with pytest.raises(VisretError, match="keeps its inverted lists in another file"):
        import_faiss_index(tmp_path / "ondisk.index", index, metadata=out / "metadata")
    assert outside.read_bytes() == before and (index / "manifest.json").read_bytes() == manifest
    # refused before FAISS opens that file (read-write): with the file gone, the refusal is the same
    outside.rename(tmp_path / "moved")
    with pytest.raises(VisretError, match="keeps its inverted lists in another file"):
        import_faiss_index(tmp_path / "ondisk.index", index, metadata=out / "metadata")
    assert not outside.exists()


def test_metadata_in_another_order_than_the_rows_is_refused(index, tmp_path):
    import pyarrow as pa

    out, rows = _flat_from_export(index, tmp_path)
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    ids = np.random.default_rng(1).permutation([r["id"] for r in rows])
    pq.write_table(pa.table({"id": pa.array(ids, pa.int64())}), shuffled / "metadata_00000.parquet")
    manifest = (index / "manifest.json").read_bytes()
    with pytest.raises(VisretError, match=r"maps vectors to the wrong entries: only \d+% of 64"):
        import_faiss_index(tmp_path / "flat.index", index, metadata=shuffled)
    assert (index / "manifest.json").read_bytes() == manifest
    import_faiss_index(tmp_path / "flat.index", index, metadata=out / "metadata")  # the true order is accepted


def test_a_small_file_whose_size_prefix_claims_gigabytes_is_refused_without_allocating_them(index, tmp_path, cli):
    """FAISS's plain read allocates what an array's size prefix claims before reading it."""
    import struct
    import subprocess
    import sys

    out, _ = _flat_from_export(index, tmp_path)
    data = bytearray((tmp_path / "flat.index").read_bytes())
    prefix = data.find(struct.pack("<Q", 135 * faiss.read_index(str(tmp_path / "flat.index")).d))  # the vectors' size
    assert prefix > 0
    data[prefix : prefix + 8] = struct.pack("<Q", 500_000_000)  # 2 GB of float32 in a file of a few hundred KB
    (tmp_path / "huge.index").write_bytes(bytes(data))
    result = cli("import-index", str(tmp_path / "huge.index"), "--index", str(index), "--metadata", str(out / "metadata"))
    assert result.exit_code == 1 and "is not a FAISS index file" in result.output
    script = (  # VmHWM: this process's own peak (ru_maxrss keeps the parent's across exec)
        "import re, sys\nfrom pathlib import Path\nfrom visret.index import _vectors as vectors\n"
        "def peak():\n    return int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) // 1024\n"
        "before = peak()\n"
        "try:\n    vectors.read(Path(sys.argv[1]))\nexcept RuntimeError:\n    pass\n"
        "print(peak() - before)\n"
    )
    grown_mib = int(subprocess.run([sys.executable, "-c", script, str(tmp_path / "huge.index")], capture_output=True,
                                   text=True, check=True).stdout)
    assert grown_mib < 200, grown_mib  # the 1,907 MiB the prefix claims are never allocated
