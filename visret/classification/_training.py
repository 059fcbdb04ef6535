"""``train_pipeline`` and ``load_pipeline``: one way to train, save, test and reopen any pipeline.

Training goes through the pipeline's kind (``features`` for an extractor with a head, the kind
that ``trains`` a named CNN); everything after it is shared, so every pipeline is split, saved
and tested on its held-out part the same way, and its report has the same fields.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Sequence

from visret.images._folders import ImageRecord
from visret.errors import VisretError
from visret.features._extractor import FeatureExtractor
from visret.classification._pipeline import PIPELINES, Pipeline, StageProgress, saved_bytes, stage
from visret.classification._report import ClassificationReport
from visret.classification._split import make_split

#: The pipeline trained when only a folder is given: pretrained ImageNet features (no download) and a
#: linear SVM. Held out, it beats HOG + linear SVM on flowers (0.944 vs 0.362), MNIST (0.984 vs
#: 0.978) and Animal-MNIST (0.982 vs 0.939) (docs/benchmarks.md); ``-e hog`` is the classic baseline.
DEFAULT_EXTRACTOR = "keras/squeezenet"
DEFAULT_HEAD = "linear-svm"


def pipeline_kinds() -> dict[str, type[Pipeline]]:
    return {name: cls for name, (cls, _) in sorted(PIPELINES.classes().items())}


def kind_for_model(model: str) -> type[Pipeline]:
    """The kind of pipeline that trains the network named ``model`` (``cnn/lenet5``, ``keras/...``)."""
    for kind in pipeline_kinds().values():
        if kind.trains(model):
            return kind
    raise VisretError(f"no installed plugin trains {model!r} as a network; use --extractor and --head for a feature pipeline")


def load_pipeline(path: str | Path) -> Pipeline:
    """Open a saved pipeline of any kind: a directory from a feature pipeline, a ``.keras`` CNN."""
    path = Path(path).expanduser()
    if not path.exists():
        raise VisretError(f"{path} does not exist")
    for kind in pipeline_kinds().values():
        if kind.recognises(path):
            return kind.load(path)
    raise VisretError(f"{path} is not a saved pipeline (a directory from 'visret train --extractor', or a .keras model)")


def train_pipeline(
    data: str | Path | Sequence[ImageRecord],
    extractor: str | dict[str, Any] | FeatureExtractor | None = None,
    head: str | None = None,
    *,
    model: str | None = None,
    params: dict[str, Any] | None = None,
    head_params: dict[str, Any] | None = None,
    test_data: str | Path | Sequence[ImageRecord] | None = None,
    val_split: float = 0.1,
    test_split: float = 0.2,
    seed: int = 0,
    out: str | Path | None = None,
    tta: int = 0,
    workers: int | None = None,
    progress: StageProgress | None = None,
    **options: Any,
) -> tuple[Pipeline, ClassificationReport]:
    """Train a pipeline on a labelled folder and test it on its held-out part.

    A feature pipeline (``extractor`` + ``head``, by default ``keras/squeezenet`` + ``linear-svm``) or, with
    ``model``, a CNN (``options`` are its training options: ``epochs``, ``augment``, ``transfer``...).
    The split is seeded and stratified (``test_data`` replaces the test part); the head's
    hyper-parameters or the CNN's early stopping use the validation part only. The pipeline is
    saved to ``out`` when given. Returns ``(pipeline, report)``.
    """
    from visret.features._lookup import resolve_extractor
    from visret.features._lookup import get_classifier

    from visret.classification._tta import max_views

    flips = "horizontal" in str(options.get("augment", ""))
    if not isinstance(tta, int) or not 0 <= tta <= max_views(flips):
        raise VisretError(f"test-time augmentation takes 0 to {max_views(flips)} views{' with flips' if flips else ''}, got {tta}")
    if model is not None:
        if extractor is not None or head is not None or head_params:
            raise VisretError("give --model (a CNN to train) or --extractor/--head (a feature pipeline), not both")
        kind = kind_for_model(model)
        settings = {"model": model, "params": params or {}, "seed": seed, **options}
    else:
        if options:
            raise VisretError(f"{', '.join(sorted(options))} apply to training a network (--model) only")
        kind = pipeline_kinds()["features"]
        head = head or DEFAULT_HEAD
        get_classifier(head, **(head_params or {}))  # an unknown head or a bad parameter fails before any work
        settings = {
            "extractor": resolve_extractor(extractor or DEFAULT_EXTRACTOR, params), "head": head,
            "head_params": head_params or {}, "workers": workers,
        }
    split = make_split(data, test_data, val_split, test_split, seed)
    with tempfile.TemporaryDirectory(prefix="visret-pipeline-") as scratch:
        target = Path(out) if out is not None else Path(scratch) / ("model.keras" if model else "model.pipeline")
        if target.exists() and not kind.recognises(target):
            raise VisretError(f"{target} exists and is not a saved pipeline; not overwriting it")
        if not target.exists():  # files beside a pipeline that is not there are not ours to replace
            taken = [p for p in kind.companion_files(target) if p.exists() or p.is_symlink()]
            if taken:
                raise VisretError(f"training would overwrite {taken[0]}, which no saved pipeline at {target} wrote; move it or choose another --out")
        target.parent.mkdir(parents=True, exist_ok=True)
        pipeline, facts = kind.train(split, settings, target, progress)
        pipeline.split = split.to_dict(pipeline=pipeline.describe())
        saved = pipeline.save(target)
        model_bytes = saved_bytes(saved)
    report = test_on(pipeline, split.test, tta, progress, workers)
    report.sizes = {**split.sizes(), **facts.pop("sizes", {}), "test": report.sizes.get("test", 0)}
    report.model_bytes = model_bytes
    files = facts.pop("files", {})
    report.files = {"model": str(saved), **files} if out is not None else {}
    for key, value in facts.items():
        setattr(report, key, value)
    return pipeline, report


def test_on(pipeline: Pipeline, records: Sequence[ImageRecord], tta: int, progress: StageProgress | None, workers: int | None = None) -> ClassificationReport:
    """The held-out report: plain predictions, and with ``tta`` views too when asked."""
    if not records:
        classes = [str(c) for c in pipeline.classes_]
        return ClassificationReport(pipeline.describe(), classes, None, None, None, {}, [], sizes={"test": 0}, tta=tta)
    report = pipeline.evaluate(records, 0, stage(progress, "testing"), workers)
    if tta:
        report.test_accuracy_tta = pipeline.evaluate(records, tta, stage(progress, f"testing with {tta} views"), workers).test_accuracy
        report.tta = tta
    return report
