"""Files written crash-safely inside an index directory, and never through a symbolic link.

A file is written under a temporary name, flushed to disk, then renamed into place; a folder
the store writes into must be a real directory of the index, not a link to somewhere else.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import xxhash

from visret.errors import VisretError

TEMP_PREFIX = ".tmp-"


def fsync_dir(directory: Path) -> None:
    if os.name == "posix":
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def own_directory(path: Path) -> Path:
    """``path`` as a real directory of the index: created if missing, refused if it is a link."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        try:
            path.mkdir(parents=False)
        except OSError as exc:
            raise VisretError(f"cannot create {path}: {exc.strerror}") from None
        return path
    if stat.S_ISLNK(mode) or not stat.S_ISDIR(mode):
        raise VisretError(f"{path} is not a plain directory (a symbolic link?); visret never writes through links")
    return path


def plain_file(path: Path) -> os.stat_result:
    """The ``lstat`` of a regular file that is not a link (``FileNotFoundError`` when absent)."""
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode):
        raise VisretError(f"{path} is not a plain file (a symbolic link?)")
    return info


#: Free space under which a failed write is reported as a full disk (numpy's own message says
#: only "524288 requested and 504800 written").
FULL_DISK_MARGIN = 64 << 20


def write_failure(exc: BaseException, folder: Path) -> VisretError:
    """A failed write in ``folder`` as one line that names the cause a user can act on."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if getattr(exc, "errno", None) == errno.ENOSPC or "full" in str(exc) or (free is not None and free < FULL_DISK_MARGIN):
        return VisretError(f"the disk holding {folder} is full ({0 if free is None else free >> 20} MiB free): "
                           "free some space and run the command again; the index is as it was")
    reason = getattr(exc, "strerror", None) or str(exc)
    return VisretError(f"cannot write in {folder}: {reason}; the index is as it was")


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target`` atomically.
    A write that fails (a full disk) leaves ``target`` as it was and is one line."""
    temporary = target.with_name(f"{TEMP_PREFIX}{os.getpid()}-{target.name}")
    try:
        yield temporary
        fsync_file(temporary)
        os.replace(temporary, target)
        fsync_dir(target.parent)
    except OSError as exc:
        raise write_failure(exc, target.parent) from None
    finally:
        temporary.unlink(missing_ok=True)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def xxh3_file(path: Path, chunk: int = 4 << 20) -> str:
    """XXH3-128 of a file (the ``xxhash`` package), as 32 hex digits: a maintained checksum that
    changes with any flipped bits and runs near memory speed, so a query can check what it reads
    on first reading it (``benchmarks/open_checks.py`` measures it against SHA-256)."""
    digest = xxhash.xxh3_128()
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as fh:
        while read := fh.readinto(buffer):
            digest.update(view[:read])
    return digest.hexdigest()


def save_npy(path: Path, array: np.ndarray) -> None:
    """Write one array as ``.npy`` atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as fh:
            np.save(fh, array, allow_pickle=False)


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write named arrays as ``.npz`` atomically (read back with ``allow_pickle=False``)."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as fh:
            np.savez(fh, **arrays)


def link_or_copy(source: Path, target: Path) -> None:
    """Give ``source``'s content a second name (a hard link; a copy where links are not allowed)."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        with atomic_path(target) as temporary:
            with open(source, "rb") as src, open(temporary, "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)


class LockTimeout(Exception):
    """Another process holds the writer lock."""


@contextmanager
def writer_lock(directory: Path, timeout: float = 60.0) -> Iterator[None]:
    """One writer at a time per index directory (an advisory ``flock`` on ``.lock``)."""
    import fcntl

    lock = directory / ".lock"
    if lock.is_symlink():
        raise VisretError(f"{lock} is a symbolic link; visret never writes through links")
    try:
        handle = open(lock, "a+")
    except OSError as exc:
        raise VisretError(f"cannot write the index at {directory}: {exc.strerror}") from None
    with handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockTimeout(f"{directory} is being written by another process") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
