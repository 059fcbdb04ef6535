"""The on-disk store under attack and bad luck: staging that heals, options checked before work,
special files, names outside the index, links, a checksummed manifest, cheap opens, and crashes
at every point of every writer."""

import json
import re
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visret
from visret import VisretError, add_images, build_index, open_index, sync_index
from visret.index._store import layout
from visret.index._store.layout import MANIFEST, checksum

VISRET = str(Path(sys.executable).with_name("visret"))


def manifest_of(path: Path) -> dict:
    return json.loads((path / MANIFEST).read_text())


def resign(path: Path, edit) -> None:
    manifest = manifest_of(path)
    edit(manifest)
    manifest["checksum"] = checksum(manifest)
    (path / MANIFEST).write_text(json.dumps(manifest))


def snapshot(path: Path) -> dict:
    """What an index answers: entries by id (path, label, content hash) and their vectors."""
    with open_index(path) as index:
        rows = [(e.id, e.path, e.label, e.sha256) for e in index]
        ids = [r[0] for r in rows]
        return {"rows": rows, "vectors": index.vectors(ids).round(6).tolist() if ids else [], "count": len(index)}


def small_folder(root: Path, classes: int = 3, per_class: int = 8, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(root / f"c{c}" / f"{i}.png")
    return root


# ---- staging heals itself; options are checked before any image is embedded -----------------
def test_a_part_left_without_its_vectors_or_damaged_is_recomputed(digits, tmp_path):
    reference = snapshot(build_index(digits / "train", "pixels", tmp_path / "ref", workers=1).path)
    path = tmp_path / "ix"
    staging = path / ".staging"
    env = {**os.environ, "VISRET_CRASH_AT": "part-committed:3"}
    code = f"import visret; visret.build_index({str(digits / 'train')!r}, 'pixels', {str(path)!r}, workers=1, shard_size=16)"
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == -signal.SIGKILL
    parts = sorted(staging.glob("part-*.json"))
    assert len(parts) == 3
    parts[0].with_suffix(".npy").unlink()  # vectors gone (as after an old interrupted commit)
    parts[1].with_suffix(".npy").write_bytes(b"\x93NUMPY garbage")  # damaged
    build_index(digits / "train", "pixels", path, workers=1, shard_size=16).close()
    assert snapshot(path) == reference
    assert not staging.exists()


def test_every_option_is_checked_before_any_image_is_embedded(digits, tmp_path):
    path = tmp_path / "ix"
    for factory, message in [("IVF99999,Flat", "99999 inverted lists, more than the 150 images"),
                             ("HNSW0", "FAISS cannot use 'HNSW0'"), ("Banana", "not a FAISS index-factory string")]:
        start = time.perf_counter()
        with pytest.raises(VisretError, match=message):
            build_index(digits / "train", "gist", path, factory=factory, workers=1)
        assert time.perf_counter() - start < 20 and not (path / ".staging").exists()
    with pytest.raises(VisretError, match="distance l1 works with the Flat index only"):
        build_index(digits / "train", "gist", path, metric="l1", factory="HNSW16", workers=1)
    with pytest.raises(VisretError, match="more than the 1048576 supported"):
        build_index(digits / "train", "color-hist", path, params={"bins": [128, 128, 128]}, workers=1)
    assert not path.exists() or not any(path.glob("**/part-*"))


# ---- special files -------------------------------------------------------------------------
def test_pipes_devices_and_huge_files_are_skipped_without_reading_them(digits, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(digits / "test" / "1", data / "one")
    os.mkfifo(data / "one" / "pipe.png")
    os.symlink("/dev/zero", data / "one" / "zero.png")
    with open(data / "one" / "huge.jpg", "wb") as fh:  # 3 GB, sparse: nothing to read but the size
        fh.truncate(3 * 2**30)
    changes = []
    started = time.perf_counter()
    index = build_index(data, "pixels", tmp_path / "ix", workers=1)
    changes.append(index.manifest["build"])
    index.close()
    assert time.perf_counter() - started < 30
    assert changes[0]["indexed"] == 5 and changes[0]["skipped"] == 3
    assert sync_index(data, tmp_path / "ix", workers=1).added == 0  # hashing for sync reads none of them either
    with open_index(tmp_path / "ix") as opened:
        with pytest.raises(VisretError, match="pipe.png: not a regular file"):
            opened.query(data / "one" / "pipe.png")
        with pytest.raises(VisretError, match="huge.jpg: 3221225472 bytes exceeds the limit"):
            opened.query(data / "one" / "huge.jpg")


def test_a_file_name_that_is_not_utf8_is_a_counted_skip(digits, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(digits / "test" / "2", data / "two")
    source = sorted((data / "two").iterdir())[0]
    os.rename(source, os.fsencode(data / "two") + b"/\xff\xfe-latin1.png")
    with build_index(data, "pixels", tmp_path / "ix", workers=1) as index:
        assert index.manifest["build"]["indexed"] == 4 and index.manifest["build"]["skipped"] == 1


def test_a_skipped_file_name_with_a_newline_is_one_warning_line(digits, tmp_path, cli):
    data = tmp_path / "data"
    shutil.copytree(digits / "test" / "3", data / "three")
    (data / "three" / "two\nlines.png").write_bytes(b"not an image")
    result = subprocess.run([VISRET, "index", str(data), "-e", "pixels", "--index", str(tmp_path / "ix"), "--workers", "1"],
                            capture_output=True, text=True)
    assert result.returncode == 0
    warnings = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert warnings == [f"warning: skipped {data}/three/two\\nlines.png: not an image"]


def test_a_folder_that_cannot_be_listed_is_a_counted_skip(digits, tmp_path):
    import tempfile

    data = Path(tempfile.mkdtemp(prefix="visret-perm-"))
    try:
        shutil.copytree(digits / "test" / "4", data / "four")
        shutil.copytree(digits / "test" / "5", data / "five")
        os.chmod(data / "five", 0o300)  # no read permission: its files cannot be listed
        for p in [data, *data.rglob("*")]:
            if p != data / "five":
                os.chmod(p, 0o777 if p.is_dir() else 0o666)
        command = [VISRET, "index", str(data), "-e", "pixels", "--index", str(data / "ix"), "--workers", "1"]
        if os.geteuid() == 0:  # root reads everything: run as nobody
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HOME": str(data)})
        assert result.returncode == 0, result.stderr
        assert "indexed 5 images, skipped 1" in result.stdout
        assert f"skipped {data}/five: Permission denied" in result.stderr
    finally:
        os.chmod(data / "five", 0o700)
        shutil.rmtree(data)


def test_max_pixels_above_pillows_own_limit_is_honoured(tmp_path):
    from visret.images._decode import DEFAULT_MAX_PIXELS, read_image
    from visret.features._extractor import InputSpec

    big = tmp_path / "big.png"
    Image.new("L", (10_000, 9_000), 90).save(big)  # 90 Mpx: over Pillow's 89.5 Mpx
    spec = InputSpec("L", (8, 8))
    with pytest.raises(visret.images._decode.ImageReadError, match=f"10000x9000 pixels exceeds the limit of {DEFAULT_MAX_PIXELS}"):
        read_image(big, spec)
    image, _ = read_image(big, spec, max_pixels=100_000_000)
    assert image.shape == (8, 8) and abs(float(image.mean()) - 90) <= 1


# ---- the manifest: checksummed, validated, names only inside the index ---------------------
@pytest.fixture
def index_path(digits, tmp_path) -> Path:
    path = tmp_path / "ix"
    build_index(digits / "test", "hog", path, params={"size": 32, "pixels_per_cell": 8}, workers=1).close()
    return path


def test_every_bit_flip_of_the_manifest_is_detected(index_path):
    original = (index_path / MANIFEST).read_bytes()
    rng = np.random.default_rng(0)
    flips = rng.choice(len(original) * 8, size=min(1500, len(original) * 8), replace=False)
    outcomes = {"error": 0}
    for bit in flips:
        data = bytearray(original)
        data[bit // 8] ^= 1 << (bit % 8)
        (index_path / MANIFEST).write_bytes(bytes(data))
        with pytest.raises(VisretError, match="corrupt|format"):
            layout.read_manifest(index_path)
        outcomes["error"] += 1
    (index_path / MANIFEST).write_bytes(original)
    assert outcomes["error"] == len(flips) and open_index(index_path, verify=True).close() is None


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "shards/../../x.npy", "shards/.hidden"])
def test_a_manifest_naming_files_outside_the_index_is_refused(index_path, name):
    resign(index_path, lambda m: m["shards"][0].update(name=name))
    with pytest.raises(VisretError, match="not a plain name inside the index"):
        open_index(index_path)


def test_a_file_of_the_index_replaced_by_a_link_is_refused(index_path, tmp_path):
    shard = index_path / manifest_of(index_path)["shards"][0]["name"]
    outside = tmp_path / "outside.npy"
    shutil.copyfile(shard, outside)
    shard.unlink()
    shard.symlink_to(outside)
    with pytest.raises(VisretError, match="not a plain file"):
        open_index(index_path)


def test_an_object_array_in_the_index_is_refused_unread(index_path, monkeypatch):
    shard = manifest_of(index_path)["shards"][0]
    np.save(index_path / shard["name"], np.array([{"x": 1}] * 3, dtype=object), allow_pickle=True)
    resign(index_path, lambda m: m["shards"][0].update(bytes=(index_path / shard["name"]).stat().st_size))
    with pytest.raises(VisretError, match="is not a readable array"):
        open_index(index_path)


@pytest.mark.parametrize("folder", ["shards", ".staging"])
def test_a_writer_never_follows_a_link_out_of_the_index(index_path, digits, tmp_path, folder):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    target = index_path / folder
    if target.exists():
        for child in target.iterdir():
            shutil.move(child, elsewhere / child.name)
        target.rmdir()
    target.symlink_to(elsewhere)
    before = sorted(p.name for p in elsewhere.iterdir())
    with pytest.raises(VisretError, match="not a plain directory"):
        add_images([digits / "train" / "1"], index_path, workers=1)
    assert sorted(p.name for p in elsewhere.iterdir()) == before


def test_each_file_is_checked_on_first_read_and_verify_checksums_all_on_opening(index_path, digits, monkeypatch):
    import visret.index._store.reader as reader

    manifest = manifest_of(index_path)
    every_file = sorted(Path(n).name for n in layout.referenced(manifest))
    hashed, summed = [], []
    monkeypatch.setattr(reader, "sha256_file", lambda p: hashed.append(Path(p).name) or visret.index._store.files.sha256_file(p))
    monkeypatch.setattr(reader, "xxh3_file", lambda p: summed.append(Path(p).name) or visret.index._store.files.xxh3_file(p))
    query = sorted((digits / "test" / "3").iterdir())[0]
    with open_index(index_path) as index:
        assert hashed == [Path(manifest["files"]["ids"]["name"]).name] and summed == []  # opening: the id list only
        index.query(query, k=3)
        assert sorted(summed) == sorted(set(every_file) - set(hashed))  # what a query reads, before reading it
        index.query(query, k=3)
        assert len(summed) == len(every_file) - 1  # once per opening
    hashed.clear(), summed.clear()
    with open_index(index_path, verify=True) as index:
        index.query(query, k=3)
    assert sorted(hashed) == every_file and summed == []


def test_an_index_written_with_word_sums_is_checked_with_sha256_on_first_read(index_path, digits):
    """Older indexes record the hand-written word sum, which misses some two-bit changes: SHA-256 checks them."""
    def with_word_sums(manifest):
        for entry in [*manifest["files"].values(), *manifest["shards"]]:
            entry["words"] = "0" * 32  # what it holds is never trusted
            del entry["xxh3"]

    resign(index_path, with_word_sums)
    query = sorted((digits / "test" / "3").iterdir())[0]
    with open_index(index_path) as index:
        assert index.query(query, k=1).neighbors[0].path == str(query)
    shard = index_path / manifest_of(index_path)["shards"][0]["name"]
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0x10
    shard.write_bytes(bytes(data))
    with open_index(index_path) as index, pytest.raises(VisretError, match="does not match its checksum"):
        index.query(query, k=1)


def test_the_checksum_changes_with_flipped_bytes_swapped_words_and_paired_sign_bits(tmp_path):
    from visret.index._store.files import xxh3_file

    file = tmp_path / "f"
    original = np.random.default_rng(0).bytes(8 * 1000 + 3)  # a tail that is not a whole word
    file.write_bytes(original)
    reference = xxh3_file(file)
    rng = np.random.default_rng(1)
    for position in rng.choice(len(original), size=300, replace=False):
        data = bytearray(original)
        data[position] ^= int(rng.integers(1, 256))
        file.write_bytes(bytes(data))
        assert xxh3_file(file) != reference
    swapped = bytearray(original)
    swapped[0:8], swapped[8:16] = original[8:16], original[0:8]
    file.write_bytes(bytes(swapped))
    assert xxh3_file(file) != reference
    # the sign bits of the 64-bit words at offsets 17 and 19: the word sum's sum(w) and sum((i+1)w) both
    # stayed equal modulo 2**64 (2 * 2**63 and (18 + 20) * 2**63 vanish), so it answered from a changed shard
    paired = bytearray(original)
    for word in (17, 19):
        paired[word * 8 + 7] ^= 0x80
    file.write_bytes(bytes(paired))
    assert xxh3_file(file) != reference
    file.write_bytes(b"")
    assert xxh3_file(file) == xxh3_file(tmp_path / "f")


def test_a_two_bit_change_that_the_word_sum_missed_is_refused_by_a_plain_query(index_path, digits):
    shard = index_path / manifest_of(index_path)["shards"][0]["name"]
    data = bytearray(shard.read_bytes())
    header = len(data) - (len(data) - 128) // 8 * 8  # past the .npy header, at a word boundary
    for word in (17, 19):
        data[header + word * 8 + 7] ^= 0x80
    shard.write_bytes(bytes(data))
    query = sorted((digits / "test" / "3").iterdir())[0]
    with open_index(index_path) as index, pytest.raises(VisretError, match="does not match its checksum"):
        index.query(query, k=1)


def test_a_flipped_byte_anywhere_in_the_index_is_refused_by_a_plain_query(index_path, digits):
    manifest = manifest_of(index_path)
    queries = sorted((digits / "test").rglob("*.png"))[::9]
    expected = _answers(index_path, queries)
    rng = np.random.default_rng(2)
    for name in layout.referenced(manifest):
        _each_flip_is_refused(index_path, index_path / name, queries, rng, 20)
    assert _answers(index_path, queries) == expected


def test_flips_in_an_hnsw_graph_and_its_table_are_refused_by_a_plain_query(digits, tmp_path):
    """What a graph query reads (the FAISS file, the entries table) is checked before it is read:
    no flip in the graph's links or levels can answer with other neighbours."""
    path = tmp_path / "hnsw"
    build_index(digits / "test", "hog", path, params={"size": 32, "pixels_per_cell": 8}, workers=1, factory="HNSW16").close()
    manifest = manifest_of(path)
    queries = sorted((digits / "test").rglob("*.png"))[::11]
    expected = _answers(path, queries)
    rng = np.random.default_rng(3)
    for role in ("vectors", "entries"):
        _each_flip_is_refused(path, path / manifest["files"][role]["name"], queries, rng, 40)
    assert _answers(path, queries) == expected


def _each_flip_is_refused(path, file, queries, rng, flips):
    """Flip one bit at each of ``flips`` random places of ``file``, one at a time: every query refuses."""
    original = file.read_bytes()
    for position in rng.choice(len(original), size=min(flips, len(original)), replace=False):
        data = bytearray(original)
        data[position] ^= 1 << int(rng.integers(8))
        file.write_bytes(bytes(data))
        with pytest.raises(VisretError, match="corrupt"):
            _answers(path, queries)
    file.write_bytes(original)


def _answers(path, queries):
    with open_index(path) as index:
        return [[(n.id, n.path, round(n.distance, 4)) for n in r.neighbors] for r in index.query_batch(queries, k=5)]


@pytest.mark.parametrize("role", ["ids", "shard header"])
def test_flipped_bits_in_ids_and_array_headers_never_answer_wrongly(index_path, digits, role, monkeypatch):
    """Every flip either leaves the answers exactly as they were or makes a plain open refuse, by
    the structural checks alone (the content checks on first read turned off)."""
    monkeypatch.setattr(visret.index._store.reader.Store, "check", lambda self, entry, whole_read=True: None)
    manifest = manifest_of(index_path)
    file = index_path / (manifest["files"]["ids"]["name"] if role == "ids" else manifest["shards"][0]["name"])
    original = file.read_bytes()
    span = len(original) if role == "ids" else np.lib.format.MAGIC_LEN + 2 + int.from_bytes(original[8:10], "little")
    queries = sorted((digits / "test").rglob("*.png"))[::7]
    expected = _answers(index_path, queries)
    rng = np.random.default_rng(1)
    refused = 0
    for bit in rng.choice(span * 8, size=min(300, span * 8), replace=False):
        data = bytearray(original)
        data[bit // 8] ^= 1 << (bit % 8)
        file.write_bytes(bytes(data))
        try:
            answers = _answers(index_path, queries)
        except VisretError as error:
            assert "corrupt" in str(error)
            refused += 1
            continue
        assert answers == expected, f"a flip of bit {bit} of the {role} answered wrongly"
    file.write_bytes(original)
    assert refused > 0 and _answers(index_path, queries) == expected


def test_entries_text_that_is_not_utf8_is_a_corrupt_index_not_a_traceback(index_path, digits, monkeypatch):
    import sqlite3

    monkeypatch.setattr(visret.index._store.reader, "FIRST_READ_LIMIT", 0)  # a table too large to check on first read

    manifest = manifest_of(index_path)
    table = index_path / manifest["files"]["entries"]["name"]
    with sqlite3.connect(table) as db:
        db.execute("UPDATE entries SET label = CAST(X'FF33' AS TEXT)")  # what a flipped byte in a label leaves
    resign(index_path, lambda m: m["files"]["entries"].update(bytes=table.stat().st_size))
    with pytest.raises(VisretError, match="is corrupt: entries table: text that is not UTF-8"):
        with open_index(index_path) as index:
            index.query(sorted((digits / "test" / "3").iterdir())[0], k=3)


def test_a_flat_index_keeps_one_copy_of_its_vectors(index_path):
    manifest = manifest_of(index_path)
    assert "vectors" not in manifest["files"]
    vectors = sum(s["rows"] for s in manifest["shards"]) * manifest["vector_dim"] * 4
    on_disk = sum(p.stat().st_size for p in index_path.rglob("*") if p.is_file())
    assert vectors <= on_disk <= 1.3 * vectors + 64 * 2**10  # plus a small SQLite file


# ---- user text is never markup --------------------------------------------------------------
def test_paths_with_rich_markup_are_printed_as_they_are(tmp_path):
    data = small_folder(tmp_path / "data", classes=2, per_class=3)
    (data / "c0" / "x[").mkdir()  # the paths hold "[/]" and "[/bold red]": closing tags to rich
    (data / "c0" / "[bold red]a[").mkdir()
    for i, name in enumerate(["x[/]y.png", "[bold red]a[/bold red].png"]):
        shutil.copyfile(data / "c0" / f"{i}.png", data / "c0" / name)
    ix = str(tmp_path / "ix")
    for argv in (["index", str(data), "-e", "pixels", "--index", ix], ["info", "--index", ix],
                 ["query", str(data / "c0" / "x[/]y.png"), "--index", ix, "-k", "8"]):
        result = subprocess.run([VISRET, *argv], capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"})
        assert result.returncode == 0, result.stderr
    assert "x[/]y.png" in result.stdout and "[bold red]a[/bold red].png" in result.stdout


# ---- one line, never a traceback ------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["index", "{data}", "--index", "{tmp}/afile/sub"], "cannot create the index at .*afile is not a directory"),
    (["query", "{image}", "--index", "{ix}", "--montage", "{tmp}/afile/m.png"], "cannot write .*afile is not a directory"),
    (["evaluate", "--index", "{ix}", "--confusion", "{tmp}/afile/cm.png"], "cannot write .*afile is not a directory"),
    (["compare", "{single}"], "give each class at least two images"),
    (["index", "{data}", "-e", "pixels", "-p", "size=5000", "--index", "{tmp}/p"], "size must be at most 512"),
    (["index", "{data}", "--max-memory", "-5G", "--index", "{tmp}/m"], "a size must be positive"),
    (["index", "{data}", "--factory", "HNSW0", "--index", "{tmp}/h"], "FAISS cannot use 'HNSW0'"),
])
def test_user_mistakes_are_one_line(tmp_path, argv, message):
    import re

    data = small_folder(tmp_path / "data")
    single = tmp_path / "single"
    for c in ("a", "b"):
        (single / c).mkdir(parents=True)
        shutil.copyfile(data / "c0" / "0.png", single / c / "0.png")
    (tmp_path / "afile").write_text("a file, not a folder")
    ix = tmp_path / "ix"
    build_index(data, "pixels", ix, workers=1).close()
    values = {"data": data, "tmp": tmp_path, "ix": ix, "image": data / "c1" / "2.png", "single": single}
    result = subprocess.run([VISRET, *[a.format(**values) for a in argv]], capture_output=True, text=True)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and re.search(message, lines[0]), result.stderr


def test_writing_a_read_only_index_is_one_line(tmp_path):
    data = small_folder(tmp_path / "data")
    ix = tmp_path / "ix"
    build_index(data / "c0", "pixels", ix, workers=1).close()
    before = {p.name: p.read_bytes() for p in ix.iterdir() if p.is_file()}
    locked = ["chattr", "+i", str(ix)] if os.geteuid() == 0 else ["chmod", "a-w", str(ix)]
    if subprocess.run(locked, capture_output=True).returncode != 0:
        pytest.fail("cannot make a read-only folder here")
    try:
        result = subprocess.run([VISRET, "add", str(data / "c1"), "--index", str(ix)], capture_output=True, text=True)
    finally:
        subprocess.run(["chattr", "-i", str(ix)] if os.geteuid() == 0 else ["chmod", "u+w", str(ix)])
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert re.search("cannot (write|create) .*(not permitted|denied)", result.stderr)
    assert {p.name: p.read_bytes() for p in ix.iterdir() if p.is_file()} == before


def test_a_full_disk_is_one_line_that_says_so_and_the_index_is_as_it_was(tmp_path, digits):
    disk = tmp_path / "small-disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(disk)], capture_output=True).returncode != 0:
        pytest.fail("cannot mount a small tmpfs here (the suite runs as root)")
    try:
        ix = disk / "ix"
        build_index(digits / "test" / "0", "pixels", ix, params={"size": 48}, workers=1).close()  # 27 KiB a vector
        before = {p.name: p.read_bytes() for p in ix.iterdir() if p.is_file()}
        result = subprocess.run([VISRET, "add", str(digits / "train"), "--index", str(ix), "--workers", "1"], capture_output=True, text=True)
        assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "is full" in result.stderr and "the index is as it was" in result.stderr, result.stderr
        assert {p.name: p.read_bytes() for p in ix.iterdir() if p.is_file()} == before
        with open_index(ix, verify=True) as index:
            assert len(index) == 5
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], capture_output=True)  # detached even while a file is open


