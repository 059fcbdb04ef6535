"""``visret serve`` on a 10,000-entry handcrafted index: start-up to first answer, warm query latency
over HTTP with 1 and 8 concurrent clients, against the same query in-process in the same run.

Run from the repository root: ``.venv/bin/python benchmarks/serve.py`` (about 4 minutes on 2 cores),
with one server process and with two (``--workers 2``).
The index is the MNIST test split (10,000 real 28x28 digits) with ``hog`` at its defaults; the
query is a digit file uploaded as multipart, so each HTTP answer includes upload, decode,
extraction, search and JSON.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import materialise  # noqa: E402
from results import emit  # noqa: E402

import visret  # noqa: E402

VISRET = str(Path(sys.executable).with_name("visret"))


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50_ms": round(1000 * statistics.median(ordered), 2), "p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 2)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(client: httpx.Client, data: bytes) -> float:
    start = time.perf_counter()
    client.post("/api/query", files={"image": ("q.png", data, "image/png")}, data={"k": "10"}).raise_for_status()
    return time.perf_counter() - start


def serve(index_path: Path, data: bytes, workers: int, queries: int, in_process: dict) -> dict:
    """Start ``visret serve`` with ``workers`` processes; time its first answer, then 1 and 8 clients."""
    port = free_port()
    started = time.perf_counter()
    server = subprocess.Popen([VISRET, "serve", "--index", str(index_path), "--port", str(port), "--workers", str(workers)])
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            while True:
                try:
                    post(client, data)
                    break
                except httpx.TransportError:
                    time.sleep(0.02)
            startup = time.perf_counter() - started
            for _ in range(20):  # every worker warm
                post(client, data)
            one = [post(client, data) for _ in range(queries)]

        def client_run(n: int) -> list[float]:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                return [post(client, data) for _ in range(n)]

        processes = [server.pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True).stdout.split()]
        cpu_before, wall = sum(cpu_seconds(p) for p in processes), time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            eight = [t for part in pool.map(client_run, [queries // 8] * 8) for t in part]
        wall = time.perf_counter() - wall
        cores = (sum(cpu_seconds(p) for p in processes) - cpu_before) / wall
    finally:
        server.terminate()
        server.wait(30)
    http_one = percentiles(one)
    return {
        "startup_to_first_answer_s": round(startup, 2),
        "http_1_client": {**http_one, "queries_per_s": round(len(one) / sum(one), 1)},
        "http_8_clients": {**percentiles(eight), "queries_per_s": round(len(eight) / wall, 1), "server_cpu_cores": round(cores, 2)},
        "http_overhead_p50_ms": round(http_one["p50_ms"] - in_process["p50_ms"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="visret-serve-") as tmp:
        train, test = materialise("mnist", Path(tmp))
        index_path = Path(tmp) / "index"
        visret.build_index(train, "hog", index_path).close()
        visret.add_images([test], index_path)
        query = sorted((test / "7").iterdir())[0]
        data = query.read_bytes()

        with visret.open_index(index_path) as index:
            assert len(index) == 10_000
            index.query(str(query), k=10)
            timings = []
            for _ in range(args.queries):
                start = time.perf_counter()
                index.query(str(query), k=10)
                timings.append(time.perf_counter() - start)
        in_process = percentiles(timings)

        results = {
            "entries": 10_000, "extractor": "hog (defaults)", "queries": args.queries, "in_process_index_query": in_process,
            "server": {str(workers): serve(index_path, data, workers, args.queries, in_process) for workers in (1, 2)},
        }
    emit(results, args.out)


if __name__ == "__main__":
    main()
