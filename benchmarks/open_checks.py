"""What checksumming an index on every plain open costs: the figure behind ``VERIFY_ON_OPEN``.

Run from the repository root: ``.venv/bin/python benchmarks/open_checks.py`` (under a minute). Indexes of
random 256-d vectors (``index_from_arrays``, ``pixels`` at 16 x 16) just under and well over the threshold are
opened 20 times each in this process (page cache warm), with the default checks and with every file
checksummed; the cost is the difference, next to a cold ``visret query`` in a new process.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import emit  # noqa: E402

import visret  # noqa: E402
from visret.store import reader  # noqa: E402


def opening_ms(path: Path, verify: bool, repeats: int = 20) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        visret.open_index(path, verify=verify).close()
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    results = {"verify_on_open_bytes": reader.VERIFY_ON_OPEN}
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "q.png"
        from PIL import Image

        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
        for n in (20_000, 80_000):
            vectors = np.random.default_rng(0).random((n, 256), dtype=np.float32)
            path = Path(tmp) / f"ix{n}"
            visret.index_from_arrays(vectors, [f"/nowhere/{i}.png" for i in range(n)], None, path,
                                     {"name": "pixels", "params": {"size": 16}}).close()
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            start = time.perf_counter()
            subprocess.run([str(Path(sys.executable).with_name("visret")), "query", str(image), "--index", str(path)],
                           check=True, capture_output=True)
            results[f"{n} entries"] = {
                "bytes": size, "checksummed_on_open": size <= reader.VERIFY_ON_OPEN,
                "open_ms_default": round(opening_ms(path, False), 1), "open_ms_verify": round(opening_ms(path, True), 1),
                "cold_query_s": round(time.perf_counter() - start, 2),
            }
            print(n, results[f"{n} entries"], file=sys.stderr, flush=True)
    emit(results, None)


if __name__ == "__main__":
    main()
