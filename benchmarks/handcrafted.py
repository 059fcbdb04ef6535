"""Quality of every handcrafted extractor at its defaults on the project's fair splits (the leaderboard).

Run from the repository root: ``.venv/bin/python benchmarks/handcrafted.py`` (about an hour on 2 cores).
For each dataset (see ``datasets.py`` for the splits): 1-NN accuracy, mAP over the full ranking
and precision@10 of each extractor at its defaults, computed by visret's own pipeline (extraction,
exact search, metrics). Tuned recipes (the tuner, re-ranking, supervised steps) are measured by
``quality.py``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import emit  # noqa: E402
from datasets import materialise  # noqa: E402

import visret  # noqa: E402

EXTRACTORS = {
    "pixels": "pixels",
    "color-hist": "color-hist",
    "color-moments": "color-moments",
    "color-correlogram": "color-correlogram",
    "hog": "hog",
    "lbp": "lbp",
    "lbp (8,16 points, 2x2 grid)": {"name": "lbp", "params": {"points": [8, 16], "radius": [1, 2], "grid": 2}},
    "glcm": "glcm",
    "gabor": "gabor",
    "gist": "gist",
    "shape": "shape",
    "edges": "edges",
    "bovw-sift": "bovw",
    "bovw-daisy": {"name": "bovw", "params": {"descriptor": "daisy"}},
    "combine (color-hist, lbp, hog; auto weights)": "combine",
}


def features(spec, train_dir, test_dir, workers):
    """Features of both parts, a learning extractor fitted on the training part only."""
    extractor = visret.get_extractor(spec) if isinstance(spec, str) else visret.from_config(spec)
    X_train, train = visret.embed_folder(train_dir, extractor, workers=workers, max_pixels=10**9)
    X_test, test = visret.embed_folder(test_dir, extractor, workers=workers, max_pixels=10**9, fit=False)
    return X_train, np.array([r.label for r in train]), X_test, np.array([r.label for r in test])


def scores(report) -> dict:
    return {"accuracy_1nn": report.accuracy, "map": report.map, "p_at_10": report.precision_at[10]}


def evaluate(X_train, y_train, X_test, y_test) -> dict:
    return scores(visret.evaluate_features(X_train, y_train, X_test, y_test, k=1, at=(10,)))


def run(dataset: str, root: Path, workers: int, names: list[str]) -> dict:
    train_dir, test_dir = materialise(dataset, root)
    rows, sizes = {}, (0, 0)
    for name in names:
        X_train, y_train, X_test, y_test = features(EXTRACTORS[name], train_dir, test_dir, workers)
        rows[name] = evaluate(X_train, y_train, X_test, y_test)
        sizes = (len(y_train), len(y_test))
        print(f"  {dataset} {name}: {rows[name]}", file=sys.stderr)
    return {"train": sizes[0], "test": sizes[1], "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="coil100,coil20,umist,animal-mnist")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--rows", help="only these rows, by name, separated by ';' (e.g. 'color-hist;lbp')")
    parser.add_argument("--out", type=Path, help="also write the JSON results here")
    args = parser.parse_args()
    names = args.rows.split(";") if args.rows else list(EXTRACTORS)
    unknown = sorted(set(names) - set(EXTRACTORS))
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {list(EXTRACTORS)}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="visret-bench-") as tmp:
        for dataset in args.datasets.split(","):
            results[dataset] = run(dataset, Path(tmp), args.workers, names)
    emit(results, args.out)


if __name__ == "__main__":
    main()
