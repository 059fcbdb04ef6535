"""One report from work already done: saved pipelines and models, indexes, and a labelled test folder.

Nothing is trained again. Every saved classifier (a feature pipeline's folder, a ``.keras`` CNN or one
of its checkpoints) is tested on the same labelled folder, with test-time augmentation as extra rows
when asked; every index is scored by k-NN retrieval on the same folder (mAP, precision at k), so a
CNN's latent space (an index of ``model:cnn.keras``) sits next to handcrafted features. Confusion
matrices, the CNNs' training curves (read from the log beside the model) and a montage of chosen test
images complete the page: the course assignment's report, from what the earlier commands saved.
"""

from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from visret.errors import VisretError
from visret.evaluation._leaderboard import Leaderboard
from visret.images.loaders import find_images

#: Columns where lower is better.
LOWER_IS_BETTER = {"model_bytes", "train_s"}
#: Retrieval cut-offs reported for each index.
CUTOFFS = (1, 5, 10)

Progress = Callable[[str, int, int], None]


@dataclass
class SavedWorkReport:
    """The tables and pictures of one report; ``write_html`` and ``to_markdown`` lay them out."""

    test: str
    classification: list[dict[str, Any]] = field(default_factory=list)
    retrieval: list[dict[str, Any]] = field(default_factory=list)
    pictures: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"test": self.test, "classification": self.classification, "retrieval": self.retrieval, "notes": self.notes}

    def sections(self) -> list[tuple[str, Leaderboard]]:
        found = []
        if self.classification:
            found.append(("Classification on the held-out test folder (best per column in bold)", Leaderboard(self.classification, LOWER_IS_BETTER)))
        if self.retrieval:
            found.append((f"Retrieval: the test images as queries of each index (mAP, P@k at k = {', '.join(map(str, CUTOFFS))})",
                          Leaderboard(self.retrieval)))
        return found

    def to_markdown(self) -> str:
        parts = [f"# visret report\n\nTest images: {self.test}\n"]
        for heading, board in self.sections():
            parts.append(f"## {heading}\n\n{board.to_markdown()}\n")
        parts.extend(f"- {note}\n" for note in self.notes)
        return "\n".join(parts)

    def write_html(self, out: str | Path) -> Path:
        from visret.reports._html import write_sections

        return write_sections(out, "visret report", "; ".join([f"test images: {self.test}", *self.notes]), self.sections(), self.pictures)


