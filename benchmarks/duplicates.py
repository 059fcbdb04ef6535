"""Duplicate finding: pair precision, recall and F1 per transformation against peers, and scale.

Run from the repository root: ``.venv/bin/python benchmarks/duplicates.py`` (about 10 minutes on 2
cores; the peers need ``pip install imagehash difPy`` in the same environment, and are left out
with a note when missing). ``--part quality`` or ``--part scale`` runs one half.

Quality. Ground truth from the shared datasets: one view of each COIL-100 object (angle 0) and the
first image of each UMIST subject, 120 originals, each with one copy per transformation made
with a seeded random strength: JPEG re-encoding (quality 30-90), resizing (50-200 %), cropping
(2-10 % of the area), turning (-5 to 5 degrees), brightness and contrast (x0.7-1.3 each), grey
conversion, and a horizontal flip (reported apart: a mirror image is a different picture to a
perceptual hash). For each transformation the collection is the originals and their copies
(240 images); for "all but flips" it is the originals and every non-flip copy (840 images). A
true pair is two images of one original; a found pair is two images a tool puts together (one
visret group, one difPy match list, or an ``imagehash`` distance within the threshold).

Scale. Generated 64x64 images (smooth random textures, a duplicate of every 50th) at 10,000 and
100,000: ``visret.find_duplicates`` time and peak memory with ``phash`` at both sizes and with the default
(``gist``, whose extraction alone costs minutes per 10,000) at 10,000, against the all-pairs approach users write (scikit-learn ``pairwise_distances`` on the same phash
codes, then thresholding) at 10,000 in the same run. Peak memory is the measuring process's own
(decoding workers not counted).
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import multiprocessing
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import emit  # noqa: E402

import visret  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
VISRET = str(Path(sys.executable).with_name("visret"))


def _reencode(image, rng):
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(30, 91)))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _resize(image, rng):
    factor = rng.uniform(0.5, 2.0)
    return image.resize((max(8, round(image.width * factor)), max(8, round(image.height * factor))), Image.BICUBIC)


def _crop(image, rng):
    keep = np.sqrt(1 - rng.uniform(0.02, 0.10))  # side kept, so that 2-10 % of the area goes
    w, h = round(image.width * keep), round(image.height * keep)
    left, top = int(rng.integers(0, image.width - w + 1)), int(rng.integers(0, image.height - h + 1))
    return image.crop((left, top, left + w, top + h))


def _turn(image, rng):
    return image.rotate(rng.uniform(-5, 5), resample=Image.BICUBIC)


def _relight(image, rng):
    return ImageEnhance.Contrast(ImageEnhance.Brightness(image).enhance(rng.uniform(0.7, 1.3))).enhance(rng.uniform(0.7, 1.3))


TRANSFORMS = {
    "jpeg": _reencode,
    "resize": _resize,
    "crop": _crop,
    "turn": _turn,
    "light": _relight,
    "grey": lambda image, rng: image.convert("L").convert("RGB"),
    "flip": lambda image, rng: image.transpose(Image.FLIP_LEFT_RIGHT),
}


def originals() -> list[tuple[str, Image.Image]]:
    """The reported ground truth: COIL-100 at angle 0 and the first image of each UMIST subject."""
    coil = [(f"coil-{p.parent.name}", p) for p in sorted((SHARED / "coil100").glob("obj*/obj*__0.png"))]
    umist = [(f"umist-{d.name}", sorted(d.glob("*.pgm"))[0]) for d in sorted((SHARED / "umist").iterdir()) if d.is_dir()]
    return [(name, Image.open(path).convert("RGB")) for name, path in coil + umist]


def calibration_originals() -> list[tuple[str, Image.Image]]:
    """Where the default thresholds were chosen, apart from the reported set: COIL-100 at 180
    degrees (other views of the same objects), COIL-20 at pose 0, the last image of each UMIST subject."""
    coil = [(f"coil-{p.parent.name}", p) for p in sorted((SHARED / "coil100").glob("obj*/obj*__180.png"))]
    coil20 = [(f"coil20-{p.parent.name}", p) for p in sorted((SHARED / "coil20").glob("obj*/obj*__0.png"))]
    umist = [(f"umist-{d.name}", sorted(d.glob("*.pgm"))[-1]) for d in sorted((SHARED / "umist").iterdir()) if d.is_dir()]
    return [(name, Image.open(path).convert("RGB")) for name, path in coil + coil20 + umist]


def write_collection(folder: Path, sources, transforms: list[str], seed: int = 0) -> None:
    """The originals and one copy of each per transformation; file names start with the original's name."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for name, image in sources:
        image.save(folder / f"{name}.png")
        for transform in transforms:
            TRANSFORMS[transform](image, rng).save(folder / f"{name}.{transform}.png")


