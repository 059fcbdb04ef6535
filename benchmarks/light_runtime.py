"""CNN queries and extraction on the light runtime (issue #27): ONNX Runtime against TensorFlow's start-up.

Run from the repository root: ``.venv/bin/python benchmarks/light_runtime.py`` (about 12 minutes on 2
cores). On Oxford 17 Flowers split1 (the first ``--images`` indexed images of the 1,020, queried with
the test images); every figure comes from this one run, each runtime measured beside the other:

- ``cold``: a new process running ``visret query IMAGE --index I -k 10``: on a ``color-hist`` index (the
  handcrafted baseline), and on ``keras/squeezenet`` (ImageNet weights, shipped) and ``keras/mobilenet_v2``
  (``weights=none``: its ImageNet file is a download) indexes, run by ONNX Runtime (the default) and by
  Keras (``VISRET_RUNTIME=keras``). Seconds and peak RSS, median of 3 after one that warms the page cache.
- ``throughput``: ``build_index`` in a new process, ``workers`` 1 and 2, each runtime: images/s from the
  first batch out to the end, and the whole build's seconds (with TensorFlow's start-up, which building
  and exporting the network still need, and the export, also given alone).
- ``parity``: the test images' features from the ONNX runtime against the Keras model's: the largest
  row-relative difference, and how many queries get the identical top 10 from the index.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cold import cold_query  # noqa: E402
from datasets import materialise  # noqa: E402
from results import emit  # noqa: E402

import visret  # noqa: E402
from visret.images._folders import scan_folder  # noqa: E402

NETWORKS = {"keras/squeezenet": {}, "keras/mobilenet_v2": {"weights": "none"}}
RUNTIMES = {"onnx": {}, "keras": {"VISRET_RUNTIME": "keras"}}

#: ``build_index`` in a new process: its seconds, and its images/s once the first batch is out (start-up,
#: model building and export excluded).
BUILD = """
import json, sys, time
import visret
from visret.features import get_extractor
source, index, name, params, workers = sys.argv[1:6]
extractor = get_extractor(name, **json.loads(params))
first = []
def progress(done, total):
    if not first:
        first.append((done, time.perf_counter()))
start = time.perf_counter()
index = visret.build_index(source, extractor, index=index, workers=int(workers), progress=progress)
end = time.perf_counter()
count = index.manifest["count"]
print(json.dumps({"seconds": end - start, "steady": (count - first[0][0]) / (end - first[0][1])}))
"""


def subset(train: Path, count: int, root: Path) -> Path:
    """The first ``count`` indexed images (every class in turn), as a folder of links."""
    records = sorted(scan_folder(train), key=lambda r: r.path.name)
    by_class: dict[str, list] = {}
    for record in records:
        by_class.setdefault(record.label, []).append(record)
    chosen = [r for group in zip(*by_class.values()) for r in group][:count]
    folder = root / f"train-{count}"
    for record in chosen:
        (folder / record.label).mkdir(parents=True, exist_ok=True)
        os.symlink(record.path.resolve(), folder / record.label / record.path.name)
    return folder


def build(source: Path, index: Path, name: str, params: dict, workers: int, runtime: str) -> dict:
    done = subprocess.run([sys.executable, "-c", BUILD, str(source), str(index), name, json.dumps(params), str(workers)],
                          check=True, capture_output=True, text=True, env={**os.environ, **RUNTIMES[runtime]})
    timing = json.loads(done.stdout.splitlines()[-1])
    return {"images_per_s": round(timing["steady"], 1), "build_seconds": round(timing["seconds"], 1)}


def cold(index: Path, image: Path, runtime: str = "onnx") -> dict:
    env = RUNTIMES[runtime]
    cold_query(index, image, 10, env)  # warms the page cache
    runs = [cold_query(index, image, 10, env) for _ in range(3)]
    return {key: statistics.median(run[key] for run in runs) for key in ("seconds", "peak_rss_mib")}


def export_seconds(name: str, params: dict) -> float:
    """Building the Keras model aside, what exporting it costs (in this process)."""
    import time

    from visret.features import get_extractor

    extractor = get_extractor(name, **params)
    extractor.model  # noqa: B018 - TensorFlow started and the model built
    start = time.perf_counter()
    extractor.get_state()
    return time.perf_counter() - start


def parity(index_path: Path, test: Path) -> dict:
    """ONNX features against the Keras model's, on the test images, and the index's answers to both. Where
    two top-10 lists differ, how close the swapped neighbours are: at the first differing rank, the
    relative difference of the two entries' distances to the Keras query vector (a near-tie is ~1e-6)."""
    images = [r.path for r in scan_folder(test)]
    vectors, tops = {}, {}
    for runtime, env in RUNTIMES.items():
        os.environ.pop("VISRET_RUNTIME", None)
        os.environ.update(env)
        with visret.open_index(index_path) as index:
            vectors[runtime] = index.embed(images)
            tops[runtime] = [[n.id for n in r.neighbors] for r in index.query_vectors(vectors[runtime], k=10)]
    os.environ.pop("VISRET_RUNTIME", None)
    light, heavy = vectors["onnx"], vectors["keras"]
    relative = np.linalg.norm(light - heavy, axis=1) / np.maximum(np.linalg.norm(heavy, axis=1), 1e-30)
    gaps = []
    with visret.open_index(index_path) as index:
        for query, a, b in zip(heavy, tops["onnx"], tops["keras"]):
            if a != b:
                rank = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
                da, db = (float(np.linalg.norm(query - index.vectors([i])[0])) for i in (a[rank], b[rank]))
                gaps.append(abs(da - db) / max(db, 1e-30))
    same = sum(a == b for a, b in zip(tops["onnx"], tops["keras"]))
    return {"max_row_relative_difference": float(relative.max()), "identical_top10": f"{same}/{len(images)}",
            "swapped_neighbours_relative_distance_gap": [float(f"{g:.1e}") for g in gaps]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=340, help="indexed images (of split1's 1,020)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results: dict = {"images": args.images}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        train, test = materialise("flowers", root)
        source = subset(train, args.images, root)
        query = next(iter(scan_folder(test))).path
        handcrafted = root / "color-hist"
        visret.build_index(source, "color-hist", index=handcrafted).close()
        results["cold"] = {"color-hist": cold(handcrafted, query)}
        print("cold color-hist", results["cold"]["color-hist"], file=sys.stderr, flush=True)
        results["throughput"], results["parity"], results["export_seconds"] = {}, {}, {}
        for name, params in NETWORKS.items():
            for runtime in RUNTIMES:
                for workers in (1, 2):
                    index = root / f"{name.replace('/', '-')}-{runtime}-{workers}"
                    row = results["throughput"][f"{name} {runtime} workers={workers}"] = build(source, index, name, params, workers, runtime)
                    print(name, runtime, workers, row, file=sys.stderr, flush=True)
            onnx_index = root / f"{name.replace('/', '-')}-onnx-1"
            for runtime in RUNTIMES:
                results["cold"][f"{name} {runtime}"] = cold(onnx_index, query, runtime)
                print("cold", name, runtime, results["cold"][f"{name} {runtime}"], file=sys.stderr, flush=True)
            results["export_seconds"][name] = round(export_seconds(name, params), 1)
            results["parity"][name] = parity(onnx_index, test)
            print("parity", name, results["parity"][name], file=sys.stderr, flush=True)
    baseline = results["cold"]["color-hist"]
    results["cold_vs_handcrafted"] = {key: round(row["seconds"] / baseline["seconds"], 2) for key, row in results["cold"].items()}
    emit(results, args.out)


if __name__ == "__main__":
    main()
