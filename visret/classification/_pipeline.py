"""The ``Pipeline`` interface: a trained image classifier, whatever it is made of.

A pipeline takes images and gives class probabilities. Kinds of pipeline come from plugins
(hook ``register_pipelines``): an extractor with a head on its features (``features``), a CNN
trained end to end (``cnn``, the Keras plugin), or a third party's. Each kind says how it is
trained, saved and recognised on disk; decoding, test-time augmentation and held-out testing
are shared here, so every kind is tested the same way.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from visret.errors import VisretError
from visret.features._extractor import InputSpec
from visret.images._decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, ImageReadError, as_array, display_path, read_image
from visret.classification import _tta as test_time
from visret.classification._report import ClassificationReport, Prediction, scores
from visret.images._folders import ImageRecord
from visret.plugins._registry import ExtensionPoint

log = logging.getLogger("visret")
Progress = Callable[[int, int], None]
StageProgress = Callable[[str, int, int], None]
#: Images decoded and classified at once.
BATCH = 64


class Pipeline:
    """A trained classifier of images: ``predict_proba(images)`` over ``classes_``.

    Subclasses set ``name`` (the kind) and implement ``input_spec``, ``predict_arrays``, ``save``
    and the class methods ``recognises`` and ``load``; kinds that can be trained by visret also
    implement ``trains`` and ``train``.
    """

    name: ClassVar[str] = ""
    classes_: np.ndarray
    #: Whether mirrored views are fair test-time augmentations for this pipeline.
    tta_flip: bool = False

    # ---- what a kind implements ---------------------------------------------------------
    @property
    def input_spec(self) -> InputSpec:
        raise NotImplementedError

    def predict_arrays(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities ``(n, len(classes_))`` of images already decoded as ``input_spec`` says."""
        raise NotImplementedError

    def describe(self) -> str:
        """A short name for listings: ``hog+linear-svm``, ``cnn/lenet5``."""
        return self.name

    def save(self, path: str | Path) -> Path:
        raise NotImplementedError

    def explain(self, images: Sequence[np.ndarray], classes: Sequence[int]) -> list[np.ndarray]:
        """A map (values 0-1) per image of where it drove the score of the given class (Grad-CAM)."""
        raise VisretError(f"{self.describe()} cannot explain its predictions; Grad-CAM needs a CNN pipeline (visret train --model)")

    @classmethod
    def recognises(cls, path: Path) -> bool:
        """Whether ``path`` holds a saved pipeline of this kind (checked cheaply, before loading)."""
        return False

    @classmethod
    def load(cls, path: str | Path) -> Pipeline:
        raise NotImplementedError

    @classmethod
    def companion_files(cls, path: Path) -> list[Path]:
        """Files that saving or training a pipeline at ``path`` also writes beside it (logs, curves)."""
        return []

    @classmethod
    def trains(cls, model: str) -> bool:
        """Whether this kind trains the model named ``model`` (``visret train --model``)."""
        return False

    @classmethod
    def train(cls, split, settings: dict[str, Any], out: Path, progress: StageProgress | None = None):
        """Train on ``split.train`` (``split.val`` for early stopping or choices), never on ``split.test``.

        Returns ``(pipeline, facts)``, facts being ``ClassificationReport`` fields known from
        training (``train_seconds``, ``params``, ``epochs``, ``history``, ``files``...).
        """
        raise NotImplementedError

    # ---- shared -------------------------------------------------------------------------
    def predict_proba(self, images: Sequence[Any], tta: int = 0) -> np.ndarray:
        """Probabilities of images given as paths, Pillow images or uint8 arrays."""
        try:
            arrays = [as_array(image, self.input_spec) for image in images]
        except ImageReadError as exc:
            raise VisretError(f"cannot read an image: {exc}") from None
        return self._probabilities(arrays, tta)

    def predict(self, images: Sequence[Any], tta: int = 0) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(images, tta), axis=1)]

    def _probabilities(self, arrays: list[np.ndarray], tta: int) -> np.ndarray:
        try:
            return test_time.averaged(self.predict_arrays, arrays, tta, self.tta_flip)
        except ValueError as exc:
            raise VisretError(str(exc)) from None

    def classify(
        self, records: Sequence[ImageRecord], tta: int = 0, progress: Progress | None = None, workers: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> tuple[list[ImageRecord], np.ndarray, list[tuple[Path, str]]]:
        """Probabilities of image files: ``(records read, probabilities, skipped (path, reason))``.

        Unreadable files are skipped with one warning line each.
        """
        kept, chunks, skipped = [], [], []
        for start in range(0, len(records), BATCH):
            batch, arrays = [], []
            for record in records[start : start + BATCH]:
                try:
                    arrays.append(read_image(record.path, self.input_spec, max_pixels, max_bytes)[0])
                    batch.append(record)
                except ImageReadError as exc:
                    skipped.append((record.path, str(exc)))
                    log.warning("skipped %s: %s", display_path(record.path), exc)
            if arrays:
                chunks.append(self._probabilities(arrays, tta))
                kept.extend(batch)
            if progress is not None:
                progress(min(start + BATCH, len(records)), len(records))
        return kept, (np.concatenate(chunks) if chunks else np.zeros((0, len(self.classes_)))), skipped

    def evaluate(self, data: str | Path | Sequence[ImageRecord], tta: int = 0, progress: Progress | None = None,
                 workers: int | None = None) -> ClassificationReport:
        """Test on a labelled folder (or records): accuracy, balanced accuracy, macro-F1, confusion."""
        from visret.classification._split import labelled_records

        records = labelled_records(data) if isinstance(data, (str, Path)) else [r for r in data if r.label is not None]
        if not records:
            raise VisretError(f"{data} has no labelled images (one sub-folder per class) to test on")
        classes = [str(c) for c in self.classes_]
        unknown = sorted({r.label for r in records} - set(classes))
        if unknown:
            raise VisretError(f"the test images have classes the pipeline was not trained on: {', '.join(unknown)}")
        start = time.perf_counter()
        kept, probabilities, skipped = self.classify(records, tta, progress, workers)
        seconds = time.perf_counter() - start
        predicted = [classes[i] for i in probabilities.argmax(axis=1)] if len(kept) else []
        measured = scores([r.label for r in kept], predicted, classes)
        return ClassificationReport(
            pipeline=self.describe(), classes=classes, **measured, sizes={"test": len(kept)}, skipped=len(skipped),
            inference_images_per_s=round(len(kept) / seconds, 1) if seconds > 0 and kept else None, tta=tta,
            predictions=[
                Prediction(str(r.path), r.label, p, float(row.max())) for r, p, row in zip(kept, predicted, probabilities)
            ],
        )


def stage(progress: StageProgress | None, name: str) -> Progress | None:
    """A ``progress(done, total)`` callback that reports ``name`` as the stage, or None."""
    return (lambda done, total: progress(name, done, total)) if progress is not None else None


PIPELINES = ExtensionPoint("pipeline kind", "register_pipelines", Pipeline, table="pipelines")


def saved_bytes(path: Path) -> int:
    """The size of a saved pipeline: a file, or every file of a directory."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0
