"""CNN feature extraction speed: the indexing pipeline against the model's own forward pass.

Run from the repository root: ``.venv/bin/python benchmarks/cnn.py`` (about 10 minutes on 2 cores).
For each network, on COIL-100 (``../shared/datasets/coil100``), in one run and one process each:

- pipeline: images/s of ``build_index`` (decode, resize, forward, write the index);
- raw forward: images/s of the same extractor on arrays decoded beforehand (the ceiling);
- per-image predict: images/s of a ``model.predict`` call per image (the naive loop);
- decode only: images/s of reading and resizing the files in one process per core.

Weights are random (``weights=none``) for the Keras Applications: the arithmetic, and so the speed,
is the same as with ImageNet weights; SqueezeNet runs with its ImageNet weights (no download). Peak resident memory of the measuring process is reported per measurement (each
runs in its own process); decoding workers are separate processes, not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
NETWORKS = {
    "squeezenet": ("keras/squeezenet", {}),  # its ImageNet weights ship with visret: measured as users run it
    "mobilenet_v2": ("keras/mobilenet_v2", {"weights": "none", "size": 224}),
    "lenet5": ("cnn/lenet5", {"size": 32}),
}


def coil100(limit: int):
    from visret.images._folders import scan_folder

    records = scan_folder(SHARED / "coil100")
    step = max(1, len(records) // limit)
    return records[::step][:limit]


def measure(network: str, mode: str, limit: int, batch_size: int) -> dict:
    import visret
    from visret.embedding._extraction import read_batch

    name, params = NETWORKS[network]
    records = coil100(limit)
    extractor = visret.get_extractor(name, **params)
    extractor.extract([np.zeros(extractor.input_spec.size + ((3,) if extractor.input_spec.mode == "RGB" else ()), np.uint8)])
    for record in records:  # warm the page cache
        record.path.read_bytes()
    start = time.perf_counter()
    if mode == "pipeline":
        with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as data:
            folder = Path(data)
            for r in records:  # a folder holding exactly these images
                (folder / r.label).mkdir(exist_ok=True)
                os.symlink(r.path, folder / r.label / r.path.name)
            start = time.perf_counter()
            visret.build_index(folder, extractor, Path(tmp) / "ix", batch_size=batch_size).close()
    elif mode == "decode":
        from concurrent.futures import ProcessPoolExecutor
        from functools import partial

        batches = [[r.path for r in records[i : i + batch_size]] for i in range(0, len(records), batch_size)]
        import multiprocessing

        context = multiprocessing.get_context("forkserver")  # never fork a process running TensorFlow
        with ProcessPoolExecutor(len(os.sched_getaffinity(0)), mp_context=context) as pool:
            list(pool.map(partial(read_batch, extractor.input_spec, max_pixels=10**9), batches))
    else:
        images = read_batch(extractor.input_spec, [r.path for r in records], 10**9)[0]
        start = time.perf_counter()
        if mode == "forward":
            for i in range(0, len(images), batch_size):
                extractor.extract(images[i : i + batch_size])
        elif mode == "predict":
            model = extractor.model
            for image in images:
                batch = np.asarray(image, np.float32)[None]
                model.predict(extractor.preprocess(batch if batch.ndim == 4 else batch[..., None]), verbose=0)
    seconds = time.perf_counter() - start
    return {
        "images": len(records),
        "seconds": seconds,
        "images_per_s": len(records) / seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="squeezenet,mobilenet_v2,lenet5")
    parser.add_argument("--limit", type=int, default=7200, help="images of COIL-100 for lenet5")
    parser.add_argument("--limit-large", type=int, default=960, help="images for ImageNet-size networks")
    parser.add_argument("--predict-limit", type=int, default=200, help="images for the per-image predict loop")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--one", nargs=2, metavar=("NETWORK", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one, args.n, args.batch_size)))
        return
    results = {}
    for network in args.networks.split(","):
        limit = args.limit_large if network != "lenet5" else args.limit
        row = {}
        for mode, n in (("pipeline", limit), ("forward", limit), ("decode", limit), ("predict", min(limit, args.predict_limit))):
            done = subprocess.run(
                [sys.executable, __file__, "--one", network, mode, "--n", str(n), "--batch-size", str(args.batch_size)],
                capture_output=True, text=True, check=True,
            )
            row[mode] = json.loads(done.stdout.splitlines()[-1])
            print(network, mode, row[mode], file=sys.stderr)
        row["pipeline_efficiency"] = row["pipeline"]["images_per_s"] / row["forward"]["images_per_s"]
        row["pipeline_vs_per_image_predict"] = row["pipeline"]["images_per_s"] / row["predict"]["images_per_s"]
        results[network] = row
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
