"""A large index built from shards in bounded memory: peak RSS, time, disk, recall@10, queries.

Run from the repository root: ``.venv/bin/python benchmarks/large_build.py`` (1,000,000 x 512,
``IVF4096,PQ64``; about 15 minutes on 2 cores; ``--n 200000`` for a quick run). Synthetic
clustered float32 vectors (the generator of ``benchmarks/ann.py``), or with ``--vectors real`` vectors
with real structure: the pixels of the 20,000 MNIST-test and Animal-MNIST images, PCA-reduced to
``--dim`` (128), each row a seeded pick of one of them plus Gaussian noise of a tenth of each
dimension's spread; ``--factory auto`` lets the build choose the index and its ``nprobe``. They are
written as 100,000-row ``.npy`` files first; then a fresh process builds the index with ``visret.index_from_arrays``,
reading the files one at a time, through the same commit path as ``visret index`` (parts
committed to staging, the FAISS index trained on a seeded sample and filled part by part, the parts
adopted as shards unless the index keeps its vectors as codes alone); paths and labels stream in step
with the vectors. Reported against the baseline of the same run: the building process's peak
resident memory (``VmHWM``) minus its memory after imports, as a share of the raw vectors'
bytes; recall@10 of the built index against exact search over the generated vectors (the query's own
entry left out), on 1,000 of them, at several ``nprobe`` and at the one the build chose; disk per part
and per entry; a warm query (one vector, median of 200) and a cold one (a new process opening the
index); then the seconds of removing a folder of 1,000 entries (with where they go), adding 100
photos and syncing after 10 deletions and 10 new files.
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import pstats
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ann import clustered  # noqa: E402
from results import emit  # noqa: E402

CHUNK = 100_000


def _status(field: str) -> float:
    """A ``/proc/self/status`` memory figure in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


#: "As if this extractor had embedded the files": one whose dim is the vectors' (color-hist 8x4x4 is 128-d).
EXTRACTORS = {512: {"name": "gist"}, 128: {"name": "color-hist", "params": {"bins": [8, 4, 4]}}}

COLD = """
import sys, time, numpy as np
start = time.perf_counter()
import visret
index = visret.open_index(sys.argv[1])
index.query_vectors(np.load(sys.argv[2])[:1], k=10)
print(time.perf_counter() - start)
"""


def build(folder: Path, n: int, factory: str) -> dict:
    """Runs in a fresh process: only the build is in its memory figures."""
    import visret

    files = sorted(folder.glob("chunk-*.npy"))
    labels = np.load(folder / "labels.npy")
    dim = np.load(files[0], mmap_mode="r").shape[1]
    baseline = _status("VmRSS")
    start = time.perf_counter()
    index = visret.index_from_arrays(  # paths and labels stream in step with the vectors, as a user's 10M would
        (np.load(f, allow_pickle=False) for f in files), (path_of(i) for i in range(n)),
        map(str, labels.tolist()), folder / "index", EXTRACTORS[dim], factory=factory, progress=_Progress(n),
    )
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    chosen = dict(index.manifest["search"])
    recalls = exact_recalls(index, files, sorted({1, 16, 64, chosen["nprobe"]}) if "nprobe" in chosen else [])
    queries = np.load(files[-1], mmap_mode="r")[:200]
    times = []
    for query in queries:
        begin = time.perf_counter()
        index.query_vectors(query[None], k=10)
        times.append(time.perf_counter() - begin)
    np.save(folder / "query.npy", np.asarray(queries[:1]))
    parts = {role: (folder / "index" / entry["name"]).stat().st_size for role, entry in index.manifest["files"].items()}
    parts["shards"] = sum(shard["bytes"] for shard in index.manifest["shards"])
    index.close()
    changes = timed_changes(folder, n)
    cold = []
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", COLD, str(folder / "index"), str(folder / "query.npy")], capture_output=True, text=True, check=True)
        cold.append(round(float(done.stdout.split()[-1]), 2))
    raw = n * dim * 4
    return {
        "vectors": n, "dim": dim, "factory": index.manifest["factory"], "search": chosen, "build_s": round(seconds, 1),
        "rss_after_import_mib": round(baseline, 1), "peak_rss_mib": round(peak, 1),
        "peak_rss_above_import_mib": round(peak - baseline, 1), "raw_vectors_mib": round(raw / 2**20, 1),
        "peak_over_raw": round((peak - baseline) * 2**20 / raw, 3),
        "disk_mib": {role: round(size / 2**20, 1) for role, size in parts.items()},
        "bytes_per_entry": {role: round(size / n, 1) for role, size in parts.items()},
        "warm_query_ms_median": round(1000 * float(np.median(times)), 2), "cold_query_s": cold, **recalls, **changes,
    }


