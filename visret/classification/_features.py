"""The ``features`` pipeline: any registered extractor, with a head trained on its features.

Saved as a directory that loads without unpickling anything: ``pipeline.json`` (the extractor's
and the head's configs, the classes), ``extractor.npz`` (the state of an extractor that learns),
the head in its own format (``head.skops`` for scikit-learn heads, ``head.npz``, ``head.keras``)
and ``split.json`` (what it was trained, validated and tested on).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from visret.features._classifier import Classifier
from visret.images._folders import ImageRecord
from visret.errors import VisretError
from visret.embedding._extraction import Embedder
from visret.features._extractor import FeatureExtractor, InputSpec
from visret.features._output import checked_query_features
from visret.embedding._fitting import fit_extractor
from visret._named_files import NPY_ERRORS, read_npz, regular_file
from visret.classification._pipeline import Pipeline, Progress, StageProgress, stage
from visret.classification._selection import select_head
from visret.features._lookup import classifier_classes, extractor_from_spec
from visret.version import __version__

FORMAT, VERSION = "visret-pipeline", 1
MANIFEST = "pipeline.json"


def _check_head_takes_features(path: Path, extractor: FeatureExtractor, head: Classifier) -> None:
    """A saved head must take what the saved extractor gives (a row of its ``dim``) and score its
    classes: a pipeline put together from parts that disagree is one line when it is loaded."""
    try:
        scores = np.asarray(head.predict_proba(np.zeros((1, extractor.dim), np.float32)))
    except Exception as exc:  # the head's own library says why, in its own words
        raise VisretError(f"{path}: its head does not take the {extractor.dim}-d features of {extractor.name} "
                          f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    classes = getattr(head, "classes_", None)
    if scores.ndim != 2 or (classes is not None and scores.shape[1] != len(classes)):
        raise VisretError(f"{path}: its head gives scores of shape {scores.shape}, not one per class")


class FeaturePipeline(Pipeline):
    """An extractor and a classifier head on its features."""

    name: ClassVar[str] = "features"

    def __init__(self, extractor: FeatureExtractor, head: Classifier, split: dict[str, Any] | None = None):
        self.extractor = extractor
        self.head = head
        self.split = split

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self.head.classes_)

    @property
    def input_spec(self) -> InputSpec:
        return self.extractor.input_spec

    def describe(self) -> str:
        return f"{self.extractor.name}+{self.head.name}"

    def predict_arrays(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self.head.predict_proba(checked_query_features(self.extractor, self.extractor.extract(list(images)), len(images)))

    def classify(self, records: Sequence[ImageRecord], tta: int = 0, progress: Progress | None = None, workers: int | None = None, **limits):
        if tta:
            return super().classify(records, tta, progress, workers, **limits)
        extracted = embed(self.extractor, records, progress, workers, **limits)
        probabilities = self.head.predict_proba(extracted.features) if len(extracted.records) else np.zeros((0, len(self.classes_)))
        return extracted.records, probabilities, extracted.skipped

    # ---- on disk ------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the pipeline directory next to ``path``, then move it into place."""
        from visret.index._store.files import save_npz

        path = Path(path)
        if path.exists() and not self.recognises(path):
            raise VisretError(f"{path} exists and is not a saved pipeline; not overwriting it")
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            head_file = "head" + getattr(self.head, "file_suffix", ".npz")
            self.head.save(staging / head_file)
            state = self.extractor.get_state()
            if state:
                save_npz(staging / "extractor.npz", state)
            if self.split is not None:
                (staging / "split.json").write_text(json.dumps(self.split, indent=1))
            manifest = {
                "format": FORMAT, "version": VERSION, "kind": self.name, "visret_version": __version__,
                "extractor": self.extractor.get_config(), "head": self.head.get_config(), "head_file": head_file,
                "extractor_state": "extractor.npz" if state else None, "classes": [str(c) for c in self.classes_],
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
            _replace_directory(staging, path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return path

    @classmethod
    def recognises(cls, path: Path) -> bool:
        return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()

    @classmethod
    def load(cls, path: str | Path) -> FeaturePipeline:
        path = Path(path)
        try:
            manifest = json.loads(regular_file(path / MANIFEST, "pipeline manifest", inside=path).read_text())
        except (OSError, ValueError) as exc:
            raise VisretError(f"{path} is not a readable pipeline: {exc}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise VisretError(f"{path / MANIFEST} is not a visret pipeline manifest")
        if manifest.get("version") != VERSION:
            raise VisretError(f"{path} is a pipeline of format version {manifest.get('version')}; this visret reads {VERSION}")
        try:
            return cls._from_manifest(path, manifest)
        except (KeyError, TypeError, *NPY_ERRORS) as exc:
            raise VisretError(f"{path} is a damaged pipeline: {type(exc).__name__}: {exc}") from None

    @classmethod
    def _from_manifest(cls, path: Path, manifest: dict[str, Any]) -> FeaturePipeline:
        extractor = extractor_from_spec(manifest["extractor"])
        if manifest.get("extractor_state"):
            extractor.set_state(read_npz(_inside(path, manifest["extractor_state"])))
        head_name = manifest["head"]["name"]
        head_cls = classifier_classes().get(head_name)
        if head_cls is None:
            raise VisretError(f"{path} needs head {head_name!r}, which no installed plugin registers")
        try:
            head = head_cls.load(_inside(path, manifest["head_file"]))
        except NPY_ERRORS as exc:
            raise VisretError(f"cannot load the head of {path}: {exc}") from None
        _check_head_takes_features(path, extractor, head)
        split_file = path / "split.json"
        split = json.loads(regular_file(split_file, "pipeline split", inside=path).read_text()) if split_file.exists() else None
        return cls(extractor, head, split)

    # ---- training -----------------------------------------------------------------------
    @classmethod
    def train(cls, split, settings: dict[str, Any], out: Path, progress: StageProgress | None = None):
        """Fit the extractor on the training part, embed training and validation images, choose the
        head's parameters by validation accuracy and refit it on both parts."""
        extractor: FeatureExtractor = settings["extractor"].for_trained_head()
        start = time.perf_counter()
        if extractor.requires_fit:
            fit_extractor(extractor, split.train, seed=split.seed)
        parts = {}
        for name in ("train", "val"):
            extracted = embed(extractor, getattr(split, name), stage(progress, f"embedding {name} images"), settings.get("workers"))
            parts[name] = (extracted.features, np.array([r.label for r in extracted.records]))
        head, chosen, selection, validation = select_head(
            settings["head"], settings.get("head_params") or {}, parts["train"], parts["val"], stage(progress, "choosing the head's parameters"),
        )
        facts = {
            "train_seconds": round(time.perf_counter() - start, 2), "params": chosen, "selection": selection,
            "validation_accuracy": validation, "sizes": {name: len(y) for name, (_, y) in parts.items()},
        }
        return cls(extractor, head), facts


def embed(extractor: FeatureExtractor, records: Sequence[ImageRecord], progress: Progress | None = None,
          workers: int | None = None, **limits):
    """Features of image files with visret's parallel extraction; ``progress(done, total)``."""
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, len(records))

    with Embedder(extractor, workers=workers, **limits) as embedder:
        return embedder.run(list(records), advance)


def _inside(folder: Path, name: Any) -> Path:
    """A file the manifest names: a plain name inside the pipeline directory, never a path elsewhere."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        raise VisretError(f"{folder / MANIFEST} names a file outside the pipeline: {name!r}")
    return regular_file(folder / name, "pipeline file", inside=folder)


def _replace_directory(new: Path, target: Path) -> None:
    """Put ``new`` at ``target``; an older pipeline there is moved aside first, then removed."""
    old = target.with_name(f".old-{os.getpid()}-{target.name}")
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)