def family(path: str) -> str:
    return Path(path).name.split(".")[0]


def score(found: set[frozenset], folder: Path) -> dict:
    """Pair precision, recall and F1 of found pairs against the families of ``folder``."""
    files = sorted(str(p) for p in folder.iterdir())
    truth = {frozenset(p) for p in itertools.combinations(files, 2) if family(p[0]) == family(p[1])}
    hits = len(found & truth)
    precision = hits / len(found) if found else 1.0
    recall = hits / len(truth)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "pairs_found": len(found)}


def visret_pairs(folder: Path, **kwargs) -> tuple[set[frozenset], dict]:
    report = visret.find_duplicates(folder, **kwargs)
    pairs = {frozenset(p) for g in report.groups for p in itertools.combinations(g.files, 2)}
    return pairs, {"threshold": report.threshold, "how": report.threshold_how}


def imagehash_pairs(folder: Path, method: str, threshold: int) -> set[frozenset]:
    import imagehash

    hashes = {str(p): getattr(imagehash, method)(Image.open(p)) for p in sorted(folder.iterdir())}
    return {frozenset((a, b)) for (a, ha), (b, hb) in itertools.combinations(hashes.items(), 2) if ha - hb <= threshold}


def difpy_pairs(folder: Path, similarity: str) -> set[frozenset]:
    import difPy

    search = difPy.search(difPy.build(str(folder), show_progress=False), similarity=similarity, show_progress=False)
    pairs = set()
    for key, matches in search.result.items():
        for match in matches:
            pairs.add(frozenset((str(Path(key).resolve()), str(Path(match[0]).resolve()))))
    return pairs


VISRET_METHODS = {
    "visret default (gist, 0.03, colour check)": {},
    "visret gist, automatic threshold": {"auto_threshold": True},
    "visret gist, no colour check": {"colour_check": False},
    "visret phash (10 bits)": {"extractor": "phash"},
    "visret phash, automatic threshold": {"extractor": "phash", "auto_threshold": True},
    "visret dhash (2 bits)": {"extractor": "dhash"},
    "visret whash (2 bits)": {"extractor": "whash"},
}
PEERS = {f"imagehash {m} <= {t}": ("imagehash", m, t) for m in ("phash", "dhash", "whash") for t in (4, 8, 12)}
PEERS |= {"difPy default (duplicates)": ("difpy", "duplicates", None), "difPy similar": ("difpy", "similar", None)}


def quality(root: Path, picture: Path | None = None) -> dict:
    sources = originals()
    collections = {t: [t] for t in TRANSFORMS} | {"all but flips": [t for t in TRANSFORMS if t != "flip"]}
    results: dict = {"originals": len(sources), "collections": {}}
    for label, transforms in collections.items():
        folder = root / re.sub(r"\W+", "-", label)
        write_collection(folder, sources, transforms)
        rows = {}
        for method, kwargs in VISRET_METHODS.items():
            pairs, how = visret_pairs(folder, workers=1, **kwargs)
            rows[method] = score(pairs, folder) | how
        for method, (tool, a, b) in PEERS.items():
            try:
                pairs = imagehash_pairs(folder, a, b) if tool == "imagehash" else difpy_pairs(folder, a)
            except ImportError:
                rows[method] = "not installed"
                continue
            rows[method] = score({frozenset(str(Path(x).resolve()) for x in p) for p in pairs}, folder)
        results["collections"][label] = {"images": len(list(folder.iterdir())), "rows": rows}
        print(label, json.dumps({m: r.get("f1") if isinstance(r, dict) else r for m, r in rows.items()}), file=sys.stderr)
    if picture is not None:
        draw_distances(root / "picture", sources, picture)
    return results


def draw_distances(folder: Path, sources, picture: Path) -> None:
    """The default's nearest-neighbour distances where half the originals have copies (every
    non-flip one) and half have none, so that both populations and the gap show."""
    from visret.reports.plots import save_distance_histogram

    half = len(sources) // 2
    write_collection(folder, sources[:half], [t for t in TRANSFORMS if t != "flip"])
    for name, image in sources[half:]:
        image.save(folder / f"{name}.png")
    report = visret.find_duplicates(folder, workers=2)
    save_distance_histogram(report.nearest, report.threshold, report.distance, picture)


