"""The evidence behind the defaults of issue #11: normalisations, colour-histogram bins, combine weights.

Run from the repository root: ``.venv/bin/python benchmarks/defaults.py`` (about 40 minutes on 2 cores).
On each fair split (``datasets.py``), mAP over the full ranking of the held-out queries for:

- every ``norm`` of each histogram-type extractor (its raw output extracted once, with
  ``norm=none``; a ``norm`` is the extractor's last step, so it is applied to those features);
- ``color-hist`` bins and image sizes with power 0.3 normalisation;
- ``combine`` of ``color-hist,lbp,hog`` (each at its new default) with equal weights and with
  weights from each block's validation mAP (a split of the indexed part only) to the power 1, 2, 4.

A default was kept where it helps on most datasets and hurts none much.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import materialise  # noqa: E402
from results import emit  # noqa: E402

import visret  # noqa: E402
from visret.images._folders import scan_folder  # noqa: E402
from visret.embedding._extraction import extract_records  # noqa: E402
from visret.embedding._fitting import fit_extractor  # noqa: E402
from visret.features.normalization import normalize  # noqa: E402
from visret.evaluation._protocols import stratified_test_mask  # noqa: E402

NORMS = ("none", "l1", "l2", "hellinger", "power:0.3", "power:0.5")
HISTOGRAMS = {
    "color-hist (8x4x4)": {"name": "color-hist", "params": {"bins": [8, 4, 4], "norm": "none"}},
    "lbp": {"name": "lbp", "params": {"norm": "none"}},
    "color-correlogram": {"name": "color-correlogram", "params": {"norm": "none"}},
    "edges": {"name": "edges", "params": {"norm": "none"}},
    "bovw (sift)": {"name": "bovw", "params": {"norm": "none"}},
}
BINS = ((8, 4, 4), (8, 8, 8), (16, 4, 4), (16, 8, 8), (16, 8, 16), (16, 16, 16))


def features(spec, train, test, workers):
    extractor = visret.features._lookup.extractor_from_spec(spec)
    if extractor.requires_fit:
        fit_extractor(extractor, train)
    return extract_records(extractor, train, workers=workers).features, extract_records(extractor, test, workers=workers).features


def score(train_x, y, test_x, yq) -> float:
    return round(visret.evaluate_features(train_x, y, test_x, yq, k=1, at=(10,)).map, 4)


def run(dataset: str, root: Path, workers: int | None) -> dict:
    train_dir, test_dir = materialise(dataset, root)
    train, test = scan_folder(train_dir), scan_folder(test_dir)
    y, yq = np.array([r.label for r in train]), np.array([r.label for r in test])
    out: dict = {"norms": {}, "color_hist_bins": {}, "combine": {}}
    for name, spec in HISTOGRAMS.items():
        X, Q = features(spec, train, test, workers)
        out["norms"][name] = {norm: score(normalize(X, norm), y, normalize(Q, norm), yq) for norm in NORMS}
        print(dataset, name, out["norms"][name], file=sys.stderr)
    for size in (64, 128):
        for bins in BINS:
            X, Q = features({"name": "color-hist", "params": {"bins": list(bins), "size": size}}, train, test, workers)
            out["color_hist_bins"][f"{'x'.join(map(str, bins))} at {size}"] = score(X, y, Q, yq)
    print(dataset, out["color_hist_bins"], file=sys.stderr)
    blocks = {name: features(name, train, test, workers) for name in ("color-hist", "lbp", "hog")}
    out["combine"]["single"] = {name: score(X, y, Q, yq) for name, (X, Q) in blocks.items()}
    val = stratified_test_mask(y, 0.25, seed=0)
    validation = {name: visret.evaluate_features(X[~val], y[~val], X[val], y[val], k=1, at=(1,)).map for name, (X, _) in blocks.items()}
    for scheme, power in (("equal", 0), ("validation mAP", 1), ("validation mAP^2", 2), ("validation mAP^4", 4)):
        w = {name: validation[name] ** power for name in blocks}
        X = np.concatenate([normalize(X, "l2") * w[name] for name, (X, _) in blocks.items()], axis=1)
        Q = np.concatenate([normalize(Q, "l2") * w[name] for name, (_, Q) in blocks.items()], axis=1)
        out["combine"][scheme] = score(X, y, Q, yq)
    print(dataset, out["combine"], file=sys.stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="coil100,coil20,umist,mnist,animal-mnist")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--out", type=Path, help="also write the JSON results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="visret-defaults-") as tmp:
        emit({dataset: run(dataset, Path(tmp), args.workers) for dataset in args.datasets.split(",")}, args.out)


if __name__ == "__main__":
    main()