# ---- processes ---------------------------------------------------------------------------------
def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_workers_die_with_a_killed_parent(digits, tmp_path):
    code = (
        "import visret, visret.embedding._extraction as e; e.POOL_PAYS_AFTER = 0; "
        f"visret.build_index({str(digits / 'train')!r}, 'gist', {str(tmp_path / 'ix')!r}, workers=2, batch_size=4)"
    )
    process = subprocess.Popen([sys.executable, "-c", code])
    deadline, workers = time.monotonic() + 60, set()
    while time.monotonic() < deadline and len(workers) < 3:  # the fork server and two workers
        time.sleep(0.1)
        workers = _descendants(process.pid)
    assert len(workers) >= 3
    process.kill()
    process.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.1)
    assert not [pid for pid in workers if _alive(pid)]


SCRIPT = """
import sys
import numpy as np
import visret
import visret.embedding._extraction
visret.embedding._extraction.POOL_PAYS_AFTER = 0  # start workers even for this small job

index = visret.build_index(sys.argv[1], extractor=sys.argv[2], index=sys.argv[3], workers=2, batch_size=8)
result = index.query(sys.argv[4], k=3)
print("first", result.neighbors[0].distance, len(index))
"""

INLINE_EXTRACTOR = """
class MeanColor(visret.FeatureExtractor):
    name = "script/mean-color"
    input_spec = visret.InputSpec(mode="RGB", size=(8, 8))
    dim = 3

    def extract(self, images):
        return (np.stack(images).mean(axis=(1, 2)) / 255.0).astype(np.float32)
"""


