"""Folder walking: labels from sub-folders, determinism, symlink loops, what counts as an image."""

import os

import pytest

from visret import VisretError
from visret.images._folders import scan_folder


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def test_image_folder_layout_gives_labels_in_sorted_order(tmp_path):
    for name in ["cat/b.png", "cat/a.JPG", "dog/sub/c.webp", "dog/notes.txt", "top.png", ".hidden/d.png", "cat/.e.png"]:
        touch(tmp_path / name)
    records = scan_folder(tmp_path)
    assert [(r.path.relative_to(tmp_path).as_posix(), r.label) for r in records] == [
        ("cat/a.JPG", "cat"),
        ("cat/b.png", "cat"),
        ("dog/sub/c.webp", "dog"),
        ("top.png", None),
    ]
    assert all(r.path.is_absolute() for r in records)


def test_flat_folder_is_unlabelled(tmp_path):
    for name in ["2.png", "1.bmp", "3.tiff"]:
        touch(tmp_path / name)
    records = scan_folder(tmp_path)
    assert [r.path.name for r in records] == ["1.bmp", "2.png", "3.tiff"]
    assert {r.label for r in records} == {None}


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlink_loops_are_walked_once(tmp_path):
    touch(tmp_path / "a" / "x.png")
    os.symlink(tmp_path / "a", tmp_path / "a" / "loop")
    os.symlink(tmp_path / "a", tmp_path / "b")
    records = scan_folder(tmp_path)
    assert [(r.path.relative_to(tmp_path).as_posix(), r.label) for r in records] == [("a/x.png", "a")]


def test_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(VisretError, match="is not a folder"):
        scan_folder(tmp_path / "nope")
