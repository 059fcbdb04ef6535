"""Pretrained deep features (issue #24): the defaults on every shared dataset, and the flowers table.

Run from the repository root: ``.venv/bin/python benchmarks/pretrained.py --parts defaults`` (about 15
minutes on 2 cores), ``--parts flowers`` (about 40 minutes a split; ``--splits 1,2,3`` for the mean
of three), ``--parts cost`` (2 minutes). Splits from ``datasets.py``; every number is measured on the
held-out part, which nothing is fitted, tuned or stopped on.

- ``defaults``: held-out mAP (whole ranking) of the naive script (HSV 8x8x8 on 64x64, square root,
  L2), ``color-hist``, ``keras/squeezenet`` at their defaults, and ``visret index`` + ``visret
  evaluate`` with no options at all (``build_index`` and ``evaluate_knn``, as the CLI calls them).
- ``flowers``: on Oxford 17 Flowers, the default's mAP; the tuner without labels (re-ranking
  allowed) and with labels; SqueezeNet features with each head; SqueezeNet trained for the task
  (transfer learning, then its top fire modules fine-tuned, with augmentation); the handcrafted
  ``combine`` + ``svm`` pipeline at its defaults.
- ``cost``: images/s of ``visret index`` on flowers split1's 1,020 images with ``color-hist``, the default and
  each network that needs no download (its graph derived beforehand, untimed); a cold ``visret query`` (a new
  process) on each index: seconds and peak RSS, three runs after one that warms the page cache.
- ``networks``: held-out mAP of SqueezeNet, EfficientNet-Lite0 and Lite2, alone and in the default's recipe
  beside the colour histogram (each block L2-normalised, the histogram at 0.3), on every shared dataset
  (``--datasets``).
- ``frozen``: flowers, the EfficientNet-Lite2 pipelines with the logistic and RBF SVM heads, on ``--splits``.
- ``tuner``: flowers, ``visret tune`` with labels at its default bases, on ``--splits``: held-out mAP.
- ``train-default``: ``visret train``'s default pipeline before (SqueezeNet + linear SVM) and after
  (EfficientNet-Lite2 + logistic regression) on ``--datasets``: held-out accuracy and seconds of training and testing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cold import cold_query  # noqa: E402
from datasets import materialise  # noqa: E402
from quality import naive_script  # noqa: E402
from results import emit  # noqa: E402

import visret  # noqa: E402
from visret.images._folders import scan_folder  # noqa: E402
from visret.embedding._extraction import extract_records  # noqa: E402
from visret.evaluation._tuning import BASES, Tuner  # noqa: E402
from visret.features.normalization import normalize  # noqa: E402

DATASETS = "flowers,flowers:2,flowers:3,coil100,coil20,umist,mnist,animal-mnist"
HEADS = ("linear-svm", "logistic", "svm")
FLOWER_AUGMENT = "flip=horizontal,rotate=0.05,zoom=0.15,translate=0.1,contrast=0.2"
FINE_TUNE = {"transfer": True, "fine_tune": 17, "epochs": 30, "fine_tune_epochs": 20, "fine_tune_rate": 1e-4, "patience": 6,
             "augment": FLOWER_AUGMENT}  # the head first, then fire6-fire9 (17 layers) at a tenth of the rate


def held_out_map(spec, train: Path, test: Path) -> float:
    extractor = visret.features._lookup.extractor_from_spec(spec)
    a, b = extract_records(extractor, scan_folder(train)), extract_records(extractor, scan_folder(test))
    return visret.evaluate_features(a.features, [r.label for r in a.records], b.features, [r.label for r in b.records]).map


def default_map(train: Path, test: Path, scratch: Path) -> float:
    """``visret index TRAIN`` then ``visret evaluate TEST``, no options."""
    with visret.build_index(train, index=scratch / "default") as index:
        return visret.evaluate_knn(test, index).map


def defaults(name: str, root: Path) -> dict:
    train, test = materialise(name, root)
    started = time.perf_counter()
    row = {
        "naive_script": naive_script(train, test),
        "color-hist": held_out_map("color-hist", train, test),
        "keras/squeezenet": held_out_map("keras/squeezenet", train, test),
        "visret index + evaluate, no options": default_map(train, test, root / name.replace(":", "-")),
    }
    row["seconds"] = round(time.perf_counter() - started, 1)
    print(name, row, file=sys.stderr, flush=True)
    return row


def flowers(split: int, root: Path, bases: list[str], workers: int | None) -> dict:
    name = "flowers" if split == 1 else f"flowers:{split}"
    train, test = materialise(name, root)
    row: dict = {"default_map": default_map(train, test, root / f"flowers-{split}")}
    tuner = Tuner(train, test_dir=test, extractors=bases, workers=workers)
    for label, options in (("tuned_unsupervised_rerank", {"supervised": False, "rerank": True}),
                           ("tuned_supervised", {"supervised": True, "rerank": True})):
        result = tuner.run(**options)
        row[label] = {"map": result.held_out.map, "accuracy_1nn": result.held_out.accuracy, "recipe": result.recipe.to_dict()}
        print(name, label, row[label]["map"], file=sys.stderr, flush=True)
    pipelines = [f"keras/squeezenet+{head}" for head in HEADS] + ["combine+svm"]
    comparison = visret.compare_pipelines(train, ",".join(pipelines), test_data=test)
    row["pipelines"] = {p: {"accuracy": r.test_accuracy, "chosen": r.params} for p, r in comparison.reports.items()}
    print(name, {p: v["accuracy"] for p, v in row["pipelines"].items()}, file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        _, report = visret.train_pipeline(train, model="keras/squeezenet", test_data=test, out=Path(tmp) / "sq.keras", **FINE_TUNE)
    row["fine_tuned"] = {"accuracy": report.test_accuracy, "epochs": report.epochs, "seconds": round(time.perf_counter() - started, 1),
                         "settings": FINE_TUNE}
    print(name, "fine-tuned", report.test_accuracy, file=sys.stderr, flush=True)
    return row


OFFLINE_NETWORKS = ("keras/squeezenet", "keras/efficientnet_lite0", "keras/efficientnet_lite1", "keras/efficientnet_lite2")
#: The networks ``--parts networks`` measures on every dataset (Lite1 sits between Lite0 and Lite2 in cost).
NETWORK_SWEEP = ("keras/squeezenet", "keras/efficientnet_lite0", "keras/efficientnet_lite2")


def cost(root: Path) -> dict:
    train, test = materialise("flowers", root)
    out = {}
    image = next(iter(scan_folder(test))).path
    for network in OFFLINE_NETWORKS:  # graphs derived once, before anything is timed
        visret.embed_images([image], visret.get_extractor(network))
        visret.get_extractor(network).get_state()
    for label, extractor in (("color-hist", "color-hist"), ("default", None), *((n, n) for n in OFFLINE_NETWORKS)):
        index = root / f"cost-{label.replace('/', '-')}"
        start = time.perf_counter()
        visret.build_index(train, *([extractor] if extractor else []), index=index).close()
        seconds = time.perf_counter() - start
        cold_query(index, image)  # the first call warms the page cache
        out[label] = {"index_images_per_s": round(1020 / seconds, 1), "cold_query": [cold_query(index, image) for _ in range(3)]}
        print(label, out[label], file=sys.stderr, flush=True)
    return out


def networks(name: str, root: Path) -> dict:
    """Each network alone, and beside the colour histogram as the default combines them (each block L2-normalised,
    the histogram at 0.3), computed from the parts' features extracted once."""
    train, test = materialise(name, root)
    records = {part: scan_folder(folder) for part, folder in (("train", train), ("test", test))}

    def features(spec) -> dict:
        extractor = visret.features._lookup.extractor_from_spec(spec)
        return {part: extract_records(extractor, records[part]) for part in records}

    def held_out(blocks: list[tuple[dict, float]]) -> float:
        a, b = ([normalize(found[part].features, "l2") * weight for found, weight in blocks] for part in ("train", "test"))
        labels = [[r.label for r in blocks[0][0][part].records] for part in ("train", "test")]
        return round(visret.evaluate_features(np.hstack(a), labels[0], np.hstack(b), labels[1]).map, 4)

    colour = features("color-hist")
    row = {"color-hist": held_out([(colour, 1.0)])}
    for network in NETWORK_SWEEP:
        found = features(network)
        row[network], row[f"{network} + 0.3 x color-hist"] = held_out([(found, 1.0)]), held_out([(found, 1.0), (colour, 0.3)])
        print(name, network, row[network], row[f"{network} + 0.3 x color-hist"], file=sys.stderr, flush=True)
    return row


