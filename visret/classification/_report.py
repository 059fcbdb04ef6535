"""What training or testing a classification pipeline measured, as one report.

The same report comes from ``train_pipeline`` (feature pipelines and CNNs alike),
``Pipeline.evaluate`` and each row of a pipeline comparison, so they read the same in a
terminal, in JSON and in a notebook.
"""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

import numpy as np

from visret.evaluation.metrics import balanced_accuracy, confusion_matrix, per_class_scores


@dataclass(frozen=True)
class Prediction:
    """One test image: its true label (None when unknown), the predicted one and its probability."""

    image: str
    label: str | None
    predicted: str
    confidence: float

    @property
    def correct(self) -> bool | None:
        return None if self.label is None else self.label == self.predicted


@dataclass
class ClassificationReport:
    """Held-out scores of one pipeline, and what it cost.

    ``test_accuracy``, ``balanced_accuracy``, ``macro_f1``, ``per_class`` and the confusion
    matrix (true classes as rows) are on the test part only. ``params`` are the hyper-parameters
    chosen on the validation part (``selection`` lists every candidate's validation accuracy).
    ``test_accuracy_tta`` is the test accuracy with ``tta`` test-time augmentations.
    """

    pipeline: str
    classes: list[str]
    test_accuracy: float | None
    balanced_accuracy: float | None
    macro_f1: float | None
    per_class: dict[str, dict[str, Any]]
    confusion_matrix: list[list[int]]
    sizes: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    train_seconds: float | None = None
    inference_images_per_s: float | None = None
    model_bytes: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    selection: list[dict[str, Any]] = field(default_factory=list)
    validation_accuracy: float | None = None
    tta: int = 0
    test_accuracy_tta: float | None = None
    epochs: int | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    #: A CNN run: the last epoch before fine-tuning; why it stopped before its epochs (a time budget); resumed or not.
    fine_tune_from: int | None = None
    stopped: str | None = None
    resumed: bool = False
    #: A pretrained network's head: the logistic head it started from (C chosen on validation, its accuracy there).
    linear_start: dict[str, float] | None = None
    files: dict[str, str] = field(default_factory=dict)
    predictions: list[Prediction] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("predictions")
        data["misclassified"] = len(self.mistakes())
        return data

    def to_record(self) -> dict[str, Any]:
        """``to_dict`` with every test prediction: what ``from_record`` reads back (a finished pipeline
        of an interrupted comparison, a report built later from saved work)."""
        return {**self.to_dict(), "predictions": [asdict(p) for p in self.predictions]}

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> ClassificationReport:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known and k != "predictions"}
        values["predictions"] = [Prediction(**p) for p in data.get("predictions", [])]
        return cls(**values)

    def mistakes(self) -> list[Prediction]:
        """The test images predicted wrongly, least confident first."""
        return sorted((p for p in self.predictions if p.correct is False), key=lambda p: p.confidence)

    def summary(self) -> str:
        """One line: the pipeline and its held-out scores."""
        if self.test_accuracy is None:
            return f"{self.pipeline}: no test images"
        parts = [f"accuracy {self.test_accuracy:.4f}", f"balanced {self.balanced_accuracy:.4f}", f"macro-F1 {self.macro_f1:.4f}"]
        if self.test_accuracy_tta is not None:
            parts.append(f"with {self.tta} TTA {self.test_accuracy_tta:.4f}")
        stopped = f" (stopped early: {self.stopped})" if self.stopped else ""
        return f"{self.pipeline}: " + ", ".join(parts) + f" on {self.sizes.get('test', 0)} test images{stopped}"

    def headline(self) -> dict[str, Any]:
        """The numbers a leaderboard row shows."""
        row = {
            "accuracy": self.test_accuracy, "balanced_accuracy": self.balanced_accuracy, "macro_f1": self.macro_f1,
            "train_s": self.train_seconds, "inference_img_s": self.inference_images_per_s, "model_bytes": self.model_bytes,
        }
        if self.tta:
            row["accuracy_tta"] = self.test_accuracy_tta
        return row

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{'' if v is None else f'{v:.4f}' if isinstance(v, float) else v}</td></tr>"
            for k, v in self.headline().items()
        )
        classes = "".join(
            f"<tr><td>{html.escape(c)}</td><td>{s['precision']:.3f}</td><td>{s['recall']:.3f}</td><td>{s['f1']:.3f}</td><td>{s['support']}</td></tr>"
            for c, s in self.per_class.items()
        )
        return (
            f"<p><b>{html.escape(self.pipeline)}</b> ({', '.join(f'{k} {v}' for k, v in self.sizes.items())})</p>"
            f"<table><tr><th>metric</th><th>value</th></tr>{rows}</table>"
            f"<table><tr><th>class</th><th>precision</th><th>recall</th><th>f1</th><th>support</th></tr>{classes}</table>"
        )


def scores(true: Sequence[str], predicted: Sequence[str], classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1 (over the classes tested or predicted), per-class
    scores and the confusion matrix of predicted against true labels."""
    classes = list(classes)
    matrix = confusion_matrix(true, predicted, classes)
    per_class = per_class_scores(matrix, classes)
    present = [c for i, c in enumerate(classes) if matrix[i].sum() or matrix[:, i].sum()]
    return {
        "test_accuracy": float(np.mean(np.asarray(true) == np.asarray(predicted))) if len(true) else None,
        "balanced_accuracy": balanced_accuracy(matrix) if len(true) else None,
        "macro_f1": float(np.mean([per_class[c]["f1"] for c in present])) if present else None,
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
    }
