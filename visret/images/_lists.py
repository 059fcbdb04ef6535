"""Images named in a list file: a CSV or Parquet table with a ``path`` column and an optional
``label`` column, as a cluster job or a data catalogue writes them.

Labels are text. A missing label (empty, null, NaN, or in CSV one of pandas' missing markers:
``nan``, ``NaN``, ``NA``, ``N/A``, ``null``, ``None``) leaves the image unlabelled; a whole number
(``3``, or ``3.0`` as pandas stores integers beside missing values) becomes its digits (``"3"``);
any other value (a fraction, a boolean, a list, a mapping) is refused, naming the row.

Paths may be local (relative ones are taken from the list file's folder) or URIs of any
filesystem pyarrow or fsspec reads (``s3://``, ``gs://``, ``hdfs://``...), so a cluster can read
straight from object storage. Listed files are read like found ones: a bad file is a logged skip.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from visret.images._folders import ImageRecord
from visret.errors import VisretError
from visret.images._decode import is_uri

LIST_SUFFIXES = (".csv", ".parquet")


def is_image_list(path: str | Path) -> bool:
    return Path(path).suffix.lower() in LIST_SUFFIXES and Path(path).is_file()


def _rows(file: Path) -> tuple[list[str], list[object]]:
    if file.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(file)
        except Exception as exc:  # pyarrow raises several types for damaged files
            raise VisretError(f"cannot read {file} as Parquet: {str(exc).splitlines()[0]}") from None
        columns = table.column_names
        if "path" not in columns:
            raise VisretError(f"{file} has no 'path' column (columns: {', '.join(columns) or 'none'})")
        labels = table.column("label").to_pylist() if "label" in columns else [None] * table.num_rows
        return [str(p) if p is not None else "" for p in table.column("path").to_pylist()], labels
    try:
        with open(file, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if "path" not in (reader.fieldnames or []):
                raise VisretError(f"{file} has no 'path' column in its header line (found: {', '.join(reader.fieldnames or []) or 'none'})")
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise VisretError(f"cannot read {file} as CSV: {exc}") from None
    return [row["path"] or "" for row in rows], [row.get("label") for row in rows]


#: CSV cells that mean "no label" (pandas' default missing markers, where they could be labels).
MISSING = frozenset({"", "nan", "NaN", "NA", "N/A", "null", "None"})


def label_text(value: object, where: str) -> str | None:
    """A list's label cell as visret's label: text, None when missing (see the module docstring)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        return None if value in MISSING else value
    if isinstance(value, float) and value != value:  # NaN: pandas' missing value
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
        return str(int(value))
    raise VisretError(f"{where}: label {value!r} is not text or a whole number")


def read_image_list(file: str | Path) -> list[ImageRecord]:
    """The images a CSV or Parquet list names, in its order, each once."""
    file = Path(file).expanduser()
    if not file.is_file():
        raise VisretError(f"{file} is not a file")
    if file.suffix.lower() not in LIST_SUFFIXES:
        raise VisretError(f"{file} is not a .csv or .parquet list of images")
    paths, labels = _rows(file)
    base = file.parent.absolute()
    records: dict[str, ImageRecord] = {}
    for number, (path, label) in enumerate(zip(paths, labels), start=1):
        path = path.strip()
        if not path:
            raise VisretError(f"{file}: row {number} has an empty path")
        where: str | Path = path if is_uri(path) else Path(os.path.abspath(base / Path(path).expanduser()))
        records.setdefault(str(where), ImageRecord(where, label_text(label, f"{file}: row {number}")))
    return list(records.values())