#: What a change of one generation spends its time on, by the function that does it.
PHASES = {"sha256 of new files": "sha256_file", "xxh3 of new files": "xxh3_file", "FAISS read": "read_index",
          "FAISS write": "write_index", "fsync": "<built-in method posix.fsync>", "entries table written": "_write",
          "entries summary (count, classes)": "summary", "shards compacted": "compact"}


def _where(profile: cProfile.Profile) -> dict:
    """Seconds of a profiled change in each of ``PHASES`` (cumulative, so phases may nest)."""
    stats = pstats.Stats(profile).stats
    found = {}
    for phase, function in PHASES.items():
        seconds = sum(value[3] for key, value in stats.items() if key[2] == function or (key[0] == "~" and key[2] == function))
        found[phase] = round(seconds, 2)
    return found


def exact_recalls(index, files: list[Path], nprobes: list[int], sample: int = 1000) -> dict:
    """Recall@10 against exact search over the generated vectors themselves (read a file at a time), the
    query's own entry left out, at each ``nprobe`` and at the one the build chose: the index's own
    ``recall_at_10`` can only compare with every list probed once its codes are all it keeps."""
    import faiss
    from visret.index._search_params import K, recall_at_10

    sizes = [len(np.load(f, mmap_mode="r")) for f in files]
    rows = np.sort(np.random.default_rng(0).choice(sum(sizes), sample, replace=False))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    queries = np.concatenate([np.load(f, mmap_mode="r")[rows[(rows >= a) & (rows < a + n)] - a] for f, a, n in zip(files, starts, sizes)])
    heap = faiss.ResultHeap(len(queries), K + 1)
    for file, start in zip(files, starts):
        distances, found = faiss.knn(queries, np.load(file), K + 1)
        heap.add_result(distances, found + start + 1)  # ids are rows + 1: the build's order
    heap.finalize()
    chosen, out = index.manifest["search"].get("nprobe"), {}
    for nprobe in nprobes or [None]:
        if nprobe is not None:
            index.set_search_params(nprobe=nprobe)
        name = "recall_at_10" + ("" if nprobe is None else f"_nprobe_{nprobe}")
        out[name] = round(recall_at_10(heap.I, index.search(queries, K + 1)[1], rows + 1), 4)
    if chosen is not None:
        index.set_search_params(nprobe=chosen)
    return out


def path_of(i: int) -> str:
    """Entry ``i``'s file: folders of 1,000, as a photo archive's are."""
    return f"/archive/{i // 1000:05d}/{i:07d}.jpg"


class _Progress:
    """A line on stderr every 10 % of the vectors staged: a 10M build runs for many minutes."""

    def __init__(self, n: int):
        self.n, self.next, self.start = n, 0.1, time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if done >= self.next * self.n:
            print(f"staged {done:,} of {self.n:,} in {time.perf_counter() - self.start:.0f} s", file=sys.stderr, flush=True)
            self.next += 0.1


