"""The ``cnn`` pipeline: a CNN classifier trained end to end by ``visret train --model``.

Saved as the ``.keras`` model (loaded in safe mode; augmentation and the family's preprocessing
are layers inside it) and ``NAME.split.json`` beside it: classes, the split, how it was trained.
"""

from __future__ import annotations

import inspect
import json
import zipfile
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from visret import InputSpec, VisretError
from visret.classification import Pipeline
from visret_keras import runtime
from visret_keras.augment import parse_augment
from visret_keras.training_run import TrainingRun

#: Images per forward pass.
PREDICT_BATCH = 256


def split_file(model_path: Path) -> Path:
    return Path(model_path).with_suffix(".split.json")


class CNNPipeline(Pipeline):
    """A Keras classifier taking pixels (0-255) to class probabilities."""

    name: ClassVar[str] = "cnn"

    def __init__(self, model, classes: Sequence[str], description: str = "cnn", split: dict[str, Any] | None = None, augment: dict | None = None):
        self.model = model
        self.classes_ = np.asarray([str(c) for c in classes])
        self.description = description
        self.split = split
        self.augment = augment or {}

    @property
    def tta_flip(self) -> bool:
        """Mirrored views are fair when the network was trained on mirrored images."""
        return "horizontal" in str(self.augment.get("flip", ""))

    @property
    def input_spec(self) -> InputSpec:
        _, height, width, channels = self.model.input_shape
        return InputSpec(mode="L" if channels == 1 else "RGB", size=(height, width))

    def describe(self) -> str:
        return self.description

    def predict_arrays(self, images: Sequence[np.ndarray]) -> np.ndarray:
        batch = np.asarray(images, np.float32)
        if batch.ndim == 3:
            batch = batch[..., None]
        return np.asarray(self.model.predict(batch, batch_size=PREDICT_BATCH, verbose=0))

    def explain(self, images: Sequence[np.ndarray], classes: Sequence[int]) -> list[np.ndarray]:
        from visret_keras.gradcam import grad_cam

        return grad_cam(self.model, images, classes)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.suffix != ".keras":
            raise VisretError(f"a CNN pipeline is saved as a .keras file, got {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.model.save(path)
        record = {**(self.split or {}), "classes": [str(c) for c in self.classes_], "pipeline": self.description, "augment": self.augment}
        text = json.dumps(record, indent=1)
        split_file(path).write_text(text)
        checkpoint = path.with_suffix(".best.keras")
        if checkpoint.is_file():  # the best epoch's model is a pipeline too: it gets its classes
            split_file(checkpoint).write_text(text)
        return path

    @classmethod
    def recognises(cls, path: Path) -> bool:
        """A ``.keras`` file that is a Keras archive (a zip with its config and metadata)."""
        path = Path(path)
        if path.suffix != ".keras" or not path.is_file():
            return False
        try:
            with zipfile.ZipFile(path) as archive:
                return {"config.json", "metadata.json"} <= set(archive.namelist())
        except (OSError, zipfile.BadZipFile):
            return False

    @classmethod
    def companion_files(cls, path: Path) -> list[Path]:
        path = Path(path)
        if TrainingRun.is_record(path):  # an unfinished run's files: its own to take up or replace
            return []
        return [path.with_suffix(suffix) for suffix in (".split.json", ".best.keras", ".best.split.json", ".curves.png")] + TrainingRun.files(path)

    @classmethod
    def load(cls, path: str | Path) -> CNNPipeline:
        path = Path(path)
        if not cls.recognises(path):
            raise VisretError(f"{path} is not a saved .keras model")
        model = runtime.load_model(path)
        outputs = model.output_shape[-1] if isinstance(model.output_shape, tuple) else None
        if len(model.input_shape) != 4 or not isinstance(outputs, int):
            raise VisretError(f"{path} is not an image classifier (it takes {model.input_shape}, gives {model.output_shape})")
        try:
            record = json.loads(split_file(path).read_text()) if split_file(path).is_file() else {}
        except ValueError as exc:
            raise VisretError(f"{split_file(path)} is damaged: {exc}") from None
        if not isinstance(record, dict):
            raise VisretError(f"{split_file(path)} is damaged: not a JSON object")
        classes = record.get("classes") or [str(i) for i in range(outputs)]
        if len(classes) != outputs:
            raise VisretError(f"{path} gives {outputs} classes but {split_file(path)} names {len(classes)}")
        return cls(model, classes, record.get("pipeline") or path.stem, record or None, record.get("augment"))

    # ---- training -----------------------------------------------------------------------
    @classmethod
    def trains(cls, model: str) -> bool:
        from visret.features import extractor_classes

        from visret_keras.base import KerasExtractor

        name = model.partition(":")[0] if model.startswith("model:") else model
        found = extractor_classes().get(name)
        return found is not None and issubclass(found, KerasExtractor)

    @classmethod
    def train(cls, split, settings: dict[str, Any], out: Path, progress: Callable[[str, int, int], None] | None = None):
        from visret_keras.training import fit_network

        settings = dict(settings)
        accepted = set(inspect.signature(fit_network).parameters) - {"split", "out", "on_epoch", "on_checkpoint"}
        unknown = sorted(set(settings) - accepted)
        if unknown:
            raise VisretError(f"training a network takes no option {', '.join(unknown)}")
        description = describe_network(settings["model"], settings.get("transfer", False), settings.get("fine_tune"))
        on_epoch = (lambda done, planned: progress(f"training {description}", done, planned)) if progress else None
        record = {"classes": [str(c) for c in split.classes], "pipeline": description}

        def checkpoint_knows_its_classes(best: Path) -> None:
            """The best epoch's model is classified, scored and explained while the run goes on."""
            if not split_file(best).is_file():
                split_file(best).write_text(json.dumps({**record, "augment": parse_augment(settings.get("augment"))}, indent=1))

        net, facts = fit_network(split, out=out, on_epoch=on_epoch, on_checkpoint=checkpoint_knows_its_classes, **settings)
        augment = facts.pop("augment")
        return cls(net, split.classes, description, augment=augment), facts


def describe_network(model: str, transfer: bool, fine_tune: int | None) -> str:
    """``cnn/lenet5``, ``keras/mobilenet_v2+transfer``, ``keras/resnet50+fine-tune:30``."""
    if fine_tune is not None:
        return f"{model}+fine-tune:{fine_tune}"
    return f"{model}+transfer" if transfer else model
