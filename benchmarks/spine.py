"""Benchmarks for the spine: cold query latency, worker scaling, TensorFlow kept out.

Run from the repository root: ``.venv/bin/python benchmarks/spine.py`` (about 4 minutes on 2 cores).
Needs ``../shared/datasets`` (MNIST test split, COIL-100). Every timing is paired with a baseline
measured in the same run on the same machine.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import visret

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extraction_speed import worker_scaling  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
VISRET = str(Path(sys.executable).with_name("visret"))


def write_mnist_test(folder: Path) -> Path:
    """The 10,000 MNIST test digits as PNGs in ImageFolder layout."""
    raw = SHARED / "mnist-test"
    images = np.frombuffer(gzip.open(raw / "t10k-images-idx3-ubyte.gz").read()[16:], np.uint8).reshape(-1, 28, 28)
    labels = np.frombuffer(gzip.open(raw / "t10k-labels-idx1-ubyte.gz").read()[8:], np.uint8)
    for i, (image, label) in enumerate(zip(images, labels)):
        target = folder / str(label)
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(target / f"{i:05d}.png")
    return folder


def wall(argv: list[str], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def cold_query(workdir: Path, repeats: int) -> dict:
    data = write_mnist_test(workdir / "mnist")
    index = workdir / "mnist-hog"
    visret.build_index(data, "hog", index, params={"size": 28, "pixels_per_cell": 7}).close()
    query = sorted((data / "7").iterdir())[0]
    argv = [VISRET, "query", str(query), "--index", str(index), "-k", "10", "--json"]
    answer = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)
    assert answer[0]["neighbors"][0]["distance"] == 0.0
    probe = (
        "import sys\nfrom visret.cli._app import main\n"
        f"sys.argv = {argv!r}\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('TF', 'tensorflow' in sys.modules, file=sys.stderr)"
    )
    tf_loaded = "TF True" in subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stderr
    query_times = wall(argv, repeats)
    baseline = wall([sys.executable, "-c", "import numpy"], repeats)
    return {
        "entries": 10_000,
        "cold_query_s_median": statistics.median(query_times),
        "cold_query_s_max": max(query_times),
        "python_numpy_startup_s_median": statistics.median(baseline),
        "ratio_to_startup": statistics.median(query_times) / statistics.median(baseline),
        "tensorflow_imported": tf_loaded,
    }


def cli_index_scaling(workdir: Path, repeats: int) -> list[dict]:
    """End to end ``visret index`` with ``--workers 1`` and ``2`` in fresh processes (pool start
    included): all of COIL-100 with ``hog``, and a 36-image folder where a pool cannot pay for itself."""
    small = workdir / "small"
    for record in sorted((SHARED / "coil100").rglob("*.png"))[:36]:
        target = small / record.parent.name / record.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(record.read_bytes())
    rows = []
    for label, folder in (("coil100 (7,200 images)", SHARED / "coil100"), ("36 images", small)):
        row = {"job": f"visret index {label} -e hog"}
        for workers in (1, 2):
            times = []
            for attempt in range(repeats):
                index = workdir / f"cli-{workers}-{attempt}-{len(rows)}"
                times += wall([VISRET, "index", str(folder), "-e", "hog", "--index", str(index), "--workers", str(workers)], 1)
            row[f"seconds_{workers}_worker"] = statistics.median(times)
        row["speedup"] = row["seconds_1_worker"] / row["seconds_2_worker"]
        print(json.dumps(row), file=sys.stderr)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--extractors", default="color-hist,hog,lbp")
    args = parser.parse_args()
    print(f"cores: {len(os.sched_getaffinity(0))}, visret {visret.__version__}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="visret-bench-") as tmp:
        results = {
            "cold_query": cold_query(Path(tmp), args.repeats),
            "worker_scaling_coil100": worker_scaling(args.extractors.split(","), build_dir=Path(tmp)),
            "cli_index_scaling": cli_index_scaling(Path(tmp), 3),
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
