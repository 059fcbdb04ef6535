"""Indexing from a list of images (CSV or Parquet) and reading images by URI."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import visret
from visret import VisretError
from visret.images._lists import read_image_list
from visret.images._decode import ImageReadError, read_file

HOG = {"size": 32, "pixels_per_cell": 4}


def _write_csv(path, rows, header=("path", "label")):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _train_files(digits, n=30):
    return sorted((digits / "train").rglob("*.png"))[:n]


def test_csv_list_gives_the_same_index_as_the_folder(digits, tmp_path):
    files = sorted((digits / "train").rglob("*.png"))
    # relative paths are taken from the list's folder
    listed = _write_csv(digits / "train.csv", [(f.relative_to(digits), f.parent.name) for f in files])
    from_list = visret.build_index(listed, "hog", tmp_path / "list", params=HOG, workers=1)
    from_folder = visret.build_index(digits / "train", "hog", tmp_path / "folder", params=HOG, workers=1)
    assert [(e.id, e.path, e.label, e.sha256) for e in from_list] == [(e.id, e.path, e.label, e.sha256) for e in from_folder]
    assert len(from_list) == len(files) == 150
    query = from_folder.query(files[7], k=3)
    assert [n.path for n in from_list.query(files[7], k=3).neighbors] == [n.path for n in query.neighbors]
    assert from_list.manifest["build"]["source"] == str(listed)


def test_parquet_list_with_uris_unlabelled_rows_and_a_missing_file(digits, tmp_path):
    files = _train_files(digits, 12)
    paths = [f.as_uri() for f in files] + [(tmp_path / "gone.png").as_uri()]
    labels = [f.parent.name for f in files[:6]] + [None] * 7
    listed = tmp_path / "images.parquet"
    pq.write_table(pa.table({"path": paths, "label": pa.array(labels, pa.string()), "extra": list(range(13))}), listed)
    index = visret.build_index(listed, "hog", tmp_path / "index", params=HOG, workers=1)
    assert len(index) == 12 and index.manifest["build"]["skipped"] == 1
    stored = {entry.path: entry.label for entry in index}
    assert stored[files[0].as_uri()] == files[0].parent.name
    assert stored[files[11].as_uri()] is None
    assert index.query(files[3], k=1).neighbors[0].path == files[3].as_uri()


def test_add_accepts_a_list(digits, tmp_path, cli):
    index = tmp_path / "index"
    visret.build_index(digits / "test", "hog", index, params=HOG, workers=1).close()
    listed = _write_csv(tmp_path / "more.csv", [(str(f), f.parent.name) for f in _train_files(digits, 20)])
    result = cli("add", "--from-list", str(listed), "--index", str(index), "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "added 20" in result.output
    assert len(visret.open_index(index)) == 70


def test_fsspec_uris_are_read(digits):
    import fsspec  # in the ray extra, which make test installs

    data = _train_files(digits, 1)[0].read_bytes()
    with fsspec.open("memory://visret/one.png", "wb") as fh:
        fh.write(data)
    assert read_file("memory://visret/one.png") == data
    with pytest.raises(ImageReadError, match="No such file"):
        read_file("memory://visret/none.png")
    with pytest.raises(ImageReadError, match="exceeds the limit"):
        read_file("memory://visret/one.png", max_bytes=10)


@pytest.mark.parametrize("content, message", [
    ("name,label\na.png,x\n", "no 'path' column"),
    ("path,label\na.png,x\n,y\n", "row 2 has an empty path"),
    ("", "no 'path' column"),
])
def test_bad_lists_are_one_line(tmp_path, content, message):
    listed = tmp_path / "bad.csv"
    listed.write_text(content)
    with pytest.raises(VisretError, match=message):
        read_image_list(listed)


def test_a_damaged_parquet_list_is_one_line(tmp_path, cli):
    listed = tmp_path / "bad.parquet"
    listed.write_bytes(b"PAR1 not really")
    result = cli("index", "--from-list", str(listed), "--index", str(tmp_path / "i"))
    assert result.exit_code == 1
    assert result.output.strip().startswith("error: cannot read") and "\n" not in result.output.strip()


def test_folder_and_list_are_exclusive(digits, tmp_path, cli):
    listed = _write_csv(tmp_path / "l.csv", [])
    both = cli("index", str(digits / "train"), "--from-list", str(listed), "--index", str(tmp_path / "i"))
    neither = cli("index", "--index", str(tmp_path / "i"))
    assert both.exit_code == neither.exit_code == 1
    assert "one of them" in both.output and "one of them" in neither.output
    empty = cli("index", "--from-list", str(listed), "--index", str(tmp_path / "i"))
    assert empty.exit_code == 1 and "no image files found" in empty.output


def test_list_rows_keep_their_order_once_each(tmp_path):
    listed = _write_csv(tmp_path / "l.csv", [("b.png", "1"), ("a.png", ""), ("b.png", "2"), ("s3://bucket/c.jpg", "3")])
    records = read_image_list(listed)
    assert [str(r.path) for r in records] == [str(tmp_path / "b.png"), str(tmp_path / "a.png"), "s3://bucket/c.jpg"]
    assert [r.label for r in records] == ["1", None, "3"]
    assert isinstance(records[2].path, str)


def test_missing_labels_are_unlabelled_whole_numbers_are_text_and_other_values_are_refused(digits, tmp_path):
    files = _train_files(digits, 5)
    listed = tmp_path / "labels.parquet"
    labels = pa.array([3.0, float("nan"), None, 7.0, 2.0], pa.float64())  # pandas' integers beside missing values
    pq.write_table(pa.table({"path": [str(f) for f in files], "label": labels}), listed)
    assert [r.label for r in read_image_list(listed)] == ["3", None, None, "7", "2"]
    text = _write_csv(tmp_path / "labels.csv", [(str(f), label) for f, label in zip(files, ["cat", "nan", "", "NA", " dog "])])
    assert [r.label for r in read_image_list(text)] == ["cat", None, None, None, "dog"]
    for bad, shown in ((pa.array([1.5] * 5), "1.5"), (pa.array([True] * 5), "True"),
                       (pa.array([{"a": 1}] * 5), "{'a': 1}"), (pa.array([[1, 2]] * 5), "[1, 2]")):
        pq.write_table(pa.table({"path": [str(f) for f in files], "label": bad}), listed)
        with pytest.raises(VisretError, match=rf"row 1: label {re.escape(shown)} is not text or a whole number"):
            read_image_list(listed)


def test_unlabelled_rows_of_a_list_are_never_scored_as_a_class(digits, tmp_path):
    """Empty, nan, NA, None labels make unlabelled entries: leave-one-out queries only labelled ones and
    reports no class named ""; the unlabelled ones stay in the collection, relevant to no query."""
    files = _train_files(digits, 40)
    missing = ["", "nan", "NA", "None", "N/A"]
    rows = [(str(f), missing[i // 2 % 5] if i % 2 else f.parent.name) for i, f in enumerate(files)]
    listed = _write_csv(tmp_path / "list.csv", rows)
    with visret.build_index(listed, "hog", tmp_path / "ix", params={"size": 32, "pixels_per_cell": 4}, workers=1) as index:
        report = visret.evaluate_knn(index=index, k=3)
        stored = [e.label for e in index]
    labelled = [label for label in stored if label is not None]
    assert "" not in report.classes and sorted(report.classes) == sorted(set(labelled))
    # a query whose neighbours are all unlabelled abstains: scored by no class
    assert 0 < sum(row["support"] for row in report.per_class.values()) <= len(labelled) < len(stored)


def test_sync_from_a_list_takes_its_files_as_the_scope(digits, tmp_path, cli):
    import shutil

    copies = tmp_path / "copies"
    copies.mkdir()
    files = [Path(shutil.copy(f, copies / f"{f.parent.name}-{f.name}")) for f in _train_files(digits, 14)]
    labels = {f: f.name.split("-")[0] for f in files}
    first = _write_csv(tmp_path / "first.csv", [(str(f), labels[f]) for f in files[:10]])
    index = tmp_path / "index"
    visret.build_index(first, "hog", index, params=HOG, workers=1).close()
    files[0].unlink()  # a listed file gone; files 1-2 no longer listed; files 10-13 new
    second = _write_csv(tmp_path / "second.csv", [(str(f), labels[f]) for f in [files[0], *files[3:]]])
    result = cli("sync", str(second), "--index", str(index), "--workers", "1")
    assert result.exit_code == 0, result.output
    with visret.open_index(index) as opened:
        kept = sorted(e.path for e in opened)
    assert kept == sorted(str(f) for f in files[1:])  # the gone one out, the unlisted ones stay, the new ones in
