"""What the assignment tutorial costs on this machine: docs/tutorials/assignment.md, run as written.

Run from the repository root: ``.venv/bin/python benchmarks/assignment.py`` (about 20 minutes on 2 cores).
It lays out split 1 of Oxford 17 Flowers (``../shared/datasets/oxford-flowers17/splits_seeded.csv``:
train + val for training, test for testing) as links in a scratch folder, then runs every command of the
tutorial's shell blocks in order, as a student would, with stderr to a log file (not a terminal: the
progress is plain lines), and reports each command's wall time, its last line and whether it ran clean.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import emit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FLOWERS = ROOT.parent / "shared" / "datasets" / "oxford-flowers17"
TUTORIAL = ROOT / "docs" / "tutorials" / "assignment.md"


def commands(page: Path = TUTORIAL) -> list[str]:
    """Every command of the page's ``sh`` blocks, continuation lines joined."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", page.read_text(), re.S):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip() and not command.lstrip().startswith("#"):
                found.append(" ".join(command.split()))
    return found


def lay_out(folder: Path, split: str = "split1") -> None:
    rows = csv.DictReader(line for line in open(FLOWERS / "splits_seeded.csv") if not line.startswith("#"))
    for row in rows:
        target = folder / "flowers" / ("test" if row[split] == "test" else "train") / row["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(FLOWERS / row["path"], target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the results (JSON) here")
    args = parser.parse_args()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    results = {"steps": [], "machine": f"{os.cpu_count()} cores"}
    with tempfile.TemporaryDirectory(prefix="visret-assignment-") as scratch:
        work = Path(scratch)
        lay_out(work)
        started = time.perf_counter()
        for number, command in enumerate(commands(), start=1):
            log = work / f"step-{number}.log"
            start = time.perf_counter()
            with open(log, "w") as err:
                done = subprocess.run(["bash", "-c", command], cwd=work, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
            seconds = time.perf_counter() - start
            lines = [line for line in log.read_text().splitlines() if line.strip()]
            step = {"command": command, "seconds": round(seconds, 1), "exit": done.returncode, "last_line": lines[-1] if lines else "",
                    "progress_lines": sum(bool(re.match(r"^.+: \d+/\d+ \(\d+ %\), ", line)) for line in lines)}
            results["steps"].append(step)
            print(f"[{number}] {seconds:7.1f} s exit {done.returncode}: {step['last_line'][:150]}", file=sys.stderr, flush=True)
        results["total_minutes"] = round((time.perf_counter() - started) / 60, 1)
        report = work / "report.html"
        results["report_bytes"] = report.stat().st_size if report.exists() else 0
        results["report_markdown"] = (work / "report.md").read_text() if (work / "report.md").exists() else ""
    emit(results, args.out)


if __name__ == "__main__":
    main()
