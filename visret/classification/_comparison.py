"""Comparing classification pipelines on one split: ``hog+linear-svm`` against ``cnn/lenet5``.

Every pipeline is trained by ``train_pipeline`` with the same seed, so all split the folder into the
same train, validation and test images and are tested on the same held-out part. Each uses the
training and validation images its own way: a head chooses its parameters on the validation part
and is refitted on both; a CNN learns from the training part and stops early on the validation
part. The test part is never seen before testing; the leaderboard's "best" is only the row with
the highest test accuracy, not a choice made on it.

Pipelines are written ``EXTRACTOR+HEAD`` (a head on an extractor's features), ``NETWORK`` (a CNN
trained from scratch), ``NETWORK+transfer`` (a pretrained network frozen, a new head trained) or
``NETWORK+fine-tune:N`` (then its last N layers trained too). Parameters go in parentheses:
``hog(pixels_per_cell=4)+svm(C=10)``, ``cnn/vgg-small(size=32)``, lists as JSON:
``combine(parts=["gist","hog"])+svm``.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from visret.errors import VisretError
from visret.evaluation._leaderboard import Leaderboard
from visret.features.params import parse_params
from visret.classification._pipeline import Pipeline
from visret.classification._report import ClassificationReport
from visret.classification._split import train_and_test_folders
from visret.classification._training import DEFAULT_HEAD, pipeline_kinds, train_pipeline

#: Leaderboard columns where lower is better.
LOWER_IS_BETTER = {"train_s", "model_bytes"}
_PART = re.compile(r"^\s*([^()\s]+)\s*(?:\((.*)\))?\s*$")


@dataclass
class PipelineSpec:
    """One pipeline to train, as written (``text``) and as ``train_pipeline`` arguments."""

    text: str
    arguments: dict[str, Any]

    @property
    def trains_network(self) -> bool:
        return "model" in self.arguments


def split_top_level(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside brackets and quotes."""
    parts, depth, quoted, current = [], 0, False, ""
    for char in text:
        if char == '"':
            quoted = not quoted
        elif not quoted:
            depth += (char in "([{") - (char in ")]}")
        if char == separator and depth == 0 and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    return [p.strip() for p in parts + [current] if p.strip()]


def _name_and_params(text: str) -> tuple[str, dict[str, Any]]:
    match = _PART.match(text)
    if not match:
        raise VisretError(f"cannot read {text!r}: write NAME or NAME(key=value,...)")
    name, inner = match.groups()
    try:
        return name, parse_params(split_top_level(inner, ",")) if inner else {}
    except ValueError as exc:
        raise VisretError(f"{text}: {exc}") from None


def parse_pipeline(text: str) -> PipelineSpec:
    """``hog+svm(C=10)``, ``cnn/lenet5``, ``keras/mobilenet_v2+transfer``, ``keras/resnet50+fine-tune:30``."""
    parts = split_top_level(text, "+")
    if not parts or len(parts) > 2:
        raise VisretError(f"a pipeline is EXTRACTOR+HEAD or NETWORK[+transfer|+fine-tune:N], got {text!r}")
    name, params = _name_and_params(parts[0])
    second = parts[1] if len(parts) == 2 else None
    networks = [kind for kind in pipeline_kinds().values() if kind.trains(name)]
    if second is not None and (second == "transfer" or second.startswith("fine-tune")):
        if not networks:
            raise VisretError(f"{text}: {name!r} is not a network that visret trains, so it cannot be {second}")
        arguments: dict[str, Any] = {"model": name, "params": params, "transfer": True}
        if second.startswith("fine-tune"):
            layers = second.partition(":")[2] or "0"
            if not layers.isdigit():
                raise VisretError(f"{text}: fine-tune takes a number of layers, like fine-tune:30")
            arguments["fine_tune"] = int(layers)
        return PipelineSpec(text, arguments)
    if second is None and networks:
        return PipelineSpec(text, {"model": name, "params": params})
    head, head_params = _name_and_params(second) if second is not None else (DEFAULT_HEAD, {})
    return PipelineSpec(text, {"extractor": name, "params": params, "head": head, "head_params": head_params})


def check_spec(spec: PipelineSpec) -> None:
    """Raise ``VisretError`` now for an unknown extractor, head or parameter of ``spec``."""
    from visret.features._lookup import resolve_extractor
    from visret.features._lookup import get_classifier

    arguments = spec.arguments
    if not spec.trains_network:
        resolve_extractor(arguments["extractor"], arguments["params"])
        get_classifier(arguments["head"], **arguments["head_params"])


def parse_pipelines(text: str) -> list[PipelineSpec]:
    specs = [parse_pipeline(part) for part in split_top_level(text, ",")]
    if not specs:
        raise VisretError("name at least one pipeline, e.g. --pipelines hog+linear-svm,cnn/lenet5")
    return specs


