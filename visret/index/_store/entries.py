"""The entries table: one SQLite row per indexed image, and the HNSW tombstones.

Each generation has its own file, made from the previous one; readers open it read-only.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path
from typing import Iterable, Sequence

from visret.index._store.files import write_failure

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries (id INTEGER PRIMARY KEY, path TEXT NOT NULL, label TEXT, "
    "sha256 TEXT NOT NULL, added_at REAL NOT NULL, shard TEXT NOT NULL, row INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tombstones (id INTEGER PRIMARY KEY)",
    "CREATE INDEX IF NOT EXISTS entries_path ON entries (path)",
    "CREATE INDEX IF NOT EXISTS entries_sha256 ON entries (sha256)",
)
SQLITE_MAGIC = b"SQLite format 3\x00"
#: SQLite's limit on bound parameters per statement, with room to spare.
CHUNK = 900

Row = tuple[str, "str | None", str]  # path, label, sha256

#: The columns of an ``Entry``, in its field order.
ENTRY_COLUMNS = "id, path, label, sha256, added_at"
#: Every query readers run on the entries table, by name: the SQL text lives here only.
QUERIES = {
    "entries after": f"SELECT {ENTRY_COLUMNS} FROM entries WHERE id > ? ORDER BY id LIMIT ?",
    "entry": f"SELECT {ENTRY_COLUMNS} FROM entries WHERE id = ?",
    "page": f"SELECT {ENTRY_COLUMNS} FROM entries ORDER BY id LIMIT ? OFFSET ?",
    "page of label": f"SELECT {ENTRY_COLUMNS} FROM entries WHERE label = ? ORDER BY id LIMIT ? OFFSET ?",
    "label counts": "SELECT label, COUNT(*) FROM entries WHERE label IS NOT NULL GROUP BY label ORDER BY label",
    "ids and labels": "SELECT id, COALESCE(label, '') FROM entries ORDER BY id",
    "labelled files": "SELECT id, path, label FROM entries WHERE label IS NOT NULL ORDER BY id",
    "live files by path": "SELECT id, path, sha256 FROM entries WHERE id NOT IN (SELECT id FROM tombstones) ORDER BY path",
    # a folder's entries are the paths from "folder/" up to "folder0" ('0' follows '/'): a range the path index answers
    "file or folder": "SELECT id FROM entries WHERE path = ? OR (path >= ? AND path < ?)",
    "largest id": "SELECT COALESCE(MAX(id), 0) FROM entries UNION ALL SELECT COALESCE(MAX(id), 0) FROM tombstones",
    "tombstones": "SELECT id FROM tombstones",
}
#: Queries over given ids, by name; ``{}`` becomes the placeholders of one chunk.
ID_QUERIES = {
    "labels": "SELECT id, path, label FROM entries WHERE id IN ({})",
    "places": "SELECT id, shard, row FROM entries WHERE id IN ({})",
    "hashes": "SELECT id, path, sha256 FROM entries WHERE id IN ({})",
    "records": "SELECT id, path, label, sha256 FROM entries WHERE id IN ({})",
}
#: Queries over given texts, by name, likewise.
TEXT_QUERIES = {
    "stored hashes": "SELECT DISTINCT sha256 FROM entries WHERE sha256 IN ({})",
}


def new_rows(ids: Iterable[int], rows: Sequence[Row], placements: Sequence[tuple[str, int]]) -> list[tuple]:
    """Table rows for new entries: id, path, label, sha256, time added, shard, row."""
    now = time.time()
    return [(int(i), p, label, sha, now, shard, row) for i, (p, label, sha), (shard, row) in zip(ids, rows, placements)]


def write(
    path: Path,
    base: Path | None,
    added: Sequence[tuple] = (),
    removed: Sequence[int] = (),
    tombstoned: Sequence[int] = (),
    moved: Sequence[tuple[str, int, int]] = (),
    clear_tombstones: bool = False,
) -> None:
    """A new entries file: a copy of ``base`` (if any) with rows added, removed, tombstoned and
    moved (``(shard, row, id)``: where a compacted shard now keeps an entry)."""
    try:
        _write(path, base, added, removed, tombstoned, moved, clear_tombstones)
    except (OSError, sqlite3.OperationalError) as exc:
        raise write_failure(exc, path.parent) from None


def _write(path, base, added, removed, tombstoned, moved, clear_tombstones) -> None:
    if base is not None:
        shutil.copyfile(base, path)
    db = sqlite3.connect(path)
    try:
        for statement in SCHEMA:
            db.execute(statement)
        db.executemany("DELETE FROM entries WHERE id = ?", [(int(i),) for i in removed])
        if clear_tombstones:
            db.execute("DELETE FROM entries WHERE id IN (SELECT id FROM tombstones)")
            db.execute("DELETE FROM tombstones")
        db.executemany("INSERT INTO tombstones VALUES (?)", [(int(i),) for i in tombstoned])
        db.executemany("UPDATE entries SET shard = ?, row = ? WHERE id = ?", moved)
        db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)", added)
        db.commit()
    finally:
        db.close()


def tombstone_count(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM tombstones").fetchone()[0]


def summary(path: Path) -> tuple[int, dict[str, int], int]:
    """``(entries, entries per class with classes sorted, tombstones)`` of an entries file."""
    with sqlite3.connect(path) as db:
        count = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        sizes = dict(db.execute(QUERIES["label counts"]).fetchall())
    return count, sizes, tombstone_count(path)


def _utf8(data: bytes) -> str:
    """Text as stored: damaged bytes are a ``DatabaseError`` (reported as a corrupt index), never a
    ``UnicodeDecodeError`` traceback."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise sqlite3.DataError("text that is not UTF-8") from None


def open_read_only(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    db.text_factory = _utf8
    return db


def rows(db: sqlite3.Connection, name: str, params: Sequence = ()) -> list[tuple]:
    """Rows of the query called ``name`` in ``QUERIES``."""
    return db.execute(QUERIES[name], params).fetchall()


def rows_for(db: sqlite3.Connection, name: str, keys: Iterable[int] | Iterable[str]) -> list[tuple]:
    """Rows of the query called ``name`` in ``ID_QUERIES`` for the given ids (in ``TEXT_QUERIES`` for
    the given texts), in chunks SQLite accepts: one lookup in an index each, whatever the table's size."""
    if name in TEXT_QUERIES:
        sql, wanted = TEXT_QUERIES[name], sorted({str(key) for key in keys})
    else:
        sql, wanted = ID_QUERIES[name], sorted({int(i) for i in keys if i >= 0})
    found: list[tuple] = []
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        found += db.execute(sql.format(",".join("?" * len(chunk))), chunk).fetchall()
    return found
