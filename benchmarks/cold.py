"""A visret command in a new process, timed from outside, that reports its own peak resident memory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

#: A visret command in a new process that reports its own peak resident memory (MiB) last: the kernel's
#: VmHWM of its own address space (``ru_maxrss`` would carry over the parent's peak through fork and exec).
COMMAND = (
    "import re, sys\n"
    "from visret.cli._app import main\n"
    "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
    "status = open('/proc/self/status').read()\n"
    "print(int(re.search(r'VmHWM:\\s+(\\d+)', status).group(1)) / 1024, file=sys.stderr)\n"
)


def visret_process(args: list[str], env: dict[str, str] | None = None) -> dict:
    """Seconds (of the whole process) and peak RSS (MiB) of ``visret ARGS`` run in a new process."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", COMMAND, *args], check=True, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    return {"seconds": round(time.perf_counter() - start, 2), "peak_rss_mib": round(float(done.stderr.split()[-1]))}


def cold_query(index: Path, image: Path, k: int = 5, env: dict[str, str] | None = None) -> dict:
    """Seconds and peak RSS (MiB) of one ``visret query IMAGE --index INDEX -k K`` in a new process."""
    return visret_process(["query", str(image), "--index", str(index), "-k", str(k)], env)
