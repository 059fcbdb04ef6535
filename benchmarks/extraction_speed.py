"""Extraction speed of extractors on COIL-100 with 1 and 2 worker processes, measured in one run.

Run from the repository root: ``.venv/bin/python benchmarks/extraction_speed.py`` (every handcrafted
extractor on 1,440 of the 7,200 images, about 6 minutes on 2 cores). Learning extractors are fitted
first (not timed). ``--changed-defaults`` times each default that issue #11 changed against its old
parameters instead (one process, same images, same run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import visret
from visret.images._folders import scan_folder
from visret.embedding._extraction import extract_records
from visret.embedding._fitting import fit_extractor

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
HANDCRAFTED = (
    "color-hist,color-moments,color-correlogram,hog,lbp,glcm,gabor,gist,shape,edges,bovw,pixels"
)


def worker_scaling(extractors: list[str], limit: int | None = None, build_dir: Path | None = None) -> list[dict]:
    """Images/s of the extraction stage with 1 and 2 workers (and of the whole ``build_index``
    when ``build_dir`` is given), on the first ``limit`` images of an even sample of COIL-100."""
    if limit is not None and build_dir is not None:
        raise ValueError("build_index runs on the whole folder: pass limit or build_dir, not both")
    data = SHARED / "coil100"
    records = scan_folder(data)
    if limit is not None:
        records = records[:: max(1, len(records) // limit)][:limit]
    for record in records:  # warm the page cache so that neither run pays for the disk
        record.path.read_bytes()
    n = len(records)
    rows = []
    for name in extractors:
        extractor = visret.get_extractor(name)
        if extractor.requires_fit:
            fit_extractor(extractor, records, max_pixels=10**9)
        row = {"extractor": name, "images": n}
        for workers in (1, 2):
            start = time.perf_counter()
            extract_records(extractor, records, workers=workers)
            row[f"extraction_images_per_s_{workers}_worker"] = n / (time.perf_counter() - start)
            if build_dir is not None:
                start = time.perf_counter()
                visret.build_index(data, name, build_dir / f"coil-{name}-{workers}", workers=workers).close()
                row[f"build_index_images_per_s_{workers}_worker"] = n / (time.perf_counter() - start)
        row["extraction_speedup"] = row["extraction_images_per_s_2_worker"] / row["extraction_images_per_s_1_worker"]
        if build_dir is not None:
            row["build_index_speedup"] = row["build_index_images_per_s_2_worker"] / row["build_index_images_per_s_1_worker"]
        print(json.dumps(row), file=sys.stderr)
        rows.append(row)
    return rows


#: Parameters of the defaults that issue #11 changed, as they were before, to time both in one run.
OLD_DEFAULTS = {
    "color-hist": {"bins": [8, 4, 4], "size": 128, "norm": "none"},
    "color-correlogram": {"norm": "none"},
    "lbp": {"norm": "none"},
    "edges": {"norm": "none"},
    "bovw": {"norm": "none"},
}


def changed_defaults(limit: int) -> list[dict]:
    """Images/s (one process) of each changed default against its old parameters, same images, same run."""
    records = scan_folder(SHARED / "coil100")
    records = records[:: max(1, len(records) // limit)][:limit]
    for record in records:
        record.path.read_bytes()
    rows = []
    for name, old in OLD_DEFAULTS.items():
        row = {"extractor": name, "images": len(records)}
        for label, extractor in (("new", visret.get_extractor(name)), ("old", visret.get_extractor(name, **old))):
            if extractor.requires_fit:
                fit_extractor(extractor, records, max_pixels=10**9)
            extract_records(extractor, records[:64], workers=1)  # warm caches (filter banks, imports)
            start = time.perf_counter()
            extract_records(extractor, records, workers=1)
            row[f"{label}_images_per_s"] = len(records) / (time.perf_counter() - start)
        row["new_vs_old"] = row["new_images_per_s"] / row["old_images_per_s"]
        print(json.dumps(row), file=sys.stderr)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extractors", default=HANDCRAFTED)
    parser.add_argument("--limit", type=int, default=1440)
    parser.add_argument("--changed-defaults", action="store_true", help="time the defaults issue #11 changed against the old ones")
    args = parser.parse_args()
    if args.changed_defaults:
        print(json.dumps(changed_defaults(args.limit), indent=2))
        return
    print(json.dumps(worker_scaling(args.extractors.split(","), args.limit), indent=2))


if __name__ == "__main__":
    main()
