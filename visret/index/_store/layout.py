"""The index directory's layout and its manifest: names, roles, schema, checksum.

An index is a directory::

    manifest.json                   what follows, checksummed; replaced atomically by each write
    entries-<generation>.sqlite     one row per entry: id, path, label, sha256, added_at, shard, row
    ids-<generation>.npy            the entry id of every stored vector, shard after shard (int64)
    vectors-<generation>.faiss      the FAISS index, for approximate factories only (Flat searches the shards)
    extractor-<generation>.npz      the extractor's state: what it learned, a CNN's network exported to ONNX
    shards/emb-<generation>-<n>.npy the search vectors, float32 (rows, vector_dim), immutable; none when the
                                    manifest's ``stored_as`` is ``codes``: the FAISS index's codes are the only copy
    .staging/                       an interrupted run's committed parts (see ``staging``)
    .lock                           the writer lock

Every name a manifest holds is a plain name inside the directory; anything else is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from visret.errors import VisretError
from visret.version import __version__

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
SHARDS = "shards"
STAGING = ".staging"
LOCK = ".lock"
#: Data files by role: suffix, and whether every index has one.
ROLES = {"entries": (".sqlite", True), "ids": (".npy", True), "vectors": (".faiss", False), "extractor": (".npz", False)}
SHARD_PREFIX = "emb-"
_NAME = re.compile(r"^(shards/)?[A-Za-z0-9][A-Za-z0-9._-]*$")


def data_file(role: str, generation: str) -> str:
    return f"{role}-{generation}{ROLES[role][0]}"


def shard_file(generation: str, number: int) -> str:
    return f"{SHARDS}/{SHARD_PREFIX}{generation}-{number:06d}.npy"


def is_data_name(name: str) -> bool:
    """Whether a file name (relative to the index) is one the store writes and may delete."""
    base = name.split("/")[-1]
    return base.startswith(tuple(f"{role}-" for role in ROLES) + (SHARD_PREFIX,))


def checksum(manifest: dict[str, Any]) -> str:
    """SHA-256 of the manifest's canonical JSON, its own ``checksum`` field left out."""
    body = {key: value for key, value in manifest.items() if key != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def referenced(manifest: dict[str, Any] | None) -> set[str]:
    """Every file name a manifest points at."""
    if not manifest:
        return set()
    return {f["name"] for f in manifest["files"].values()} | {s["name"] for s in manifest["shards"]}


# ---- schema -------------------------------------------------------------------------------------
_STR, _INT, _NUM = (str,), (int,), (int, float)
_TOP = {
    "format_version": _INT, "visret_version": _STR, "generation": _STR, "extractor": (dict,), "dim": _INT,
    "vector_dim": _INT, "metric": _STR, "factory": _STR, "search": (dict,), "count": _INT, "classes": (list,),
    "tombstones": _INT, "created_at": _NUM, "updated_at": _NUM, "build": (dict,), "files": (dict,),
    "shards": (list,), "checksum": _STR,
}
# imported: where an attached FAISS index came from; backend: what reads the vectors file (FAISS if absent);
# last_id: the largest id ever given, so that no id is given twice (a cache keyed by id stays right)
# stored_as: "codes" when the vectors file's codes are the only copy of the vectors (no shards)
# class_sizes: entries per class, in the order of classes (read without scanning the entries table)
_OPTIONAL = {"rerank": (str, type(None)), "imported": dict, "backend": str, "last_id": int, "stored_as": str, "class_sizes": list}
#: ``stored_as`` of an index whose vectors live only as its structure's codes.
CODES = "codes"
_FILE = {"name": _STR, "bytes": _INT, "sha256": _STR}
_SHARD = {**_FILE, "rows": _INT}
#: xxh3: the file's ``files.xxh3_file``, checked when a reader first reads it; words: the hand-written
#: word sum of older indexes, no longer trusted (missed two-bit changes): those are checked with SHA-256
_FILE_OPTIONAL = {"xxh3": _STR, "words": _STR}


def _fields(where: str, data: Any, fields: dict[str, tuple], optional: dict[str, tuple] | None = None) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{where} is not an object")
    optional = optional or {}
    for key, kinds in fields.items():
        if key not in data:
            raise ValueError(f"{where} has no {key!r}")
    for key, value in data.items():
        kinds = fields.get(key) or optional.get(key)
        if kinds is None:
            raise ValueError(f"{where} has an unknown field {key!r}")
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ValueError(f"{where}: {key!r} has the wrong type")


def _name(name: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise ValueError(f"file name {name!r} is not a plain name inside the index")
    return name


def check_manifest(manifest: Any) -> dict[str, Any]:
    """Validate a parsed manifest (schema, names, counts, checksum); ``ValueError`` says what is wrong."""
    _fields("manifest", manifest, _TOP, _OPTIONAL)
    if manifest["checksum"] != checksum(manifest):
        raise ValueError("manifest does not match its checksum")
    _fields("extractor", manifest["extractor"], {"name": _STR, "params": (dict,)}, {"plugin": _STR, "plugin_version": _STR})
    for role, entry in manifest["files"].items():
        if role not in ROLES:
            raise ValueError(f"unknown file role {role!r}")
        _fields(f"file {role}", entry, _FILE, _FILE_OPTIONAL)
        _name(entry["name"])
    for role, (_, required) in ROLES.items():
        if required and role not in manifest["files"]:
            raise ValueError(f"no {role} file")
    rows = 0
    for shard in manifest["shards"]:
        _fields("shard", shard, _SHARD, _FILE_OPTIONAL)
        if not _name(shard["name"]).startswith(f"{SHARDS}/"):
            raise ValueError(f"shard {shard['name']!r} is not in {SHARDS}/")
        rows += shard["rows"]
    if manifest.get("stored_as", CODES) != CODES:
        raise ValueError(f"vectors stored as {manifest['stored_as']!r}")
    if "stored_as" in manifest:
        if manifest["shards"] or "vectors" not in manifest["files"]:
            raise ValueError("vectors kept as codes need a vectors file and no shards")
    elif rows != manifest["count"]:
        raise ValueError("shards do not hold the manifest's count of vectors")
    if not all(isinstance(c, str) for c in manifest["classes"]):
        raise ValueError("classes are not names")
    sizes = manifest.get("class_sizes", [1] * len(manifest["classes"]))
    if (len(sizes) != len(manifest["classes"]) or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in sizes)
            or sum(sizes) > manifest["count"]):
        raise ValueError("class sizes do not fit the classes and the count")
    if min(manifest["dim"], manifest["vector_dim"]) < 1 or manifest["count"] < 0 or manifest["tombstones"] < 0:
        raise ValueError("dimensions or counts out of range")
    return manifest


def read_manifest(path: Path) -> dict[str, Any]:
    """The validated manifest of the index at ``path``, or a one-line error."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise VisretError(f"no index at {path}; build one with: visret index DIR --index {path}")
    try:
        manifest = json.loads(manifest_path.read_bytes())
        version = manifest["format_version"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise VisretError(f"index at {path} is corrupt: unreadable {MANIFEST}") from None
    except OSError as exc:
        raise VisretError(f"cannot read the index at {path}: {exc.strerror}") from None
    if version != FORMAT_VERSION:
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise VisretError(
                f"index at {path} has format {version}, newer than this visret ({__version__}) reads "
                f"(format {FORMAT_VERSION}); upgrade visret"
            )
        raise VisretError(
            f"index at {path} has format {version}, from an older visret; rebuild it with 'visret index' "
            f"(this visret reads format {FORMAT_VERSION})"
        )
    try:
        return check_manifest(manifest)
    except ValueError as exc:
        raise VisretError(f"index at {path} is corrupt: {MANIFEST}: {exc}") from None
