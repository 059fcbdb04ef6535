"""Writing the files a user asks for (pages, CSV): parent folders made, failures in one line."""

from __future__ import annotations

from pathlib import Path

from visret.errors import VisretError


def write_text(out: str | Path, text: str) -> Path:
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        reason = f"{out.parent} is not a directory" if isinstance(exc, FileExistsError) else exc.strerror or exc
        raise VisretError(f"cannot write {out}: {reason}") from None
    return out
