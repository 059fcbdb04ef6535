"""Finding images in a folder: ImageFolder layout (class = sub-folder) or a flat folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from visret.errors import VisretError
from visret.images._decode import is_image_path


@dataclass(frozen=True)
class ImageRecord:
    """One image file and its class label (``None`` when the folder is not labelled)."""

    path: Path
    label: str | None = None


def _walk_images(folder: Path) -> list[Path]:
    """Every image file under ``folder``, sorted, following symlinks but never a loop.

    A sub-folder that cannot be listed is returned too: reading it fails, so it is reported
    and counted as skipped like an unreadable file, never silently left out.
    """
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()

    def unreadable(error: OSError) -> None:
        if error.filename is not None and Path(error.filename) != folder:
            found.append(Path(error.filename))

    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True, onerror=unreadable):
        stat = os.stat(dirpath)
        key = (stat.st_dev, stat.st_ino)
        if key in seen:
            dirnames[:] = []
            continue
        seen.add(key)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in filenames if not f.startswith(".") and is_image_path(Path(f)))
    return sorted(found)


def scan_folder(folder: str | Path) -> list[ImageRecord]:
    """List the images of a folder in a deterministic order.

    Sub-folders of ``folder`` are classes (ImageFolder layout) and every image below one gets its
    name as label; images directly in ``folder`` are unlabelled.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise VisretError(f"{folder} is not a folder")
    records = []
    for path in _walk_images(root):
        relative = path.relative_to(root)
        label = relative.parts[0] if len(relative.parts) > 1 else None
        records.append(ImageRecord(Path(os.path.abspath(path)), label))
    return records

