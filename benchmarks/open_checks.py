"""What checking an index's files on first read costs: the figures behind ``store.reader``'s default.

Run from the repository root: ``.venv/bin/python benchmarks/open_checks.py`` (about two minutes). Flat
indexes of random 256-d vectors (``index_from_arrays``, ``pixels`` at 16 x 16) of 20,000, 80,000 and
320,000 entries are opened and searched in this process (page cache warm): opening (structure and id list),
the first exact search (which checks every shard's XXH3 before reading it), a second search (checked
already), and the same with ``verify=True`` (SHA-256 of every file on opening); next to the throughput of
the checksums (XXH3-128, SHA-256, and the hand-written 64-bit word sum that XXH3 replaced, kept here as the
baseline) and a cold ``visret query`` in a new process.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import emit  # noqa: E402

import visret  # noqa: E402
from visret.index._store.files import xxh3_file  # noqa: E402


def word_sum(path: Path) -> str:
    """The replaced baseline: ``sum(w)`` and ``sum((i + 1) * w)`` of 64-bit words modulo 2**64 (it missed
    paired sign-bit flips, since 2**63 * (i + j + 2) vanishes modulo 2**64 when i + j is even)."""
    words = np.memmap(path, dtype="<u8", mode="r", shape=(path.stat().st_size // 8,))
    plain, weighted, block = 0, 0, 1 << 20
    weights = np.arange(1, block + 1, dtype=np.uint64)
    for start in range(0, len(words), block):
        chunk = words[start : start + block]
        total = int(chunk.sum(dtype=np.uint64))
        plain += total
        weighted += int(np.dot(chunk, weights[: len(chunk)])) + start * total
    return f"{plain & (2**64 - 1):016x}{weighted & (2**64 - 1):016x}"


def best_ms(action, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return round(min(times) * 1000, 1)


def first_and_second_search_ms(path: Path, query: np.ndarray, verify: bool) -> tuple[float, float, float]:
    """(open, first search, second search) in milliseconds, best of 5 fresh openings."""
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        index = visret.open_index(path, verify=verify)
        opened = time.perf_counter()
        index.search(query, 10)
        first = time.perf_counter()
        index.search(query, 10)
        second = time.perf_counter()
        index.close()
        rounds.append(((opened - start) * 1000, (first - opened) * 1000, (second - first) * 1000))
    return tuple(round(min(r[i] for r in rounds), 1) for i in range(3))


def main() -> None:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        blob = Path(tmp) / "blob"
        blob.write_bytes(np.random.default_rng(1).bytes(256 * 2**20))
        results["throughput_gb_s"] = {
            "xxh3_128": round(blob.stat().st_size / 1e9 / (best_ms(lambda: xxh3_file(blob), 3) / 1000), 2),
            "word_sum_replaced": round(blob.stat().st_size / 1e9 / (best_ms(lambda: word_sum(blob), 3) / 1000), 2),
            "sha256": round(blob.stat().st_size / 1e9 / (best_ms(lambda: hashlib.sha256(blob.read_bytes()).digest(), 3) / 1000), 2),
        }
        blob.unlink()
        print(results, file=sys.stderr, flush=True)
        image = Path(tmp) / "q.png"
        from PIL import Image

        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
        for n in (20_000, 80_000, 320_000):
            vectors = np.random.default_rng(0).random((n, 256), dtype=np.float32)
            path = Path(tmp) / f"ix{n}"
            visret.index_from_arrays(vectors, [f"/nowhere/{i}.png" for i in range(n)], None, path,
                                     {"name": "pixels", "params": {"size": 16}}).close()
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            query = vectors[:1]
            opening, first, second = first_and_second_search_ms(path, query, verify=False)
            v_opening, _, v_second = first_and_second_search_ms(path, query, verify=True)
            start = time.perf_counter()
            subprocess.run([str(Path(sys.executable).with_name("visret")), "query", str(image), "--index", str(path)],
                           check=True, capture_output=True)
            results[f"{n} entries"] = {
                "megabytes": round(size / 1e6, 1),
                "open_ms": opening, "first_search_ms": first, "second_search_ms": second,
                "first_read_check_ms": round(first - second, 1),
                "verify_open_ms": v_opening, "verify_search_ms": v_second,
                "cold_query_s": round(time.perf_counter() - start, 2),
            }
            print(n, results[f"{n} entries"], file=sys.stderr, flush=True)
    emit(results, None)


if __name__ == "__main__":
    main()
