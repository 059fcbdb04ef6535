"""Quality of every handcrafted extractor, and of a tuned ``combine``, on the project's fair splits.

Run from the repository root: ``.venv/bin/python benchmarks/handcrafted.py`` (about 25 minutes on 2 cores).
For each dataset (see ``datasets.py`` for the splits): 1-NN accuracy, mAP over the full ranking
and precision@10 of each extractor, computed by visret's own pipeline (extraction, FAISS, metrics).

The ``combine`` is tuned without looking at the test part: greedy forward selection of parts and
block weights on a validation split carved from the indexed part (seeded, stratified 25 %),
scored by validation mAP. The chosen ``combine`` is then built as a real extractor and run
through the pipeline on train and test like the others.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import emit  # noqa: E402
from datasets import materialise, stratified_test_mask  # noqa: E402

import visret  # noqa: E402
from visret.dataset import scan_folder  # noqa: E402
from visret.extraction import extract_records  # noqa: E402
from visret.fitting import fit_extractor  # noqa: E402
from visret.plugins import extractor_from_spec  # noqa: E402
from visret.normalization import rows_l2  # noqa: E402

EXTRACTORS = {
    "pixels": "pixels",
    "color-hist": "color-hist",
    "color-moments": "color-moments",
    "color-correlogram": "color-correlogram",
    "hog": "hog",
    "lbp": {"name": "lbp", "params": {"points": [8, 16], "radius": [1, 2], "grid": 2}},
    "glcm": {"name": "post", "params": {"extractor": "glcm", "steps": ["standardize"]}},
    "gabor": "gabor",
    "gist": "gist",
    "shape": {"name": "post", "params": {"extractor": "shape", "steps": ["standardize"]}},
    "edges": "edges",
    "bovw-sift": {"name": "bovw", "params": {"descriptor": "sift", "words": 64}},
    "bovw-daisy": {"name": "bovw", "params": {"descriptor": "daisy", "words": 64}},
}
WEIGHTS = (0.25, 0.5, 1.0, 2.0)


def features(spec, train, test, workers):
    extractor = extractor_from_spec(spec)
    if extractor.requires_fit:
        fit_extractor(extractor, train, max_pixels=10**9)
    X_train = extract_records(extractor, train, workers=workers).features
    X_test = extract_records(extractor, test, workers=workers).features
    return X_train, X_test


def scores(report) -> dict:
    return {"accuracy_1nn": report.accuracy, "map": report.map, "p_at_10": report.precision_at[10]}


def evaluate(X_train, y_train, X_test, y_test) -> dict:
    return scores(visret.evaluate_features(X_train, y_train, X_test, y_test, k=1, at=(10,)))


def tune_combine(blocks: dict[str, np.ndarray], labels: np.ndarray, max_parts: int = 5) -> list[tuple[str, float]]:
    """Greedy forward selection of (part, weight) by mAP on a validation split of the indexed part."""
    val = stratified_test_mask(labels, 0.25, seed=1)
    normed = {name: rows_l2(X.astype(np.float32)) for name, X in blocks.items()}

    def val_map(chosen):
        X = np.concatenate([normed[name] * w for name, w in chosen], axis=1)
        return visret.evaluate_features(X[~val], labels[~val], X[val], labels[val], k=1, at=(10,)).map

    chosen, best = [], -1.0
    while len(chosen) < max_parts:
        trials = [(val_map(chosen + [(name, w)]), name, w) for name in normed if name not in dict(chosen) for w in (WEIGHTS if chosen else (1.0,))]
        score, name, weight = max(trials)
        if score <= best + 0.002:
            break
        chosen.append((name, weight))
        best = score
        print(f"    + {name} x{weight}: validation mAP {score:.4f}", file=sys.stderr)
    return chosen


def run(dataset: str, root: Path, workers: int) -> dict:
    train_dir, test_dir = materialise(dataset, root)
    train, test = scan_folder(train_dir), scan_folder(test_dir)
    y_train = np.array([r.label for r in train])
    y_test = np.array([r.label for r in test])
    rows, blocks = {}, {}
    for name, spec in EXTRACTORS.items():
        X_train, X_test = features(spec, train, test, workers)
        rows[name] = evaluate(X_train, y_train, X_test, y_test)
        blocks[name] = X_train
        print(f"  {dataset} {name}: {rows[name]}", file=sys.stderr)
    chosen = tune_combine(blocks, y_train)
    spec = {
        "name": "combine",
        "params": {"parts": [EXTRACTORS[name] for name, _ in chosen], "weights": [w for _, w in chosen]},
    }
    X_train, X_test = features(spec, train, test, workers)
    combined = {**evaluate(X_train, y_train, X_test, y_test), "parts": dict(chosen)}
    rows["combine (tuned)"] = combined
    singles = [rows[name]["map"] for name, _ in chosen] + [rows["pixels"]["map"]]
    combined["beats_pixels_and_its_parts_on_map"] = bool(combined["map"] > max(singles))
    print(f"  {dataset} combine: {combined}", file=sys.stderr)
    return {"train": len(train), "test": len(test), "combine_spec": spec, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="coil100,coil20,umist,animal-mnist")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--out", type=Path, help="also write the JSON results here")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="visret-bench-") as tmp:
        for dataset in args.datasets.split(","):
            results[dataset] = run(dataset, Path(tmp), args.workers)
    emit(results, args.out)


if __name__ == "__main__":
    main()
