"""Retrieval quality on the fair splits: defaults, the tuner (unsupervised, with re-ranking, supervised).

Run from the repository root: ``.venv/bin/python benchmarks/quality.py`` (on 2 cores COIL-100 took 34
minutes, COIL-20 9, UMIST 1.5, MNIST 43, Animal-MNIST 32 for its supervised run alone; ``--datasets
coil20,umist`` for a quick run, ``--runs tuned_supervised`` for one tuner run). For each dataset the
fair split of ``datasets.py`` gives an indexed part and a query part. ``visret.evaluation._tuning.Tuner`` is
given the indexed part as its data and the query part as its held-out test folder, so every
choice it makes uses validation splits of the indexed part only, and every number below is the
mAP over the whole ranking of the held-out queries:

- ``color-hist``: visret's ``color-hist`` at its defaults;
- best single default: the best of the handcrafted suite, each at its defaults;
- tuned, unsupervised: ``tuner.run(supervised=False, rerank=False)``;
- tuned, unsupervised + re-ranking: ``tuner.run(supervised=False, rerank=True)``;
- tuned, supervised: ``tuner.run(supervised=True, rerank=True)`` (steps learned from the indexed
  part's labels).

Also: the naive script of issue #11 (joint HSV histogram 8x8x8 on 64x64 images, square root, L2)
on the same split, as the baseline every default must beat.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import materialise  # noqa: E402
from results import emit  # noqa: E402

import visret  # noqa: E402
from visret.images._folders import scan_folder  # noqa: E402
from visret.evaluation._tuning import BASES, Tuner  # noqa: E402


def naive_script(train: Path, test: Path) -> float:
    """The 15-line script users write by hand: HSV 8x8x8 on 64x64, square root, exact L2."""

    def describe(folder: Path):
        records = scan_folder(folder)
        rows = []
        for record in records:
            hsv = np.asarray(Image.open(record.path).convert("RGB").resize((64, 64)).convert("HSV")).reshape(-1, 3)
            cells = (hsv.astype(int) * 8 // 256) @ np.array([64, 8, 1])
            rows.append(np.sqrt(np.bincount(cells, minlength=512) / len(cells)))
        return np.array(rows, np.float32), [r.label for r in records]

    X, y = describe(train)
    Q, yq = describe(test)
    return visret.evaluate_features(X, y, Q, yq).map


RUNS = {
    "tuned_unsupervised": {"supervised": False, "rerank": False},
    "tuned_unsupervised_rerank": {"supervised": False, "rerank": True},
    "tuned_supervised": {"supervised": True, "rerank": True},
}


def run(dataset: str, root: Path, workers: int | None, names: list[str]) -> dict:
    train, test = materialise(dataset, root)
    started = time.perf_counter()
    tuner = Tuner(train, test_dir=test, extractors=BASES, workers=workers)
    runs = {name: tuner.run(**RUNS[name]) for name in names}
    defaults = next(iter(runs.values())).defaults
    best = max(defaults, key=defaults.get)
    row = {
        "indexed": int((~tuner.is_test).sum()),
        "queries": int(tuner.is_test.sum()),
        "naive_script": naive_script(train, test),
        "color_hist_default": defaults["color-hist"],
        "best_single_default": {"extractor": best, "map": defaults[best]},
        "defaults": defaults,
        **{name: {"map": result.held_out.map, "validation_map": result.validation_map, "recipe": result.recipe.to_dict(),
                  "beats_every_default": result.beats_every_default} for name, result in runs.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(dataset, {k: v if not isinstance(v, dict) else v.get("map", "") for k, v in row.items()}, file=sys.stderr)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="coil100,coil20,umist,mnist,animal-mnist")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--runs", default=",".join(RUNS), help="which tuner runs, separated by commas")
    parser.add_argument("--out", type=Path, help="also write the JSON results here")
    args = parser.parse_args()
    names = args.runs.split(",")
    if set(names) - set(RUNS):
        parser.error(f"runs must be among {', '.join(RUNS)}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="visret-quality-") as tmp:
        for dataset in args.datasets.split(","):
            results[dataset] = run(dataset, Path(tmp), args.workers, names)
    emit(results, args.out)


if __name__ == "__main__":
    main()