#: Thresholds tried per extractor. ``keras/squeezenet`` (ImageNet features, cosine distance) is tried
#: as a candidate default: its best F1 (0.881 at 0.04) stays below GIST's (0.992), so GIST stays.
CALIBRATED = {"gist": [0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.05], "phash": [2, 4, 6, 8, 10, 12],
              "dhash": [2, 4, 6, 8, 10, 12], "ahash": [2, 4, 6, 8], "whash": [2, 4, 6, 8],
              "keras/squeezenet": [0.02, 0.03, 0.04, 0.05, 0.06, 0.08]}


def calibrate(root: Path) -> dict:
    """Pair F1 on the calibration set (all transformations but flips, seed 1) for each threshold."""
    from visret.images._folders import scan_folder
    from visret.duplicates.find import _group
    from visret.embedding._extraction import extract_records

    folder = root / "calibration"
    write_collection(folder, calibration_originals(), [t for t in TRANSFORMS if t != "flip"], seed=1)
    results = {}
    for name, values in CALIBRATED.items():
        extractor = visret.get_extractor(name)
        found = extract_records(extractor, scan_folder(folder), workers=2)
        paths = [str(r.path) for r in found.records]
        results[name] = {}
        for value in values:
            report = _group(paths, found.hashes, found.features, extractor, value, False, "first", 0, None, (10**9, 2**29))
            results[name][value] = score({frozenset(p) for g in report.groups for p in itertools.combinations(g.files, 2)}, folder)["f1"]
        print(name, json.dumps(results[name]), file=sys.stderr)
    return results


def _texture(args: tuple[Path, int, int]) -> None:
    folder, start, stop = args
    for i in range(start, stop):
        rng = np.random.default_rng(i // 50 * 50 if i % 50 == 1 else i)  # every 50th image has a twin
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((64, 64), Image.BICUBIC)
        if i % 50 == 1:
            image = ImageEnhance.Brightness(image).enhance(1.1)
        image.save(folder / f"{i:06d}.png", compress_level=1)


def generate(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    with multiprocessing.get_context("forkserver").Pool(2) as pool:
        pool.map(_texture, [(folder, s, min(s + 5000, n)) for s in range(0, n, 5000)])


ALL_PAIRS = """
import resource, sys, time
import numpy as np
from sklearn.metrics import pairwise_distances
import visret
from visret.images._folders import scan_folder
from visret.embedding._extraction import extract_records
start = time.perf_counter()
codes = extract_records(visret.get_extractor("phash"), scan_folder(sys.argv[1]), workers=2).features.astype(bool)
distances = pairwise_distances(codes, metric="hamming") * codes.shape[1]
i, j = np.nonzero(np.triu(distances <= 7, k=1))
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, len(i))
"""

VISRET_RUN = """
import resource, sys, time
import visret
start = time.perf_counter()
report = visret.find_duplicates(sys.argv[1], extractor=sys.argv[2], workers=2)
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, len(report.pairs))
"""


def _measure(script: str, *args: str) -> dict:
    seconds, peak, pairs = subprocess.run([sys.executable, "-c", script, *args], check=True, capture_output=True, text=True).stdout.split()
    return {"seconds": round(float(seconds), 1), "peak_rss_mib": round(int(peak) / 2**20), "pairs": int(pairs)}


def scale(root: Path, sizes: list[int]) -> dict:
    results = {}
    for n in sizes:
        folder = root / f"generated-{n}"
        generate(folder, n)
        row = {f"visret {name}": _measure(VISRET_RUN, str(folder), name) for name in ("gist", "phash") if name == "phash" or n <= 10_000}
        if n <= 10_000:
            row["all_pairs_sklearn (phash)"] = _measure(ALL_PAIRS, str(folder))
        results[n] = row
        print(n, json.dumps(row), file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("quality", "scale", "both", "calibrate", "picture"), default="both")
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--out", type=Path, help="also write the JSON results here")
    parser.add_argument("--picture", type=Path, help="draw the default's nearest-neighbour distances here (half the originals with copies)")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="visret-duplicates-") as tmp:
        if args.part == "calibrate":
            results["calibration"] = calibrate(Path(tmp))
        if args.part == "picture" and args.picture is not None:
            draw_distances(Path(tmp) / "picture", originals(), args.picture)
        if args.part in ("quality", "both"):
            results["quality"] = quality(Path(tmp), args.picture)
        if args.part in ("scale", "both"):
            results["scale"] = scale(Path(tmp), [int(s) for s in args.sizes.split(",")])
    emit(results, args.out)


if __name__ == "__main__":
    main()