@dataclass
class PipelineComparison:
    """One report per pipeline, all on the same split."""

    settings: dict[str, Any]
    reports: dict[str, ClassificationReport] = field(default_factory=dict)
    pipelines: dict[str, Pipeline] = field(default_factory=dict, repr=False)
    #: Pipelines whose saved report a run with the same settings had left (not trained again).
    reused: list[str] = field(default_factory=list)
    #: Why the comparison stopped before every pipeline was trained (its time budget), else None.
    stopped: str | None = None

    def rows(self) -> list[dict[str, Any]]:
        return [{"pipeline": name, **report.headline()} for name, report in self.reports.items()]

    def leaderboard(self) -> Leaderboard:
        return Leaderboard(self.rows(), LOWER_IS_BETTER)

    def best(self) -> str:
        """The pipeline with the highest test accuracy (the first of equals)."""
        return max(self.reports, key=lambda name: self.reports[name].test_accuracy or 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings, "leaderboard": self.rows(), "reused": self.reused, "stopped": self.stopped,
            "reports": {name: report.to_dict() for name, report in self.reports.items()},
        }

    def to_markdown(self) -> str:
        return self.leaderboard().to_markdown()

    def to_csv(self) -> str:
        return self.leaderboard().to_csv()

    def _repr_html_(self) -> str:
        return self.leaderboard().to_html()


def compare_pipelines(
    data: str | Path,
    pipelines: str | Sequence[str | PipelineSpec],
    *,
    test_data: str | Path | None = None,
    val_split: float = 0.1,
    test_split: float = 0.2,
    seed: int = 0,
    tta: int = 0,
    workers: int | None = None,
    save_dir: str | Path | None = None,
    budget_minutes: float | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    on_result: Callable[[PipelineComparison], None] | None = None,
    **network_options: Any,
) -> PipelineComparison:
    """Train and test every pipeline on the same split; ``network_options`` (``epochs``,
    ``augment``, ``mixup_alpha``...) apply to the CNNs.

    With ``save_dir`` each pipeline is saved there with its report as soon as it is tested
    (``NAME.report.json``), so an interrupted comparison keeps what finished, and running it again
    with the same settings takes those reports instead of training again. ``budget_minutes`` is shared:
    a CNN stops at the end of the last epoch that fits, and pipelines not started by then are left out
    (``stopped`` says so). ``on_result(comparison)`` is called after each pipeline.
    """
    specs = parse_pipelines(pipelines) if isinstance(pipelines, str) else [
        spec if isinstance(spec, PipelineSpec) else parse_pipeline(spec) for spec in pipelines
    ]
    names = [spec.text for spec in specs]
    if len(set(names)) != len(names):
        raise VisretError("a pipeline is named twice")
    for spec in specs:  # every name checked before anything trains
        check_spec(spec)
    if budget_minutes is not None and not budget_minutes > 0:
        raise VisretError(f"the time budget must be positive, got {budget_minutes}")
    train_part, test_part = train_and_test_folders(data, test_data)  # the protocol used, as the header says it
    held_out = {"test": str(test_part)} if test_part is not None else {"test_split": test_split}
    result = PipelineComparison(settings={
        "data": str(train_part), **held_out, "val_split": val_split, "seed": seed, **({"tta": tta} if tta else {}),
        **{k: v for k, v in network_options.items() if v is not None and k != "resume"},
    })
    deadline = None if budget_minutes is None else time.monotonic() + budget_minutes * 60
    left_out = []
    for number, spec in enumerate(specs, start=1):
        out = None
        if save_dir is not None:
            slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", spec.text).strip("-")
            out = Path(save_dir) / (slug + (".keras" if spec.trains_network else ".pipeline"))
            done = _finished_report(out, result.settings)
            if done is not None:
                result.reports[spec.text] = done
                result.reused.append(spec.text)
                continue
            _report_file(out).unlink(missing_ok=True)  # trained again: an older report is not this pipeline's
        left = None if deadline is None else (deadline - time.monotonic()) / 60
        if left is not None and left <= 0:
            left_out.append(spec.text)  # saved reports of later pipelines are still taken
            continue
        label = f"[{number}/{len(specs)}] {spec.text}"
        step = (lambda stage, done, total, label=label: progress(f"{label}: {stage}", done, total)) if progress else None
        options = {k: v for k, v in network_options.items() if v is not None and k not in spec.arguments} if spec.trains_network else {}
        if spec.trains_network and left is not None:
            options["budget_minutes"] = left
        pipeline, report = train_pipeline(
            data, **spec.arguments, test_data=test_data, val_split=val_split, test_split=test_split, seed=seed,
            tta=tta, workers=workers, out=out, progress=step, **options,
        )
        report.pipeline = spec.text
        result.reports[spec.text] = report
        result.pipelines[spec.text] = pipeline
        if out is not None and report.stopped is None:  # one cut short by the budget is trained on next time
            _write_report(out, result.settings, report)
        if on_result is not None:
            on_result(result)
    if left_out:
        result.stopped = f"time budget of {budget_minutes:g} min reached: {', '.join(left_out)} not trained"
    if not result.reports:
        raise VisretError(result.stopped or "no pipeline was trained")
    return result


def _report_file(out: Path) -> Path:
    return out.with_name(out.name + ".report.json")


def _write_report(out: Path, settings: dict[str, Any], report: ClassificationReport) -> None:
    target = _report_file(out)
    temporary = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    temporary.write_text(json.dumps({"settings": settings, "report": report.to_record()}, default=str))
    os.replace(temporary, target)


def _finished_report(out: Path, settings: dict[str, Any]) -> ClassificationReport | None:
    """The report of a pipeline a comparison with the same settings already trained, saved and tested."""
    try:
        saved = json.loads(_report_file(out).read_text())
        if saved.get("settings") != json.loads(json.dumps(settings, default=str)) or not out.exists():
            return None
        return ClassificationReport.from_record(saved["report"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
