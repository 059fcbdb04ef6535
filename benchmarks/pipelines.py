"""Classification pipelines on the project's splits: handcrafted features + heads against k-NN on the
same features and against a CNN trained with augmentation, every row on the same held-out test part.

Run from the repository root: ``.venv/bin/python benchmarks/pipelines.py`` (about an hour on 2
cores; ``--datasets mnist`` for one). Splits from ``benchmarks/datasets.py`` (MNIST test split
8,000 / 2,000, Animal-MNIST 8,000 / 2,000, both seeded stratified 80/20); each pipeline's
validation part is 10 % of the training folder, the test part is never seen by training, early
stopping or the choice of hyper-parameters. Every setting not named here is visret's default.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import materialise  # noqa: E402
from results import emit  # noqa: E402

import visret  # noqa: E402

DIGIT_AUGMENT = "translate=0.08,rotate=0.03,zoom=0.05"  # shifts and small turns a hand-drawn shape keeps
PIPELINES = (
    "pixels+knn",  # the naive approach: raw pixels, nearest neighbours
    "hog+knn",  # k-NN baseline on the same features as the heads below
    "hog+linear-svm",
    "hog+svm",
    "gist+knn",
    "gist+random-forest",
    'combine(parts=["gist","hog"])+svm',
    "cnn/lenet5",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="mnist,animal-mnist")
    parser.add_argument("--pipelines", default=",".join(PIPELINES))
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="visret-pipelines-") as tmp:
        for name in args.datasets.split(","):
            train, test = materialise(name, Path(tmp))

            def progress(stage: str, done: int, total: int, name=name) -> None:
                if done == total:
                    print(f"{name}: {stage} done", file=sys.stderr, flush=True)

            comparison = visret.compare_pipelines(
                train, args.pipelines, test_data=test, epochs=args.epochs, augment=DIGIT_AUGMENT, patience=6,
                progress=progress,
            )
            results[name] = {
                "leaderboard": comparison.rows(),
                "chosen_params": {p: r.params for p, r in comparison.reports.items()},
                "sizes": next(iter(comparison.reports.values())).sizes,
            }
            print(comparison.to_markdown(), file=sys.stderr, flush=True)
    emit(results, args.out)


if __name__ == "__main__":
    main()
