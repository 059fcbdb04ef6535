"""Memory of a running ``visret serve`` under concurrent huge uploads: the figure behind its pixel budget.

Run from the repository root: ``.venv/bin/python benchmarks/serve_memory.py`` (about a minute). A 9,400 x 9,400
PNG of a few hundred kilobytes (88 Mpx, under Pillow's pixel limit, about 265 MB once decoded as RGB) is sent to
``/search`` (which decodes it twice: the query and its preview) by 1 client, then by 4 and by 12 at once, each
against a fresh server; the server's peak resident memory (``VmHWM``) is read from ``/proc`` after each round.
Without the shared budget each client decodes side by side, so the peak grows with the clients (the third
hostile campaign measured 6.2 GB for 4 clients and 7.8 GB for 12); with it the ratio to one client stays near 1.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import emit  # noqa: E402

import visret  # noqa: E402

SIDE = 9_400


def huge_png() -> bytes:
    image = Image.new("RGB", (SIDE, SIDE), (40, 90, 160))
    image.paste((200, 30, 30), (SIDE // 4, SIDE // 4, SIDE // 2, SIDE // 2))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def peak_mib(pid: int) -> int:
    """The process's peak resident memory and its children's (uvicorn workers), in MiB."""
    total = 0
    for proc in [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]:
        total += int(re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{proc}/status").read_text()).group(1))
    return total // 1024


def round_peak(index: Path, png: bytes, clients: int) -> dict:
    server = subprocess.Popen([str(Path(sys.executable).with_name("visret")), "serve", "--index", str(index), "--port", "0"],
                              stderr=subprocess.PIPE, text=True)
    try:
        address = server.stderr.readline().split(" at ")[1].split()[0]
        idle = peak_mib(server.pid)
        start = time.perf_counter()

        def upload(_: int) -> int:
            return httpx.post(address + "search", files={"image": ("huge.png", png, "image/png")}, timeout=600).status_code

        with ThreadPoolExecutor(clients) as pool:
            codes = list(pool.map(upload, range(clients)))
        return {"clients": clients, "statuses": sorted(set(codes)), "idle_mib": idle, "peak_mib": peak_mib(server.pid),
                "seconds": round(time.perf_counter() - start, 1)}
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    png = huge_png()
    results: dict = {"upload_bytes": len(png), "pixels": SIDE * SIDE}
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "ix"
        vectors = np.random.default_rng(0).random((100, 16 * 16), dtype=np.float32)
        visret.index_from_arrays(vectors, [f"/nowhere/{i}.png" for i in range(100)], None, index,
                                 {"name": "pixels", "params": {"size": 16}}).close()
        rounds = []
        for clients in (1, 4, 12):
            rounds.append(round_peak(index, png, clients))
            print(rounds[-1], file=sys.stderr, flush=True)
    results["rounds"] = rounds
    one = rounds[0]["peak_mib"] - rounds[0]["idle_mib"]
    results["growth_ratio_to_one_client"] = {r["clients"]: round((r["peak_mib"] - r["idle_mib"]) / one, 2) for r in rounds}
    emit(results, None)


if __name__ == "__main__":
    main()
