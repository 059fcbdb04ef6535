"""Index types at scale: build time, single-query and batch speed on one thread, recall@10, memory.

Run from the repository root: ``.venv/bin/python benchmarks/ann.py`` (about 15 minutes on 2 cores).
Collections: synthetic clustered float32 vectors (100,000 x 512 and 1,000,000 x 128) and real
embeddings (GIST descriptors of COIL-100, MNIST test and Animal-MNIST images: 27,200 x 512).
Every index is built through visret's own code (``visret.index._vectors``) and compared, in the same
run, with (a) the textbook baseline, ``np.mean(np.abs(features - q), -1)`` then ``argsort``,
one query at a time, and (b) scikit-learn ``NearestNeighbors(algorithm="brute")``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from visret.index import _vectors as vectors
from visret.index.distances import get_distance

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import emit  # noqa: E402

FACTORIES = {
    "Flat": ("Flat", {}),
    "IVF": ("IVF{nlist},Flat", {"nprobe": 16}),
    "HNSW": ("HNSW32", {"ef_search": 64}),
    "IVF-PQ": ("IVF{nlist},PQ{m}", {"nprobe": 32}),
}


def clustered(n: int, dim: int, clusters: int = 1000, seed: int = 0) -> np.ndarray:
    """Gaussian blobs around random centres: the shape real embeddings tend to have."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        out[start:stop] = centres[rng.integers(0, clusters, stop - start)] + 0.35 * rng.normal(size=(stop - start, dim)).astype(np.float32)
    return out


def real_embeddings() -> np.ndarray:
    """GIST (512-d) of every COIL-100, MNIST-test and Animal-MNIST image."""
    from datasets import materialise

    from visret import get_extractor
    from visret.images._folders import scan_folder
    from visret.embedding._extraction import extract_records

    extractor = get_extractor("gist")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("coil100", "mnist", "animal-mnist"):
            for folder in materialise(name, Path(tmp)):
                rows.append(extract_records(extractor, scan_folder(folder)).features)
    return np.concatenate(rows)


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_single(search, queries: np.ndarray, budget_s: float = 10.0) -> float:
    """Single queries per second, over as many queries as fit in ``budget_s`` (at least 3)."""
    done, start = 0, time.perf_counter()
    for q in queries:
        search(q[None])
        done += 1
        if done >= 3 and time.perf_counter() - start > budget_s:
            break
    return done / (time.perf_counter() - start)


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found.tolist(), truth.tolist())]))


def bench_collection(name: str, data: np.ndarray, n_queries: int, seed: int = 1) -> dict:
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(seed)
    queries = data[rng.choice(len(data), n_queries, replace=False)] + 0.05 * rng.normal(size=(n_queries, data.shape[1])).astype(np.float32)
    n, dim = data.shape
    nlist = int(2 ** round(np.log2(4 * np.sqrt(n))))
    m = max(x for x in (8, 16, 32, 64) if dim % x == 0 and x <= dim // 4)
    exact = faiss.IndexFlatL2(dim)
    exact.add(data)
    truth = exact.search(queries, 10)[1]
    del exact
    result = {"vectors": n, "dim": dim, "queries": n_queries, "indexes": {}}

    textbook = time_single(lambda q: np.argsort(np.mean(np.abs(data - q), -1))[:10], queries, budget_s=8)
    from sklearn.neighbors import NearestNeighbors

    brute = NearestNeighbors(n_neighbors=10, algorithm="brute").fit(data)
    sklearn_single = time_single(lambda q: brute.kneighbors(q, return_distance=False), queries, budget_s=8)
    result["baselines"] = {"textbook_numpy_single_qps": textbook, "sklearn_brute_single_qps": sklearn_single}
    brute = None  # free it before the indexes are built

    for label, (pattern, knobs) in FACTORIES.items():
        factory = pattern.format(nlist=nlist, m=m)
        before = rss_mib()
        start = time.perf_counter()
        faiss.omp_set_num_threads(2)  # building may use both cores; searching is timed on one
        index = vectors.new_index(dim, get_distance("l2"), factory)
        vectors.fill(index, [data], np.arange(n))
        build_s = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            faiss.write_index(index, str(Path(tmp) / "x.faiss"))
            file_bytes = (Path(tmp) / "x.faiss").stat().st_size
        vectors.set_search_params(index, knobs.get("nprobe"), knobs.get("ef_search"))
        faiss.omp_set_num_threads(1)
        single = time_single(lambda q: index.search(q, 10), queries)
        start = time.perf_counter()
        found = index.search(queries, 10)[1]
        batch = n_queries / (time.perf_counter() - start)
        result["indexes"][label] = {
            "factory": factory,
            **knobs,
            "build_s": build_s,
            "single_qps_1_thread": single,
            "batch_qps_1_thread": batch,
            "recall_at_10": recall_at_10(found, truth),
            "index_file_mib": file_bytes / 2**20,
            "rss_growth_mib": rss_mib() - before,
            "single_vs_textbook": single / textbook,
            "single_vs_sklearn_brute": single / sklearn_single,
        }
        print(name, label, json.dumps(result["indexes"][label]), file=sys.stderr)
        index = None  # free it before the next one
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collections", default="synthetic-100k-512,synthetic-1m-128,real-gist")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    makers = {
        "synthetic-100k-512": lambda: clustered(100_000, 512),
        "synthetic-1m-128": lambda: clustered(1_000_000, 128),
        "real-gist": real_embeddings,
    }
    results = {}
    for name in args.collections.split(","):
        data = makers[name]()
        results[name] = bench_collection(name, data, args.queries)
        del data
    emit(results, args.out)


if __name__ == "__main__":
    main()
