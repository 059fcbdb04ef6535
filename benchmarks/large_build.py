"""A large IVF-PQ index built from shards in bounded memory: peak RSS, time, recall@10.

Run from the repository root: ``.venv/bin/python benchmarks/large_build.py`` (1,000,000 x 512,
``IVF4096,PQ64``; about 15 minutes on 2 cores; ``--n 200000`` for a quick run). Synthetic
clustered float32 vectors (the generator of ``benchmarks/ann.py``) are written as 100,000-row
``.npy`` files first; then a fresh process builds the index with ``visret.index_from_arrays``,
reading the files one at a time, through the same commit path as ``visret index`` (parts
committed to staging, adopted as shards, the FAISS index trained on a seeded sample and filled
shard by shard). Reported against the baseline of the same run: the building process's peak
resident memory (``VmHWM``) minus its memory after imports, as a share of the raw vectors'
bytes; and recall@10 of the built index against exact search over the stored vectors, on 1,000
of them, at several ``nprobe``.
"""

from __future__ import annotations

import argparse
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


def build(folder: Path, n: int, factory: str) -> dict:
    """Runs in a fresh process: only the build is in its memory figures."""
    import visret

    files = sorted(folder.glob("chunk-*.npy"))
    labels = np.load(folder / "labels.npy")
    baseline = _status("VmRSS")
    start = time.perf_counter()
    index = visret.index_from_arrays(
        (np.load(f, allow_pickle=False) for f in files), [f"synthetic/{i:07d}.png" for i in range(n)],
        [str(label) for label in labels], folder / "index", "gist", factory=factory,
    )
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    recalls = {}
    for nprobe in (1, 16, 64, 256):
        index.set_search_params(nprobe=nprobe)
        recalls[f"recall_at_10_nprobe_{nprobe}"] = index.recall_at_10(sample=1000)
    disk = sum(p.stat().st_size for p in (folder / "index").rglob("*") if p.is_file())
    faiss_bytes = (folder / "index" / index.manifest["files"]["vectors"]["name"]).stat().st_size
    raw = n * 512 * 4
    return {
        "vectors": n, "dim": 512, "factory": index.manifest["factory"], "build_s": round(seconds, 1),
        "rss_after_import_mib": round(baseline, 1), "peak_rss_mib": round(peak, 1),
        "peak_rss_above_import_mib": round(peak - baseline, 1), "raw_vectors_mib": round(raw / 2**20, 1),
        "peak_over_raw": round((peak - baseline) * 2**20 / raw, 3), "faiss_file_mib": round(faiss_bytes / 2**20, 1),
        "index_dir_mib": round(disk / 2**20, 1), **recalls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--factory", default="IVF4096,PQ64")
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
            data = clustered(rows, 512, seed=number)  # 1,000 clusters per chunk, seeded per chunk
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
