"""``visret train`` and ``visret classify``, and the pipeline mode of ``visret compare``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from visret.cli._options import Workers
from visret.cli.console import ProgressBar, err, out, parse_cli_params, pictures_written, print_json, print_leaderboard, shown
from visret.errors import VisretError

#: Short column names of the pipeline leaderboard in a terminal.
HEADERS = {
    "accuracy": "acc", "balanced_accuracy": "bal acc", "macro_f1": "macro-F1", "train_s": "train s",
    "inference_img_s": "img/s", "model_bytes": "MiB", "accuracy_tta": "acc TTA",
}
#: Images drawn at most in a ``--montage``.
MONTAGE_LIMIT = 48

Augment = Annotated[Optional[str], typer.Option(help="CNN augmentation, e.g. flip=horizontal,rotate=0.1,translate=0.1,zoom=0.1,contrast=0.2,brightness=0.2.")]
Mixup = Annotated[Optional[float], typer.Option(help="CNN mixup with lambda ~ Beta(ALPHA, ALPHA).")]
Epochs = Annotated[Optional[int], typer.Option(min=1, help="CNN epochs of the first phase: all of training, or the new head's with --transfer/--fine-tune [default: 20].")]
FineTuneEpochs = Annotated[Optional[int], typer.Option(min=1, help="CNN epochs of fine-tuning, after the head's [default: as many as --epochs].")]
BudgetMinutes = Annotated[Optional[float], typer.Option(help="Stop training at the end of the last epoch that fits in this many minutes; the best model so far is saved, tested and reported, and --resume goes on later.")]
Resume = Annotated[bool, typer.Option("--resume", help="CNN: insist on taking up an unfinished run (killed, or stopped by --budget-minutes); the same command run again takes it up anyway.")]
Tta = Annotated[int, typer.Option(min=0, help="Also test with N test-time augmentations (shifts, crops; flips when trained on them).")]
TestDir = Annotated[Optional[Path], typer.Option(help="Separate labelled test folder [default: a seeded --test-split of DATA, or DATA/test].")]
ValSplit = Annotated[float, typer.Option(help="Validation share of each class (hyper-parameters, early stopping).")]
TestSplit = Annotated[float, typer.Option(help="Test share of each class when there is no test folder.")]
Seed = Annotated[int, typer.Option(help="Seed of the split and of training.")]


def network_options(**given: Any) -> dict[str, Any]:
    """The CNN training options the user set (the rest keep the trainer's defaults)."""
    return {key: value for key, value in given.items() if value is not None and value is not False}


def print_training(report) -> None:
    sizes = report.sizes
    chosen = ", ".join(f"{k}={v}" for k, v in report.params.items())
    how = f"; chose {chosen} by validation accuracy {report.validation_accuracy:.4f}" if report.selection else ""
    epochs = f", {report.epochs} epochs" if report.epochs else ""
    seconds = f" in {report.train_seconds:.1f} s" if report.train_seconds is not None else ""
    out.print(f"trained {shown(report.pipeline)} on {sizes.get('train', 0)} images (validation {sizes.get('val', 0)})"
              f"{seconds}{epochs}{shown(how)}")
    table = Table("class", "precision", "recall", "f1", "support", title="held-out test, per class", title_justify="left")
    for label, s in report.per_class.items():
        table.add_row(shown(label), f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", str(s["support"]))
    if report.per_class:
        out.print(table)
    for name, path in report.files.items():
        out.print(f"{name}: {shown(path)}")


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_command(
        data_dir: Annotated[Path, typer.Argument(help="Labelled folder (one sub-folder per class; or train/ and test/ inside).")],
        extractor: Annotated[Optional[str], typer.Option("--extractor", "-e", help="Feature pipeline: the extractor [default: keras/squeezenet, ImageNet features; -e hog is the classic handcrafted one].")] = None,
        param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="Extractor (or network) parameter KEY=VALUE.")] = None,
        head: Annotated[Optional[str], typer.Option(help="Feature pipeline: the head (knn, logistic, linear-svm, svm, random-forest, dense) [default: linear-svm].")] = None,
        head_param: Annotated[Optional[list[str]], typer.Option("--head-param", help="Head parameter KEY=VALUE (others are chosen on the validation part).")] = None,
        model: Annotated[Optional[str], typer.Option(help="Train a CNN instead: cnn/lenet5, cnn/vgg-small, keras/<family> or model:PATH.")] = None,
        test_dir: TestDir = None,
        transfer: Annotated[bool, typer.Option("--transfer", help="CNN: freeze the pretrained network, train a new head.")] = False,
        fine_tune: Annotated[Optional[int], typer.Option(help="CNN: after transfer, unfreeze the last N layers (0: all).")] = None,
        augment: Augment = None,
        mixup: Mixup = None,
        balance: Annotated[bool, typer.Option("--balance", help="CNN: weigh classes inversely to their size.")] = False,
        epochs: Epochs = None,
        fine_tune_epochs: FineTuneEpochs = None,
        budget_minutes: BudgetMinutes = None,
        resume: Resume = False,
        batch_size: Annotated[Optional[int], typer.Option(min=1, help="CNN batch size [default: 32].")] = None,
        learning_rate: Annotated[Optional[float], typer.Option(help="CNN Adam learning rate [default: 1e-3].")] = None,
        fine_tune_rate: Annotated[Optional[float], typer.Option(help="CNN fine-tuning learning rate [default: 1e-5].")] = None,
        patience: Annotated[Optional[int], typer.Option(min=1, help="CNN early-stopping patience in epochs [default: 5].")] = None,
        log_dir: Annotated[Optional[Path], typer.Option(help="CNN TensorBoard log directory.")] = None,
        val_split: ValSplit = 0.1,
        test_split: TestSplit = 0.2,
        tta: Tta = 0,
        out_path: Annotated[Optional[Path], typer.Option("--out", help="Where to save it [default: model.pipeline, or model.keras for a CNN].")] = None,
        seed: Seed = 0,
        workers: Workers = None,
        confusion: Annotated[Optional[Path], typer.Option(help="Write the test confusion matrix (PNG) here.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    ) -> None:
        """Train a classifier (features + head, or a CNN) and test it on a held-out part."""
        from visret.classification._training import train_pipeline

        options = network_options(
            transfer=transfer, fine_tune=fine_tune, augment=augment, mixup_alpha=mixup, balance=balance, epochs=epochs,
            fine_tune_epochs=fine_tune_epochs, budget_minutes=budget_minutes, resume=resume, batch_size=batch_size, learning_rate=learning_rate, fine_tune_rate=fine_tune_rate, patience=patience, log_dir=log_dir,
        )
        if model is None and options:
            flags = ", ".join("--" + k.replace("_alpha", "").replace("_", "-") for k in options)
            raise VisretError(f"{flags} apply to training a CNN: add --model (e.g. --model cnn/lenet5)")
        target = out_path or Path("model.keras" if model else "model.pipeline")
        with ProgressBar("training") as bar:
            _, report = train_pipeline(
                data_dir, extractor, head, model=model, params=parse_cli_params(param), head_params=parse_cli_params(head_param),
                test_data=test_dir, val_split=val_split, test_split=test_split, seed=seed, out=target, tta=tta,
                workers=workers, progress=bar.stages, **options,
            )
        pictures = []
        if confusion is not None and report.confusion_matrix:
            from visret.reports.plots import save_confusion

            pictures.append(save_confusion(report.confusion_matrix, report.classes, confusion, title=f"confusion matrix of {report.pipeline}"))
        if as_json:
            print_json(report.to_dict())
        else:
            print_training(report)
        pictures_written(pictures)
        err.print(shown(report.summary()), soft_wrap=True)

    @app.command("classify")
    def classify_command(
        images: Annotated[list[Path], typer.Argument(help="Images, or folders of images (a labelled folder is also scored).")],
        model: Annotated[Optional[Path], typer.Option(help="A trained pipeline: a directory or .keras file from 'visret train' [default: model.pipeline or model.keras, whichever is here].")] = None,
        tta: Annotated[int, typer.Option(min=0, help="Average the posteriors over N augmented views too.")] = 0,
        top: Annotated[int, typer.Option(min=1, help="Classes shown per image.")] = 3,
        montage: Annotated[Optional[Path], typer.Option(help=f"Draw the images (up to {MONTAGE_LIMIT}) with predicted label and confidence (PNG).")] = None,
        explain: Annotated[bool, typer.Option("--explain", help="With --montage: overlay a Grad-CAM map of what drove each prediction (CNN pipelines).")] = False,
        confusion: Annotated[Optional[Path], typer.Option(help="For a labelled folder: write its confusion matrix (PNG) here.")] = None,
        workers: Workers = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON: per image its label and probabilities.")] = False,
    ) -> None:
        """Label and class probabilities of each image, by any trained pipeline."""
        from visret.classification._report import Prediction, scores
        from visret.classification._training import load_pipeline

        if explain and montage is None:
            raise VisretError("--explain draws on the montage: add --montage OUT.png")
        from visret.classification._pipeline import Pipeline

        pipeline = load_pipeline(model or default_model())
        if explain and type(pipeline).explain is Pipeline.explain:
            pipeline.explain([], [])  # says in one line why this pipeline cannot explain
        classes = [str(c) for c in pipeline.classes_]
        records = gather(images, classes)
        if confusion is not None and not any(r.label is not None for r in records):
            raise VisretError("--confusion needs labelled images (a folder with one sub-folder per class)")
        start = time.perf_counter()
        with ProgressBar("classifying") as bar:
            kept, probabilities, skipped = pipeline.classify(records, tta, bar.update, workers)
        seconds = time.perf_counter() - start
        predictions = [Prediction(str(r.path), r.label, classes[row.argmax()], float(row.max())) for r, row in zip(kept, probabilities)]
        results = []
        for p, row in zip(predictions, probabilities):
            order = row.argsort()[::-1][:top]
            results.append({"image": p.image, "label": p.predicted, "probabilities": {classes[i]: round(float(row[i]), 6) for i in order},
                            **({"true_label": p.label} if p.label is not None else {})})
        pictures = []
        if montage is not None and predictions:
            pictures.append(draw(pipeline, predictions[:MONTAGE_LIMIT], montage, explain))
            if len(predictions) > MONTAGE_LIMIT:
                err.print(f"the montage shows the first {MONTAGE_LIMIT} of {len(predictions)} images")
        labelled = [p for p in predictions if p.label is not None]
        measured = scores([p.label for p in labelled], [p.predicted for p in labelled], classes) if labelled else None
        if confusion is not None and measured is not None:
            from visret.reports.plots import save_confusion

            pictures.append(save_confusion(measured["confusion_matrix"], classes, confusion, title=f"confusion matrix of {pipeline.describe()}"))
        if as_json:
            print_json(results)
        else:
            for result in results:
                probabilities_shown = ", ".join(f"{label} {p:.3f}" for label, p in result["probabilities"].items())
                out.print(f"{shown(result['image'])}: [bold]{shown(result['label'])}[/]  ({shown(probabilities_shown)})", soft_wrap=True)
        pictures_written(pictures)
        line = f"classified {len(predictions)} images with {pipeline.describe()} in {seconds:.1f} s"
        if skipped:
            line += f", skipped {len(skipped)} unreadable"
        if measured is not None:
            line += (f"; on the {len(labelled)} labelled: accuracy {measured['test_accuracy']:.4f}, "
                     f"balanced {measured['balanced_accuracy']:.4f}, macro-F1 {measured['macro_f1']:.4f}")
        err.print(shown(line), soft_wrap=True)


def default_model() -> Path:
    """What ``visret train`` saved here without ``--out``."""
    found = [path for path in (Path("model.pipeline"), Path("model.keras")) if path.exists()]
    if len(found) != 1:
        raise VisretError("name the trained pipeline with --model (a directory or .keras file from 'visret train')")
    return found[0]


def gather(inputs: list[Path], classes: list[str]):
    """Records to classify: files as given, folders walked (labelled by sub-folder, each label
    checked against the classes); a file or folder whose own folder names a class has that label."""
    from visret.images._folders import ImageRecord, scan_folder

    records = []
    for item in inputs:
        if item.is_dir():
            found = scan_folder(item)
            labels = {r.label for r in found if r.label is not None}
            unknown = sorted(labels - set(classes))
            if unknown and labels & set(classes):
                raise VisretError(f"{item} has classes the pipeline was not trained on: {', '.join(unknown[:5])}")
            if unknown:  # no sub-folder names a class: folders of the user's own (photos/2023/), unlabelled
                found = [ImageRecord(r.path, None) for r in found]
            own = item.resolve().name if item.resolve().name in classes else None  # a class's own folder
            records += [r if r.label is not None else ImageRecord(r.path, own) for r in found]
        elif item.exists():
            records.append(ImageRecord(item.absolute(), item.parent.name if item.parent.name in classes else None))
        else:
            raise VisretError(f"{item} does not exist")
    if not records:
        raise VisretError("no image to classify")
    return records


def draw(pipeline, predictions, target: Path, explain: bool) -> Path:
    """The predictions montage, with Grad-CAM maps when ``explain``."""
    from visret.reports.plots import save_predictions

    heatmaps = None
    if explain:
        from visret.images._decode import read_image

        arrays = [read_image(p.image, pipeline.input_spec)[0] for p in predictions]
        position = {str(c): i for i, c in enumerate(pipeline.classes_)}
        heatmaps = pipeline.explain(arrays, [position[p.predicted] for p in predictions])
    title = f"{pipeline.describe()}" + (": Grad-CAM of the predicted class" if explain else "")
    return save_predictions(predictions, target, heatmaps, title=title)


def compare_command(data_dir: Path, pipelines: str, test_dir, val_split, test_split, seed, tta, workers, save_dir, html,
                    report_format: str, budget_minutes: float | None, **network: Any) -> None:
    """``visret compare --pipelines``: train and test each pipeline, print the leaderboard. With ``--html``
    the page is written again after each pipeline, so a killed run leaves the leaderboard of what finished."""
    from visret.classification._comparison import compare_pipelines

    with ProgressBar("comparing") as bar:
        result = compare_pipelines(
            data_dir, pipelines, test_data=test_dir, val_split=val_split, test_split=test_split, seed=seed, tta=tta,
            workers=workers, save_dir=save_dir, budget_minutes=budget_minutes, progress=bar.stages,
            on_result=(lambda partial: write_report(partial, html)) if html is not None else None, **network_options(**network),
        )
    written = [write_report(result, html)] if html is not None else []
    title = f"{len(result.reports)} pipelines, one held-out test part ({result.reports[result.best()].sizes.get('test', 0)} images); best in green"
    print_leaderboard(result, result.leaderboard(), report_format, title, HEADERS, "model_bytes")
    pictures_written(written)
    if result.reused:
        err.print(shown(f"taken from {save_dir} (trained before with the same settings): {', '.join(result.reused)}"), soft_wrap=True)
    if result.stopped:
        err.print(shown(f"stopped early: {result.stopped}"), soft_wrap=True)
    err.print(shown(f"best: {result.best()} ({result.reports[result.best()].summary()})"), soft_wrap=True)


def write_report(result, html: Path) -> Path:
    """The HTML report: leaderboard, each pipeline's confusion matrix, the CNNs' training curves,
    and the test images the best pipeline gets wrong."""
    import tempfile

    from visret.reports._html import write_html
    from visret.reports.plots import save_confusion, save_predictions

    with tempfile.TemporaryDirectory(prefix="visret-report-") as scratch:
        pictures = {}
        for n, (name, report) in enumerate(result.reports.items()):
            if report.confusion_matrix:
                pictures[f"confusion matrix of {name}"] = save_confusion(report.confusion_matrix, report.classes, Path(scratch) / f"c{n}.png",
                                                                         title=f"confusion matrix of {name}")
            if report.history:
                from visret.reports.plots import save_curves

                pictures[f"training curves of {name}"] = save_curves(report.history, Path(scratch) / f"h{n}.png", boundary=report.fine_tune_from)
        best = result.best()
        mistakes = result.reports[best].mistakes()[:MONTAGE_LIMIT]
        if mistakes:
            pictures[f"test images {best} gets wrong ({len(result.reports[best].mistakes())} in all)"] = save_predictions(
                mistakes, Path(scratch) / "mistakes.png", title=f"{best}: mistakes")
        settings = ", ".join(f"{k}={v}" for k, v in result.settings.items())
        return write_html(html, "visret pipeline comparison", settings, result.leaderboard(), pictures)