@pytest.mark.parametrize("inline", [False, True])
def test_a_script_without_a_main_guard_runs(digits, tmp_path, inline):
    script = tmp_path / "script.py"
    text = SCRIPT if not inline else SCRIPT.replace("index = visret.build_index", INLINE_EXTRACTOR + "\nindex = visret.build_index").replace("extractor=sys.argv[2]", "extractor=MeanColor()")
    script.write_text(text)
    image = sorted((digits / "train" / "5").iterdir())[0]
    result = subprocess.run([sys.executable, str(script), str(digits / "train"), "hog", str(tmp_path / "ix"), str(image)],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "first 0.0 150" and "Traceback" not in result.stderr
    if inline:
        assert "defined in the main script: extracting in this process" in result.stderr


def test_workers_start_only_when_the_work_pays_for_them(digits):
    from visret.embedding._extraction import Embedder
    from visret.images._folders import scan_folder

    records = scan_folder(digits / "test")
    with Embedder(visret.get_extractor("pixels"), batch_size=8, workers=2) as embedder:
        small = embedder.run(records)
        assert embedder._pool is None  # 50 tiny images: one process is quicker than starting more
    with Embedder(visret.get_extractor("pixels"), batch_size=8, workers=2) as embedder:
        visret.embedding._extraction.POOL_PAYS_AFTER, saved = 0.0, visret.embedding._extraction.POOL_PAYS_AFTER
        try:
            pooled = embedder.run(records)
            assert embedder._pool is not None
        finally:
            visret.embedding._extraction.POOL_PAYS_AFTER = saved
    np.testing.assert_array_equal(small.features, pooled.features)
    assert small.records == pooled.records


# ---- crashes at every point of every writer ------------------------------------------------------
import visret.index._store.writer  # noqa: E402

WRITERS = {
    "index": "visret.build_index(DATA, 'pixels', IX, workers=1, shard_size=8{factory})",
    "add": "visret.add_images([EXTRA], IX, workers=1, shard_size=8)",
    "remove": "visret.remove_images([DATA + '/c1'], IX)",
    "sync": "visret.sync_index(DATA, IX, workers=1, shard_size=8)",
}
POINTS = ["part-committed:2", "embedded", "adopted", "vectors-written", "entries-written", "before-swap", "swapped"]
CASES = [("index", "Flat"), ("add", "Flat"), ("remove", "Flat"), ("sync", "Flat"), ("add", "HNSW8"), ("remove", "HNSW8")]


@pytest.mark.slow
@pytest.mark.parametrize("writer, factory", CASES)
def test_a_writer_killed_at_any_point_reruns_to_the_uninterrupted_result(tmp_path, writer, factory):
    suffix = "" if factory == "Flat" else f", factory='{factory}'"
    data, extra = tmp_path / "data", tmp_path / "extra"
    small_folder(extra, classes=2, per_class=9, seed=7)

    def run(ix: Path, crash: str | None = None) -> int:
        code = "import visret; DATA, EXTRA, IX = {!r}, {!r}, {!r}; ".format(str(data), str(extra), str(ix))
        code += WRITERS[writer].replace("{factory}", suffix)
        env = {**os.environ, **({"VISRET_CRASH_AT": crash} if crash else {})}
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).returncode

    def prepared(ix: Path) -> Path:
        shutil.rmtree(data, ignore_errors=True)
        small_folder(data, classes=3, per_class=10)
        if writer != "index":
            build_index(data, "pixels", ix, workers=1, factory=factory).close()
        if writer == "sync":  # one file changed, one deleted, one new
            Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(data / "c0" / "0.png")
            (data / "c1" / "1.png").unlink()
            shutil.copyfile(extra / "c0" / "0.png", data / "c2" / "new.png")
        return ix

    reference = prepared(tmp_path / "reference")
    assert run(reference) == 0
    expected = snapshot(reference)
    points = [p for p in POINTS if (p != "vectors-written" or factory != "Flat")
              and (writer != "remove" or p not in ("part-committed:2", "embedded"))]
    killed = 0
    for point in points:
        ix = prepared(tmp_path / f"ix-{point.replace(':', '-')}")
        code = run(ix, point)
        assert code in (0, -signal.SIGKILL), point
        if code == -signal.SIGKILL:
            killed += 1
            rerun = run(ix)
            # a removal that was already in place when the kill came has nothing left to remove
            assert rerun == 0 or (writer == "remove" and point == "swapped" and rerun == 1), point
        assert snapshot(ix) == expected, point
        open_index(ix, verify=True).close()
        with visret.index._store.writer.Writer(ix):  # the next writer finds no leftovers
            assert not (ix / ".staging").exists()
    assert killed >= len(points) - 2


