"""Small real datasets written as image folders, for the demo, tutorials and tests.

``python -m visret.sample_data OUT`` writes scikit-learn's bundled handwritten digits (1,797
8x8 grey images, 10 classes; no download) as PNG files in ImageFolder layout, split into
``OUT/train`` and ``OUT/test`` with a seeded stratified split.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def write_digits(folder: str | Path, test_size: float = 0.25, seed: int = 0, limit: int | None = None) -> Path:
    """Write the digits as ``folder/{train,test}/<digit>/<n>.png``; return ``folder``.

    ``limit`` keeps only the first ``limit`` images of each class (for quick tests).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    rng = np.random.default_rng(seed)
    root = Path(folder)
    for label in np.unique(digits.target):
        members = np.flatnonzero(digits.target == label)[:limit]
        members = rng.permutation(members)
        n_test = max(1, int(round(len(members) * test_size)))
        for part, chosen in (("test", members[:n_test]), ("train", members[n_test:])):
            target = root / part / str(label)
            target.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                Image.fromarray(images[i], mode="L").save(target / f"{i:04d}.png")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--test-size", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = write_digits(args.folder, args.test_size, args.seed)
    print(f"wrote {sum(1 for _ in root.rglob('*.png'))} digit images to {root}/train and {root}/test")


if __name__ == "__main__":
    main()
