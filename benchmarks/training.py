"""Training quality on the project's splits: LeNet-5 on MNIST, the latent-space claim, COIL-100
with augmentation and TTA, and transfer from Animal-MNIST to 10 % of MNIST's labels.

Run from the repository root: ``.venv/bin/python benchmarks/training.py`` (about 15 minutes on 2 cores).
Test parts are never seen by training, early stopping or model selection.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import emit  # noqa: E402
from datasets import materialise, stratified_test_mask  # noqa: E402

import visret  # noqa: E402
from visret.images._folders import scan_folder  # noqa: E402
from visret.embedding._extraction import extract_records  # noqa: E402

COIL_AUGMENT = "rotate=0.05,translate=0.1,zoom=0.1,contrast=0.2,brightness=0.1"
DIGIT_AUGMENT = "translate=0.08,rotate=0.03,zoom=0.05"  # small shifts and turns a hand-drawn shape keeps


def knn(train_dir: Path, test_dir: Path, extractor: str, params: dict | None = None) -> dict:
    report = visret.evaluate_knn(test_dir, train=train_dir, extractor=extractor, params=params, k=1, at=(10,))
    return {"accuracy_1nn": report.accuracy, "map": report.map, "p_at_10": report.precision_at[10]}


def lenet(train_dir: Path, test_dir: Path, out: Path, epochs: int) -> dict:
    _, report = visret.train_pipeline(
        train_dir, model="cnn/lenet5", test_data=test_dir, augment=DIGIT_AUGMENT, epochs=epochs, batch_size=32,
        patience=6, val_split=0.1, out=out,
    )
    return {"test_accuracy": report.test_accuracy, "training_seconds": report.train_seconds, "epochs": report.epochs, "sizes": report.sizes}


def head_on(train_dir: Path, test_dir: Path, extractor: str, params: dict | None, fraction: float) -> float:
    """Logistic-regression head trained on ``fraction`` of the training labels (seeded, stratified)."""
    ex = visret.get_extractor(extractor, **(params or {}))
    train_records, test_records = scan_folder(train_dir), scan_folder(test_dir)
    labels = np.array([r.label for r in train_records])
    keep = stratified_test_mask(labels, fraction, seed=7)
    chosen = [r for r, k in zip(train_records, keep) if k]
    X_train = extract_records(ex, chosen).features
    X_test = extract_records(ex, test_records).features
    head = visret.get_classifier("logistic", max_iter=2000).fit(X_train, [r.label for r in chosen])
    return float(np.mean(head.predict(X_test) == np.array([r.label for r in test_records])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--coil-epochs", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="visret-train-") as tmp:
        root = Path(tmp)
        mnist_train, mnist_test = materialise("mnist", root)
        animal_train, animal_test = materialise("animal-mnist", root)

        results["lenet5_mnist"] = lenet(mnist_train, mnist_test, root / "mnist.keras", args.epochs)
        print("lenet5_mnist", results["lenet5_mnist"], file=sys.stderr)
        results["lenet5_animal_mnist"] = lenet(animal_train, animal_test, root / "animal.keras", args.epochs)
        print("lenet5_animal", results["lenet5_animal_mnist"], file=sys.stderr)

        pixels = {"size": 28, "mode": "L"}
        results["latent_space_knn"] = {
            "mnist": {"raw_pixels": knn(mnist_train, mnist_test, "pixels", pixels),
                      "lenet5_latent": knn(mnist_train, mnist_test, f"model:{root / 'mnist.keras'}")},
            "animal-mnist": {"raw_pixels": knn(animal_train, animal_test, "pixels", pixels),
                             "lenet5_latent": knn(animal_train, animal_test, f"model:{root / 'animal.keras'}")},
        }
        print("latent", results["latent_space_knn"], file=sys.stderr)

        results["transfer_animal_to_mnist_10pct_labels"] = {
            "logistic_on_raw_pixels": head_on(mnist_train, mnist_test, "pixels", pixels, 0.1),
            "logistic_on_frozen_animal_fen": head_on(mnist_train, mnist_test, f"model:{root / 'animal.keras'}", None, 0.1),
        }
        print("transfer", results["transfer_animal_to_mnist_10pct_labels"], file=sys.stderr)

        coil_train, coil_test = materialise("coil100", root)
        coil = {}
        for name, augment in (("no_augmentation", None), ("augmentation", COIL_AUGMENT)):
            start = time.perf_counter()
            _, report = visret.train_pipeline(
                coil_train, model="cnn/vgg-small", params={"size": 32, "widths": [32, 64, 128]}, test_data=coil_test,
                augment=augment, epochs=args.coil_epochs, batch_size=64, patience=4, tta=8, out=root / f"coil-{name}.keras",
            )
            coil[name] = {"test_accuracy": report.test_accuracy, "test_accuracy_tta8": report.test_accuracy_tta,
                          "epochs": report.epochs, "seconds": time.perf_counter() - start}
            print("coil", name, coil[name], file=sys.stderr)
        results["coil100_angle_split_vgg_small"] = coil
    emit(results, args.out)


if __name__ == "__main__":
    main()
