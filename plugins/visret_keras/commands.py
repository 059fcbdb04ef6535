"""``visret train`` and ``visret classify``, added by this plugin so the core never imports TensorFlow."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from visret import VisretError


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_command(
        data_dir: Annotated[Path, typer.Argument(help="Labelled folder (ImageFolder layout).")],
        model: Annotated[str, typer.Option(help="cnn/lenet5, cnn/vgg-small, keras/<family> or model:PATH.")] = "cnn/lenet5",
        param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="Network parameter KEY=VALUE.")] = None,
        test_dir: Annotated[Optional[Path], typer.Option(help="Separate labelled test folder (else --test-split).")] = None,
        transfer: Annotated[bool, typer.Option("--transfer", help="Freeze the network, train a new head.")] = False,
        fine_tune: Annotated[Optional[int], typer.Option(help="After transfer, unfreeze the last N layers (0: all).")] = None,
        augment: Annotated[Optional[str], typer.Option(help="e.g. flip=horizontal,rotate=0.1,translate=0.1,zoom=0.1,contrast=0.2,brightness=0.2")] = None,
        mixup: Annotated[Optional[float], typer.Option(help="Mixup with lambda ~ Beta(ALPHA, ALPHA).")] = None,
        balance: Annotated[bool, typer.Option("--balance", help="Weigh classes inversely to their size.")] = False,
        epochs: Annotated[int, typer.Option(min=1)] = 20,
        batch_size: Annotated[int, typer.Option(min=1)] = 32,
        learning_rate: Annotated[float, typer.Option(help="Adam learning rate (fine-tuning uses --fine-tune-rate).")] = 1e-3,
        fine_tune_rate: Annotated[float, typer.Option()] = 1e-5,
        val_split: Annotated[float, typer.Option()] = 0.1,
        test_split: Annotated[float, typer.Option()] = 0.2,
        patience: Annotated[int, typer.Option(min=1, help="Early-stopping patience (epochs).")] = 5,
        tta: Annotated[int, typer.Option(min=0, help="Also report test accuracy with N test-time augmentations.")] = 0,
        out: Annotated[Path, typer.Option(help="Where to save the model (.keras).")] = Path("model.keras"),
        log_dir: Annotated[Optional[Path], typer.Option(help="TensorBoard log directory.")] = None,
        seed: Annotated[int, typer.Option()] = 0,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Train a CNN classifier: from scratch, by transfer learning, or fine-tuned."""
        from visret.params import parse_params
        from visret_keras.training import train

        try:
            params = parse_params(param or [])
        except ValueError as exc:
            raise VisretError(str(exc)) from None
        report = train(
            data_dir, model=model, params=params, test_data=test_dir, transfer=transfer, fine_tune=fine_tune,
            augment=augment, mixup_alpha=mixup, balance=balance, epochs=epochs, batch_size=batch_size,
            learning_rate=learning_rate, fine_tune_rate=fine_tune_rate, val_split=val_split, test_split=test_split,
            patience=patience, tta=tta, out=out, log_dir=log_dir, seed=seed, verbose=0 if as_json else 2,
        )
        if as_json:
            sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
            return
        typer.echo(f"trained {report.epochs} epochs in {report.seconds:.1f} s on {report.sizes['train']} images "
                   f"(validation {report.sizes['val']}, test {report.sizes['test']})")
        if report.test_accuracy is not None:
            typer.echo(f"held-out test accuracy: {report.test_accuracy:.4f}")
        if report.test_accuracy_tta is not None:
            typer.echo(f"held-out test accuracy with {tta} test-time augmentations: {report.test_accuracy_tta:.4f}")
        typer.echo(f"model: {report.model_path}\nsplit: {report.split_path}\ncurves: {report.curves_path}")

    @app.command("classify")
    def classify_command(
        images: Annotated[list[Path], typer.Argument(help="Images to classify.")],
        model: Annotated[Path, typer.Option(help="A model saved by visret train (.keras).")] = Path("model.keras"),
        tta: Annotated[int, typer.Option(min=0, help="Average the posteriors over N random augmentations too.")] = 0,
        top: Annotated[int, typer.Option(min=1, help="Classes shown per image.")] = 3,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Label and class probabilities of each image, by a trained model."""
        from visret.extractor import InputSpec
        from visret.images import ImageReadError, read_image
        from visret_keras.training import _predict, load_classifier, predict_tta, tta_augmenter

        net, classes = load_classifier(model)
        _, height, width, channels = net.input_shape
        spec = InputSpec(mode="L" if channels == 1 else "RGB", size=(height, width))
        batch = []
        for image in images:
            try:
                array = read_image(image, spec)[0]
            except ImageReadError as exc:
                raise VisretError(f"cannot read {image}: {exc}") from None
            batch.append(array if array.ndim == 3 else array[..., None])
        x = np.asarray(batch, np.float32)
        probabilities = predict_tta(_predict(net), x, tta, tta_augmenter(net)) if tta else _predict(net)(x)
        results = []
        for image, row in zip(images, probabilities):
            order = np.argsort(-row)
            results.append({
                "image": str(image),
                "label": classes[order[0]],
                "probabilities": {classes[i]: round(float(row[i]), 6) for i in order[:top]},
            })
        if as_json:
            sys.stdout.write(json.dumps(results, indent=2) + "\n")
            return
        for result in results:
            shown = ", ".join(f"{label} {p:.3f}" for label, p in result["probabilities"].items())
            typer.echo(f"{result['image']}: {result['label']}  ({shown})")
