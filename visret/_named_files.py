"""Files a user hands over (recipes, saved pipelines and their parts, arrays files): read safely.

``Path.read_text`` on a named pipe blocks until a writer comes, and on a device reads without
end; ``regular_file`` says in one line what the path is instead, before anything opens it.
``read_npz`` reads arrays never pickled and never larger than the archive holds.
"""

from __future__ import annotations

import io
import os
import stat
import tokenize
import zipfile
from pathlib import Path

import numpy as np

from visret.errors import VisretError

#: What ``np.load`` raises for a damaged ``.npy``/``.npz``: a garbled header is parsed as Python
#: literals (SyntaxError, tokenize.TokenError), a garbled archive raises BadZipFile.
NPY_ERRORS = (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError, zipfile.BadZipFile)


def regular_file(path: str | Path, what: str, inside: Path | None = None) -> Path:
    """``path`` when it is a regular file (within folder ``inside`` once links are followed, when
    given); otherwise a ``VisretError`` naming ``what`` it should have been."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise VisretError(f"cannot read {what} {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise VisretError(f"{what} {path} is not a regular file")
    if inside is not None and not path.resolve().is_relative_to(inside.resolve()):
        raise VisretError(f"{what} {path} links to a file outside {inside}")
    return path


def read_npz(source: Path | bytes) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (a path or its bytes), never pickled, and none larger than what the
    archive holds: a header claiming gigabytes of a small member is refused before any is allocated."""
    stream = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
    with stream, zipfile.ZipFile(stream) as archive:
        for info in archive.infolist():
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(member)
                declared = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                if dtype.hasobject or member.tell() + declared != info.file_size:
                    raise ValueError(f"{info.filename} claims {declared} bytes of {dtype}, not what the archive holds")
        stream.seek(0)
        with np.load(stream, allow_pickle=False) as arrays:
            return {key: arrays[key] for key in arrays.files}