def test_search_knobs_are_bounded_by_the_data(digits, tmp_path):
    """A beam or a probe count past every entry or every list changes no answer, only memory and time
    (``--ef-search 1e9`` took 4 GB): they are held to what the index holds."""
    from visret.index._vectors import inner_index

    query = sorted((digits / "test" / "3").iterdir())[0]
    for factory, knob in (("HNSW16", "ef_search"), ("IVF4,Flat", "nprobe")):
        path = tmp_path / factory.replace(",", "-")
        build_index(digits / "test", "hog", path, params={"size": 32, "pixels_per_cell": 8}, workers=1, factory=factory).close()
        with open_index(path) as index:
            expected = [n.id for n in index.query(query, k=5).neighbors]
            index.set_search_params(**{knob: 10**9})
            inner = inner_index(index._searcher.structure.index)
            held = inner.hnsw.efSearch if knob == "ef_search" else inner.nprobe
            assert held == (len(index) if knob == "ef_search" else 4)
            assert [n.id for n in index.query(query, k=5).neighbors] == expected or knob == "nprobe"


def test_ids_are_checked_unique_and_positive_in_one_pass():
    """A flag per possible id (a sort of 10M ids cost most of a cold query); a spread no index makes is sorted instead."""
    from visret.index._store.reader import _unique_positive

    ids = np.arange(1, 1001, dtype=np.int64)
    assert _unique_positive(ids) and _unique_positive(ids[::-1].copy())
    assert not _unique_positive(np.append(ids, 500))
    assert not _unique_positive(np.append(ids, 0)) and not _unique_positive(np.append(ids, -3))
    assert _unique_positive(np.append(ids, 2**60)) and not _unique_positive(np.append(ids, [2**60, 2**60]))


def test_class_sizes_live_in_the_manifest_and_follow_every_change(index_path, digits):
    """Entries per class are counted once per write (a held-out evaluation and the web page read them without
    scanning 10M rows); they agree with the table after a removal and an addition, and forged sizes are refused."""
    def both(path):
        with open_index(path) as index:
            return index.label_counts(), dict(index.rows("label counts"))

    kept, counted = both(index_path)
    assert kept == counted and sum(kept.values()) == 50 and manifest_of(index_path)["class_sizes"] == list(kept.values())
    visret.remove_images([digits / "test" / "3"], index_path)
    kept, counted = both(index_path)
    assert kept == counted and "3" not in kept
    add_images([digits / "train"], index_path, workers=1)
    kept, counted = both(index_path)
    assert kept == counted and kept["3"] == 15 and kept["5"] == 20
    resign(index_path, lambda m: m["class_sizes"].__setitem__(0, 10**6))
    with pytest.raises(VisretError, match="corrupt"):
        open_index(index_path)
