"""The Ray engine against the local engine: images/s of ``build_index`` on COIL-100, same run.

Run from the repository root: ``.venv/bin/python benchmarks/ray_engine.py`` (COIL-100's 7,200
images with ``hog`` and with ``keras/mobilenet_v2`` (``weights=none``, 224x224), about 15 minutes
on 2 cores; ``--limit 1440`` for a quick run on an even sample, given to both engines as a CSV
image list). The local engine uses its default worker processes; the Ray engine a local Ray
instance with one actor per CPU (started once, its start-up reported apart and not counted).
Each build is timed from the call to the opened index, so the Ray figure includes starting the
actors and building each one's extractor (TensorFlow and the model, for the CNN). The overhead
is local images/s over Ray images/s, minus one. Both indexes are compared entry by entry.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import emit  # noqa: E402

import visret  # noqa: E402
from visret.images._folders import scan_folder  # noqa: E402
from visret.embedding.engines import ray_data  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
EXTRACTORS = {"hog": {"name": "hog", "params": {}},
              "keras/mobilenet_v2": {"name": "keras/mobilenet_v2", "params": {"weights": "none"}}}


def _by_path(index) -> tuple[list[tuple], np.ndarray]:
    rows = sorted((e.path, e.label, e.sha256, e.id) for e in index)
    return [r[:3] for r in rows], index.vectors([r[3] for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="an even sample of this many images")
    parser.add_argument("--extractors", default=",".join(EXTRACTORS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    records = scan_folder(SHARED / "coil100")
    if args.limit:
        records = records[:: max(1, len(records) // args.limit)][: args.limit]
    for record in records:  # warm the page cache: neither engine pays for the disk
        record.path.read_bytes()
    results = {"images": len(records), "cpus": len(__import__("os").sched_getaffinity(0)), "extractors": {}}
    with tempfile.TemporaryDirectory(dir=Path.cwd() / "build") as tmp:
        source: Path = SHARED / "coil100"
        if args.limit:
            source = Path(tmp) / "images.csv"
            with open(source, "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["path", "label"])
                writer.writerows((str(r.path), r.label) for r in records)
        start = time.perf_counter()
        ray_data.connect(None)
        results["ray_start_s"] = round(time.perf_counter() - start, 2)
        for name in args.extractors.split(","):
            row = {}
            built = {}
            for engine in ("local", "ray"):
                start = time.perf_counter()
                built[engine] = visret.build_index(source, EXTRACTORS[name], Path(tmp) / f"{name.replace('/', '-')}-{engine}", engine=engine)
                seconds = time.perf_counter() - start
                row[f"{engine}_s"] = round(seconds, 1)
                row[f"{engine}_images_per_s"] = round(built[engine].manifest["build"]["indexed"] / seconds, 1)
                print(f"{name} {engine}: {row[f'{engine}_images_per_s']} images/s", file=sys.stderr)
            row["ray_overhead"] = round(row["local_images_per_s"] / row["ray_images_per_s"] - 1, 3)
            (local_rows, local_vectors), (ray_rows, ray_vectors) = _by_path(built["local"]), _by_path(built["ray"])
            row["same_entries"] = local_rows == ray_rows
            row["max_abs_vector_difference"] = float(np.abs(local_vectors - ray_vectors).max())
            results["extractors"][name] = row
    emit(results, args.out)


if __name__ == "__main__":
    main()
