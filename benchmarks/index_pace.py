"""Indexing at the hardware's pace (issue #35 A): ``visret index`` against a 20-line script, in one run.

Run from the repository root: ``.venv/bin/python benchmarks/index_pace.py`` (about 3 minutes on 2 cores;
``--ray`` adds the Ray engine, about 2 minutes more). On the 680 Oxford 17 Flowers photos of split1's
training part (the first 40 of each class), page cache warm, the SqueezeNet graph derived beforehand,
every figure from this one run, rounds interleaved, medians:

- ``script``: the baseline, a new process: Pillow ``draft`` + resize to 227, visret's own SqueezeNet
  graph in ONNX Runtime (default options), batches of 32. Whole process seconds, and the images/s of
  its loop (session load included).
- ``index``: ``visret index FOLDER`` with the default extractor (SqueezeNet + colour histogram), and
  with ``-e keras/squeezenet`` (the script's network alone), ``--workers`` 1 and 2: whole process seconds
  and images/s, peak RSS (the process's own VmHWM).
- ``embedding``: ``build_index`` in a new process, images/s from the first batch out to the end (the
  phase that embeds; start-up, session load and the index's writing left out).
- ``add`` / ``sync``: an index of 20 photos a class, then ``visret add FOLDER`` / ``visret sync FOLDER``
  with the other 20 a class new in it: new images per second of the whole process.
- ``ray`` (with ``--ray``): ``visret index --engine ray``, a local Ray instance, one actor per core.

Ratios are images/s against the script's, end to end against end to end and the embedding phase
against the script's loop.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cold import visret_process  # noqa: E402
from results import emit  # noqa: E402

FLOWERS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "oxford-flowers17"

#: The 20-line script the issue measured: it prints its loop's images/s.
SCRIPT = """
import sys, time
from pathlib import Path
import numpy as np, onnxruntime
from PIL import Image
from visret.features import get_extractor
from visret_keras import derived
start = time.perf_counter()
graph = derived.load(get_extractor("keras/squeezenet").graph_key())
session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
files = sorted(p for p in Path(sys.argv[1]).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
features = []
for i in range(0, len(files), 32):
    batch = []
    for path in files[i:i + 32]:
        with Image.open(path) as image:
            image.draft("RGB", (227, 227))
            batch.append(np.asarray(image.convert("RGB").resize((227, 227), Image.Resampling.BILINEAR), np.float32))
    features.append(session.run(None, {name: np.stack(batch)})[0])
features = np.concatenate(features)
print(len(files) / (time.perf_counter() - start))
"""

#: ``build_index`` in a new process: images/s once the first batch is out.
EMBEDDING = """
import json, sys, time
import visret
first = []
def progress(done, total):
    if not first:
        first.append((done, time.perf_counter()))
index = visret.build_index(sys.argv[1], index=sys.argv[2], progress=progress)
end = time.perf_counter()
print(json.dumps({"images_per_s": (index.manifest["count"] - first[0][0]) / (end - first[0][1])}))
"""


def lay_out(root: Path, per_class: int, skip: int = 0) -> Path:
    """``per_class`` photos of each class of split1's training part (after the first ``skip``), as links."""
    rows = csv.DictReader(line for line in open(FLOWERS / "splits_seeded.csv") if not line.startswith("#"))
    taken: dict[str, int] = {}
    for row in rows:
        if row["split1"] == "test":
            continue
        label = row["path"].split("/")[0]
        seen = taken[label] = taken.get(label, 0) + 1
        if skip < seen <= skip + per_class:
            target = root / row["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(FLOWERS / row["path"])
            (FLOWERS / row["path"]).read_bytes()  # the page cache, for every run alike
    return root


def script(folder: Path) -> dict:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(folder)], check=True, capture_output=True, text=True)
    return {"seconds": time.perf_counter() - start, "loop_images_per_s": float(done.stdout.split()[-1])}


def index(folder: Path, target: Path, *extra: str, command: str = "index") -> dict:
    if command == "index":
        subprocess.run(["rm", "-rf", str(target)], check=True)
    return visret_process([command, str(folder), "--index", str(target), *extra])


def embedding(folder: Path, target: Path) -> float:
    subprocess.run(["rm", "-rf", str(target)], check=True)
    done = subprocess.run([sys.executable, "-c", EMBEDDING, str(folder), str(target)], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])["images_per_s"]


def grow(work: Path, name: str, first: Path, second: Path, command: str) -> dict:
    """An index of ``first``; then ``second``'s photos join the folder and ``visret COMMAND`` takes them in."""
    folder, target = work / name, work / f"{name}.index"
    subprocess.run(["rm", "-rf", str(folder), str(target)], check=True)
    subprocess.run(["cp", "-as", str(first), str(folder)], check=True)
    index(folder, target)
    subprocess.run(["cp", "-as", f"{second}/.", str(folder)], check=True)
    return index(folder, target, command=command)


def median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ray", action="store_true", help="also the Ray engine (a local instance)")
    parser.add_argument("--out", type=Path, help="also write the results (JSON) here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="visret-pace-") as scratch:
        work = Path(scratch)
        photos = lay_out(work / "photos", 40)
        first, second = lay_out(work / "first", 20), lay_out(work / "second", 20, skip=20)
        count, added = sum(1 for _ in photos.rglob("*.jpg")), sum(1 for _ in second.rglob("*.jpg"))
        index(photos, work / "warm", "-e", "keras/squeezenet")  # derives the graph once, untimed
        variants = {
            "default": (), "default, 1 worker": ("--workers", "1"), "default, 2 workers": ("--workers", "2"),
            "keras/squeezenet": ("-e", "keras/squeezenet"),
        }
        runs: dict[str, list[dict]] = {"script": [], **{name: [] for name in variants}, "add": [], "sync": []}
        phase: list[float] = []
        for _ in range(args.rounds):
            runs["script"].append(script(photos))
            for name, extra in variants.items():
                runs[name].append(index(photos, work / "index", *extra))
            phase.append(embedding(photos, work / "index"))
            runs["add"].append(grow(work, "add", first, second, "add"))
            runs["sync"].append(grow(work, "sync", first, second, "sync"))
        if args.ray:
            runs["ray"] = [index(photos, work / "index", "--engine", "ray") for _ in range(args.rounds)]
    script_rate = count / median(runs["script"], "seconds")
    loop_rate = median(runs["script"], "loop_images_per_s")
    results: dict = {"images": count, "machine": f"{os.cpu_count()} cores", "rounds": args.rounds,
                     "script": {"seconds": round(median(runs["script"], "seconds"), 2), "images_per_s": round(script_rate, 1),
                                "loop_images_per_s": round(loop_rate, 1)}}
    for name in runs:
        if name == "script":
            continue
        new = added if name in ("add", "sync") else count
        rate = new / median(runs[name], "seconds")
        results[name] = {"seconds": median(runs[name], "seconds"), "images_per_s": round(rate, 1),
                         "vs_script": round(rate / script_rate, 2), "peak_rss_mib": max(run["peak_rss_mib"] for run in runs[name])}
    results["embedding"] = {"images_per_s": round(statistics.median(phase), 1), "vs_script_loop": round(statistics.median(phase) / loop_rate, 2)}
    emit(results, args.out)


if __name__ == "__main__":
    main()