def build_report(
    test: str | Path,
    models: Sequence[str | Path] = (),
    indexes: Sequence[str | Path] = (),
    *,
    tta: int = 0,
    show: int = 12,
    images: Sequence[str | Path] = (),
    pictures_dir: str | Path | None = None,
    workers: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> SavedWorkReport:
    """Test every saved model and score every index on the labelled ``test`` folder (or list).

    ``tta`` adds a row per model with that many test-time views. ``show`` test images (seeded, classes
    in turn), or the given ``images``, are drawn with the best model's predictions. Pictures are
    written under ``pictures_dir`` (a temporary folder when None, kept until the report is written).
    """
    from visret.classification._training import load_pipeline, test_on
    from visret.evaluation._knn import evaluate_knn
    from visret.index._index import open_index
    from visret.reports.plots import save_confusion, save_curves, save_predictions

    if not models and not indexes:
        raise VisretError("give at least one saved model (--model) or index (--index) to report on")
    records = [r for r in find_images(test) if r.label is not None]
    if not records:
        raise VisretError(f"no labelled images in {test}: put each class in its own sub-folder")
    folder = Path(pictures_dir) if pictures_dir is not None else Path(tempfile.mkdtemp(prefix="visret-report-"))
    folder.mkdir(parents=True, exist_ok=True)
    report = SavedWorkReport(str(test))
    tested = {}
    model_names, index_names = _unique_names(models), _unique_names(indexes)
    for number, (path, name) in enumerate(zip(models, model_names), start=1):
        step = _stage(progress, f"[{number}/{len(models)}] {name}")
        pipeline = load_pipeline(path)
        result = test_on(pipeline, records, tta, step, workers)
        tested[name] = result
        row = {"model": name, "pipeline": pipeline.describe(), "accuracy": result.test_accuracy, "balanced_accuracy": result.balanced_accuracy,
               "macro_f1": result.macro_f1, "model_bytes": _bytes(Path(path))}
        report.classification.append(row)
        if tta:
            report.classification.append({**row, "model": f"{name} + {tta} TTA views", "accuracy": result.test_accuracy_tta,
                                          "balanced_accuracy": None, "macro_f1": None})
        if result.confusion_matrix:
            report.pictures[f"confusion matrix of {name}"] = save_confusion(
                result.confusion_matrix, result.classes, folder / f"confusion-{number}.png", title=f"confusion matrix of {name}")
        log = _training_log(Path(path))
        if log is not None:
            history, boundary = log
            report.pictures[f"training curves of {name}"] = save_curves(history, folder / f"curves-{number}.png", boundary=boundary)
    for path, name in zip(indexes, index_names):
        with open_index(path) as index:
            scored = evaluate_knn(test, index, k=5, at=CUTOFFS, workers=workers, progress=_counted(progress, f"index {name}"))
            report.retrieval.append({
                "index": name, "extractor": _extractor_label(index.manifest["extractor"]), "entries": str(len(index)),
                "mAP": scored.map, **{f"P@{k}": scored.precision_at[k] for k in CUTOFFS}, "knn_accuracy": scored.accuracy,
            })
    if tested:
        best = max(tested, key=lambda name: tested[name].test_accuracy or 0.0)
        chosen = _chosen(tested[best].predictions, images, show, seed)
        if chosen:
            report.pictures[f"chosen test images, as {best} classifies them"] = save_predictions(
                chosen, folder / "montage.png", title=f"{best}: predictions (green right, red wrong)")
    return report


def _unique_names(paths: Sequence[str | Path]) -> list[str]:
    """Each path's file name, with as many parent folders as it takes to tell equal names apart."""
    paths = [Path(p) for p in paths]
    depth = 1
    while depth < max((len(p.parts) for p in paths), default=1):
        names = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(names)) == len(names):
            return names
        depth += 1
    return [str(p) for p in paths]


def _extractor_label(config: dict[str, Any]) -> str:
    """An index's extractor as a reader knows it: ``hog``, ``model:cnn.keras`` (a CNN's latent space)."""
    path = (config.get("params") or {}).get("path")
    return f"{config['name']}:{Path(str(path)).name}" if path else str(config["name"])


def _stage(progress: Progress | None, label: str):
    return (lambda stage, done, total: progress(f"{label}: {stage}", done, total)) if progress else None


def _counted(progress: Progress | None, label: str):
    return (lambda done, total: progress(label, done, total)) if progress else None


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def _training_log(model: Path) -> tuple[dict[str, list[float]], int | None] | None:
    """The history a CNN's training wrote beside it (``NAME.log.csv``; a checkpoint's ``NAME.best.keras``
    shares its run's), and the last epoch before fine-tuning."""
    stem = model.name.removesuffix(".keras").removesuffix(".best").removesuffix(".last")
    log = model.with_name(stem + ".log.csv")
    if model.suffix != ".keras" or not log.is_file():
        return None
    try:
        with open(log, newline="") as fh:
            rows = list(csv.DictReader(fh))
        history = {key: [float(row[key]) for row in rows] for key in ("loss", "accuracy", "val_loss", "val_accuracy") if rows and key in rows[0]}
    except (OSError, ValueError, KeyError):
        return None
    phases = [row.get("phase") for row in rows]
    boundary = phases.index("fine-tune") if "fine-tune" in phases and phases.index("fine-tune") > 0 else None
    return (history, boundary) if history else None


def _chosen(predictions, images: Sequence[str | Path], show: int, seed: int):
    """The named test images' predictions, or ``show`` of them (classes in turn, seeded)."""
    if images:
        wanted = {str(Path(p).absolute()) for p in images}
        found = [p for p in predictions if str(Path(p.image).absolute()) in wanted]
        if len(found) < len(wanted):
            raise VisretError(f"{len(wanted) - len(found)} of the chosen images are not labelled test images of the report")
        return found
    order = np.random.default_rng(seed).permutation(len(predictions))
    by_class: dict[str, list] = {}
    for i in order:
        by_class.setdefault(str(predictions[i].label), []).append(predictions[i])
    chosen = []
    while len(chosen) < min(show, len(predictions)):
        for group in by_class.values():
            if group and len(chosen) < show:
                chosen.append(group.pop())
    return chosen
