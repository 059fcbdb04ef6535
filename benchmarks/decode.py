"""Decoding phone-sized photos: visret's reader against a plain Pillow decode and resize.

Run from the repository root: ``.venv/bin/python benchmarks/decode.py`` (about a minute). Writes
12-megapixel JPEGs (4000x3000, quality 92, about 4 MB: a real photo from scikit-image scaled up,
with sensor-like noise) and a 4000x3000 PNG, then times, per file, in one process:

- baseline: ``Image.open(path).convert("RGB").resize((s, s), BILINEAR)`` on the full image;
- visret: ``visret.images._decode.read_image(path, InputSpec("RGB", (s, s)))`` (file checks, hashing, JPEG
  DCT-domain reduction, EXIF orientation, stepwise resize);

for target sizes 64, 128 and 224; and how far visret's result is from the baseline's (mean
absolute difference in grey levels).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as samples

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import emit  # noqa: E402

from visret.features._extractor import InputSpec  # noqa: E402
from visret.images._decode import read_image  # noqa: E402


def photo(seed: int) -> Image.Image:
    base = Image.fromarray(samples.chelsea() if seed % 2 else samples.astronaut()).resize((4000, 3000), Image.Resampling.BICUBIC)
    noise = np.random.default_rng(seed).normal(0, 6, (3000, 4000, 3))
    return Image.fromarray(np.clip(np.asarray(base, np.float64) + noise, 0, 255).astype(np.uint8))


def timed(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="visret-decode-") as tmp:
        files = []
        for i in range(args.files):
            path = Path(tmp) / f"photo{i}.jpg"
            photo(i).save(path, quality=92)
            files.append(path)
        png = Path(tmp) / "photo.png"
        photo(99).save(png, compress_level=1)
        results["jpeg_mib"] = round(statistics.mean(f.stat().st_size for f in files) / 2**20, 2)
        for kind, paths in (("jpeg", files), ("png", [png])):
            for size in (64, 128, 224):
                baseline, ours, gaps = [], [], []
                for path in paths:
                    def plain():
                        with Image.open(path) as image:
                            return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))

                    t_plain, reference = timed(plain, args.repeats)
                    t_ours, (array, _) = timed(lambda: read_image(path, InputSpec("RGB", (size, size))), args.repeats)
                    baseline.append(t_plain)
                    ours.append(t_ours)
                    gaps.append(float(np.abs(array.astype(np.int16) - reference.astype(np.int16)).mean()))
                row = {
                    "baseline_ms": round(1000 * statistics.mean(baseline), 1),
                    "visret_ms": round(1000 * statistics.mean(ours), 1),
                    "speed_up": round(statistics.mean(baseline) / statistics.mean(ours), 2),
                    "mean_abs_difference": round(statistics.mean(gaps), 2),
                }
                results[f"{kind}_{size}"] = row
                print(kind, size, row, file=sys.stderr)
    emit(results, args.out)


if __name__ == "__main__":
    main()