def timed_changes(folder: Path, n: int) -> dict:
    """Seconds each change takes on the built index: removing a folder of 1,000 entries, adding 100
    new photos, syncing that folder after 10 were deleted and 10 written (the new generation's
    files are written whole: entries table, FAISS file and ids); then evaluating 100 labelled photos
    against it to depth 100."""
    import visret
    from PIL import Image

    index, photos = folder / "index", folder / "new"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(100):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(photos / f"{i:03d}.png")
    times = {}
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    removed = visret.remove_images([str(Path(path_of(n // 2)).parent)], index).removed
    profile.disable()
    times["remove_1000_s"] = round(time.perf_counter() - start, 2)
    times["remove_1000_where_s"] = _where(profile)
    start = time.perf_counter()
    added = visret.add_images([photos], index, workers=1).added
    times["add_100_s"] = round(time.perf_counter() - start, 2)
    for i in range(10):
        (photos / f"{i:03d}.png").unlink()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(photos / f"new-{i:03d}.png")
    start = time.perf_counter()
    synced = visret.sync_index(photos, index, workers=1)
    times["sync_10_10_s"] = round(time.perf_counter() - start, 2)
    assert (removed, added, synced.added, synced.removed) == (1000, 100, 10, 10), (removed, added, synced)
    labelled = folder / "labelled"  # 100 photos in 10 of the index's classes, ranked to depth 100
    for i in range(100):
        (labelled / str(i % 10)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(labelled / str(i % 10) / f"{i:03d}.png")
    start = time.perf_counter()
    report = visret.evaluate_knn(labelled, index, depth=100, workers=1)
    times["evaluate_100_depth_100_s"] = round(time.perf_counter() - start, 2)
    assert report.n_queries == 100
    return times


def real_structure(n: int, dim: int, seed: int) -> np.ndarray:
    """``n`` rows near real images: PCA-reduced pixels of MNIST-test and Animal-MNIST, a seeded pick plus
    Gaussian noise of a tenth of each dimension's spread."""
    base = _real_base(dim)
    rng = np.random.default_rng(seed)
    picked = base[rng.integers(0, len(base), n)]
    return (picked + 0.1 * base.std(axis=0) * rng.normal(size=picked.shape)).astype(np.float32)


_BASE: dict[int, np.ndarray] = {}


def _real_base(dim: int) -> np.ndarray:
    if dim not in _BASE:
        from sklearn.decomposition import PCA

        shared = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
        mnist = np.frombuffer(gzip.open(shared / "mnist-test" / "t10k-images-idx3-ubyte.gz").read()[16:], np.uint8).reshape(-1, 784)
        with np.load(shared / "animal-mnist" / "animal_mnist.npz", allow_pickle=False) as data:
            animals = data["x"].reshape(len(data["x"]), -1)
        pixels = np.concatenate([mnist, animals]).astype(np.float32) / 255
        _BASE[dim] = PCA(dim, random_state=0).fit_transform(pixels).astype(np.float32)
    return _BASE[dim]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--factory", default="IVF4096,PQ64")
    parser.add_argument("--vectors", choices=("clustered", "real"), default="clustered")
    parser.add_argument("--dim", type=int, choices=sorted(EXTRACTORS), help="[default: 512 clustered, 128 real]")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(build(args.child, args.n, args.factory)))
        return
    with tempfile.TemporaryDirectory(dir=Path.cwd() / "build") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        labels = []
        for number, begin in enumerate(range(0, args.n, CHUNK)):
            rows = min(CHUNK, args.n - begin)
            if args.vectors == "real":
                data = real_structure(rows, args.dim or 128, seed=number)
            else:
                data = clustered(rows, args.dim or 512, seed=number)  # 1,000 clusters per chunk, seeded per chunk
            np.save(folder / f"chunk-{number:03d}.npy", data)
            labels.append(np.full(rows, number))
        np.save(folder / "labels.npy", np.concatenate(labels))
        print(f"wrote {args.n} vectors in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        child = subprocess.run([sys.executable, __file__, "--child", str(folder), "--n", str(args.n), "--factory", args.factory],
                               capture_output=True, text=True)
        if child.returncode != 0:
            sys.exit(child.stderr)
        emit(json.loads(child.stdout.strip().splitlines()[-1]), args.out)


if __name__ == "__main__":
    main()