def frozen(split: int, root: Path) -> dict:
    train, test = materialise("flowers" if split == 1 else f"flowers:{split}", root)
    comparison = visret.compare_pipelines(train, "keras/efficientnet_lite2+logistic,keras/efficientnet_lite2+svm", test_data=test)
    row = {p: r.test_accuracy for p, r in comparison.reports.items()}
    print("flowers split", split, row, file=sys.stderr, flush=True)
    return row


def tuner(split: int, root: Path, bases: list[str], workers: int | None) -> dict:
    train, test = materialise("flowers" if split == 1 else f"flowers:{split}", root)
    started = time.perf_counter()
    result = Tuner(train, test_dir=test, extractors=bases, workers=workers).run(supervised=True, rerank=True)
    row = {"map": round(result.held_out.map, 4), "accuracy_1nn": round(result.held_out.accuracy, 4),
           "recipe": result.recipe.to_dict(), "seconds": round(time.perf_counter() - started, 1)}
    print("flowers split", split, "tuner with labels", row["map"], row["seconds"], file=sys.stderr, flush=True)
    return row


def train_default(name: str, root: Path) -> dict:
    train, test = materialise(name, root)
    row = {}
    for pipeline in ("keras/squeezenet+linear-svm", "keras/efficientnet_lite2+logistic"):
        started = time.perf_counter()
        report = visret.compare_pipelines(train, pipeline, test_data=test).reports[pipeline]
        row[pipeline] = {"accuracy": round(report.test_accuracy, 4), "seconds": round(time.perf_counter() - started, 1)}
        print(name, pipeline, row[pipeline], file=sys.stderr, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="defaults,flowers,cost")
    parser.add_argument("--datasets", default=DATASETS, help="for --parts defaults")
    parser.add_argument("--splits", default="1", help="flowers splits for --parts flowers, e.g. 1,2,3")
    parser.add_argument("--bases", default=",".join(BASES), help="the tuner's base extractors")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="visret-pretrained-") as tmp:
        root = Path(tmp)
        parts = args.parts.split(",")
        if "defaults" in parts:
            results["defaults"] = {name: defaults(name, root) for name in args.datasets.split(",")}
        if "flowers" in parts:
            results["flowers"] = {s: flowers(int(s), root, args.bases.split(","), args.workers) for s in args.splits.split(",")}
        if "cost" in parts:
            results["cost"] = cost(root)
        if "networks" in parts:
            results["networks"] = {name: networks(name, root) for name in args.datasets.split(",")}
        if "frozen" in parts:
            results["frozen"] = {s: frozen(int(s), root) for s in args.splits.split(",")}
        if "tuner" in parts:
            results["tuner"] = {s: tuner(int(s), root, args.bases.split(","), args.workers) for s in args.splits.split(",")}
        if "train-default" in parts:
            results["train_default"] = {name: train_default(name, root) for name in args.datasets.split(",")}
    emit(results, args.out)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
