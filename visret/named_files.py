"""Files a user names by path (recipes, saved pipelines and their parts): regular files only.

``Path.read_text`` on a named pipe blocks until a writer comes, and on a device reads without
end; these checks say in one line what the path is instead, before anything opens it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from visret.errors import VisretError


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
