"""The store at scale: cold query and open time, build memory and disk, at 10k / 100k / 1M entries.

Run from the repository root: ``.venv/bin/python benchmarks/store_scale.py`` (about 25 minutes on 2
cores for all three sizes; ``--sizes 10000,100000`` for a quick run). Images are generated 24x24
grey PNGs in 100 class folders, indexed with ``pixels --param size=24`` (576-d vectors), Flat,
2 workers. Every figure is paired with its baseline from the same run:

- cold query: ``visret query IMAGE -k 10 --json`` in a fresh process (page cache warm), median of
  5, against ``python -c "import numpy"``; and opening alone (``visret.open_index``) in-process;
- build memory: the peak resident memory of the building process minus its resident memory after
  importing visret, against the bytes of the vectors added (N x 576 x 4);
- disk: the index directory's bytes against those vectors;
- evaluation: ``visret evaluate --index`` (leave-one-out) with the full ranking at 10k and ``--depth 100``
  at 10k and 100k (issue #11: the full ranking took 11.3 s at 10k and over 25 minutes at 100k);
- removal: ``visret remove`` of one class folder (1 % of the entries), its time and the bytes of the
  current generation it frees (removed vectors are compacted out of the shards).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import emit  # noqa: E402

VISRET = str(Path(sys.executable).with_name("visret"))
DIM = 24 * 24
CLASSES = 100


def _write(args: tuple[Path, int, int]) -> None:
    folder, start, stop = args
    rng = np.random.default_rng(start)
    for i in range(start, stop):
        target = folder / f"c{i % CLASSES:03d}"
        pixels = rng.integers(0, 256, (24, 24), dtype=np.uint8)
        Image.fromarray(pixels, mode="L").save(target / f"{i:07d}.png", compress_level=1)


def generate(folder: Path, n: int) -> None:
    for c in range(CLASSES):
        (folder / f"c{c:03d}").mkdir(parents=True, exist_ok=True)
    chunks = [(folder, s, min(s + 10_000, n)) for s in range(0, n, 10_000)]
    with multiprocessing.get_context("forkserver").Pool(2) as pool:
        pool.map(_write, chunks)


def median_wall(argv: list[str], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


BUILD = """
import resource, sys, time
import visret
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
visret.build_index(sys.argv[1], "pixels", sys.argv[2], params={"size": 24}, workers=2).close()
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(seconds, base * 1024, peak * 1024)
"""

OPEN = """
import sys, time
import visret
start = time.perf_counter()
visret.open_index(sys.argv[1]).close()
print(time.perf_counter() - start)
"""


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def current_bytes(index: Path) -> int:
    """Bytes of the files the current generation uses (the previous one is kept until the next write)."""
    info = subprocess.run([VISRET, "info", "--json", "--index", str(index)], check=True, capture_output=True, text=True)
    return json.loads(info.stdout)["bytes"]


def bench(n: int, root: Path) -> dict:
    data, index = root / f"data-{n}", root / f"index-{n}"
    start = time.perf_counter()
    generate(data, n)
    generated = time.perf_counter() - start
    out = subprocess.run([sys.executable, "-c", BUILD, str(data), str(index)], check=True, capture_output=True, text=True)
    build_s, base_rss, peak_rss = (float(x) for x in out.stdout.split())
    vectors = n * DIM * 4
    query = next((data / "c007").iterdir())
    answer = json.loads(subprocess.run([VISRET, "query", str(query), "--index", str(index), "-k", "10", "--json"],
                                       check=True, capture_output=True, text=True).stdout)
    assert answer[0]["neighbors"][0]["distance"] == 0.0
    opens = [float(subprocess.run([sys.executable, "-c", OPEN, str(index)], check=True, capture_output=True, text=True).stdout)
             for _ in range(5)]
    result = {
        "entries": n,
        "generate_s": round(generated, 1),
        "build_s": round(build_s, 1),
        "build_images_per_s": round(n / build_s, 1),
        "vectors_mib": round(vectors / 2**20, 1),
        "build_rss_growth_mib": round((peak_rss - base_rss) / 2**20, 1),
        "build_rss_growth_vs_vectors": round((peak_rss - base_rss) / vectors, 3),
        "disk_mib": round(directory_bytes(index) / 2**20, 1),
        "disk_vs_vectors": round(directory_bytes(index) / vectors, 3),
        "cold_query_s": round(median_wall([VISRET, "query", str(query), "--index", str(index), "-k", "10", "--json"]), 3),
        "open_s": round(statistics.median(opens), 4),
        "python_numpy_start_s": round(median_wall([sys.executable, "-c", "import numpy"]), 3),
        "verify_s": round(median_wall([VISRET, "info", "--verify", "--index", str(index)], repeats=1), 2),
    }
    if n <= 10_000:
        result["loo_full_s"] = round(median_wall([VISRET, "evaluate", "--index", str(index), "--json"], repeats=1), 1)
    if n <= 100_000:
        result["loo_depth100_s"] = round(median_wall([VISRET, "evaluate", "--index", str(index), "--depth", "100", "--json"], repeats=1), 1)
    before = current_bytes(index)
    start = time.perf_counter()
    subprocess.run([VISRET, "remove", str(data / "c042"), "--index", str(index)], check=True, capture_output=True)
    result["remove_1pct_s"] = round(time.perf_counter() - start, 2)
    result["removal_frees_mib"] = round((before - current_bytes(index)) / 2**20, 1)  # compacted out of the shards
    print(json.dumps(result), file=sys.stderr)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--out", type=Path, help="also write the JSON results here")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="visret-scale-", dir=Path.home()) as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            results[n] = bench(n, Path(tmp))
    sizes = sorted(results)
    if len(sizes) > 1:
        results["cold_query_ratio_100k_vs_10k"] = round(results[sizes[1]]["cold_query_s"] / results[sizes[0]]["cold_query_s"], 2)
    emit(results, args.out)


if __name__ == "__main__":
    main()
