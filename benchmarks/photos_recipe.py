"""Retrieval without labels on Oxford 17 Flowers: the default index against ``--recipe photos``, on each split.

Run from the repository root: ``.venv/bin/python benchmarks/photos_recipe.py`` (about 5 minutes on 2 cores once
the networks' graphs are derived). For each split of ``../shared/datasets/oxford-flowers17/splits_seeded.csv``
(train + val indexed, test queried), it runs ``visret index flowers/train [--recipe photos]`` and ``visret evaluate
flowers/test`` as a user would, and reports held-out mAP (whole ranking) and the indexing time. No labels reach the
features or the re-ranking; they only score the answers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from assignment import lay_out  # noqa: E402
from results import emit  # noqa: E402

VISRET = str(Path(sys.executable).with_name("visret"))
SETTINGS = {"default": [], "recipe photos": ["--recipe", "photos"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", default="split1,split2,split3")
    parser.add_argument("--out", type=Path, help="also write the results (JSON) here")
    args = parser.parse_args()
    results: dict[str, dict[str, dict[str, float]]] = {name: {} for name in SETTINGS}
    for split in args.splits.split(","):
        with tempfile.TemporaryDirectory(prefix="visret-recipe-") as scratch:
            work = Path(scratch)
            lay_out(work, split)
            for name, flags in SETTINGS.items():
                start = time.perf_counter()
                subprocess.run([VISRET, "index", "flowers/train", *flags, "--index", "ix"], cwd=work, check=True, capture_output=True)
                seconds = time.perf_counter() - start
                done = subprocess.run([VISRET, "evaluate", "flowers/test", "--index", "ix", "--json"], cwd=work, check=True,
                                      capture_output=True, text=True)
                results[name][split] = {"map": round(json.loads(done.stdout)["map"], 4), "index_s": round(seconds, 1)}
                print(split, name, results[name][split], file=sys.stderr, flush=True)
                subprocess.run(["rm", "-rf", str(work / "ix")], check=True)
    for name, by_split in results.items():
        by_split["mean_map"] = round(sum(r["map"] for r in by_split.values()) / len(by_split), 4)
    emit({"machine": f"{os.cpu_count()} cores", **results}, args.out)


if __name__ == "__main__":
    main()
