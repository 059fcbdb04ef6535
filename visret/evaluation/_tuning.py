"""The tuner: the best recipe for a labelled folder, chosen on validation splits, scored on held-out queries.

The folder is split once (seeded, stratified) into a tuning part and a held-out test part (or
the test part is a folder of its own); nothing of the test part is seen until the end. Inside
the tuning part a seeded validation split scores every candidate by mAP:

1. each base extractor's features are computed once, and the normalisation of each is chosen;
2. blocks are combined by greedy forward selection of parts and weights (``combine``);
3. unsupervised post-processing (PCA-whitening) and, with labels, supervised steps (LDA,
   learned whitening) are tried on the combination;
4. re-ranking methods are tried on the best recipe.

Every candidate is built from visret's own ``post`` and ``combine`` steps, so the winner is a
plain extractor spec. It is then built for real, fitted on the tuning part, and its held-out
mAP is reported next to each base extractor's at its defaults on the same queries.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from visret.images.loaders import find_images
from visret.errors import VisretError
from visret.evaluation._knn import KnnReport, evaluate_features
from visret.features._extractor import DEFAULT_EXTRACTOR, DEFAULT_EXTRACTOR_LABEL
from visret.embedding._extraction import Embedder
from visret.embedding._fitting import fit_extractor, fitting_records
from visret.features.normalization import normalize
from visret.features._lookup import extractor_classes, extractor_from_spec, get_extractor
from visret.evaluation._protocols import stratified_test_mask
from visret.evaluation._recipe import Recipe

log = logging.getLogger("visret")

#: Base extractors tried when none are named (``bovw`` learns a codebook: add it by name). The
#: pretrained networks are tried alone and combined with the handcrafted blocks like any other:
#: SqueezeNet, and EfficientNet-Lite2, whose features an LDA turns into flowers mAP 0.973 against
#: SqueezeNet's 0.917 (issue #33) for 2.7 times SqueezeNet's extraction time.
BASES = ("keras/squeezenet", "keras/efficientnet_lite2", "color-hist", "color-correlogram", "color-moments", "hog", "lbp", "glcm", "gabor", "gist", "shape", "edges", "pixels")
#: Normalisations tried on each base extractor's features (``post`` steps).
BLOCK_STEPS = {"none": [], "l2": ["l2"], "hellinger": ["l1", "sqrt"], "power:0.3": ["power:0.3", "l2"], "standardize": ["standardize", "l2"]}
WEIGHTS = (0.25, 0.5, 1.0, 2.0)
MAX_PARTS = 5
WHITENING = (64, 128, 256)
SUPERVISED = {"lda": ["standardize", "lda:0.1", "l2"], "lda-0.3": ["standardize", "lda:0.3", "l2"],
              "learned-whiten": ["standardize", "learned-whiten", "l2"]}
RERANKING = ("alpha-qe:k=5", "alpha-qe:k=10", "dba:k=3+alpha-qe:k=5", "k-reciprocal:k1=20,k2=6,lambda=0.3")

Progress = Callable[[str, int, int], None]


@dataclass
class Block:
    """One base extractor with its best normalisation: validation mAP, spec, features."""

    score: float
    spec: dict[str, Any]
    features: np.ndarray

    @property
    def unit(self) -> np.ndarray:
        """The features as ``combine`` uses them: each row L2-normalised."""
        return normalize(self.features, "l2")


@dataclass
class Trial:
    stage: str
    candidate: str
    validation_map: float


@dataclass
class TuningResult:
    """The winning recipe, what it scored, and the single extractors it was compared with."""

    recipe: Recipe
    validation_map: float
    held_out: KnnReport
    defaults: dict[str, float]
    trials: list[Trial] = field(default_factory=list)
    seconds: float = 0.0
    finished: bool = True

    @property
    def best_default(self) -> tuple[str, float]:
        name = max(self.defaults, key=self.defaults.get)
        return name, self.defaults[name]

    @property
    def beats_every_default(self) -> bool:
        return self.held_out.map > max(self.defaults.values())

    def to_dict(self) -> dict[str, Any]:
        name, score = self.best_default
        return {
            "recipe": self.recipe.to_dict(),
            "validation_map": self.validation_map,
            "held_out_map": self.held_out.map,
            "held_out": self.held_out.to_dict(),
            "defaults_held_out_map": self.defaults,
            "best_default": {"extractor": name, "map": score},
            "beats_every_default": self.beats_every_default,
            "finished_within_budget": self.finished,
            "seconds": self.seconds,
            "trials": [t.__dict__ for t in self.trials],
        }

    def summary(self) -> str:
        name, score = self.best_default
        verdict = "beats" if self.beats_every_default else "does NOT beat"
        return (f"held-out mAP {self.held_out.map:.4f} (validation {self.validation_map:.4f}); it {verdict} "
                f"every single extractor at its defaults (best: {name}, {score:.4f})")


def _base_spec(name: str) -> dict[str, Any]:
    """The extractor at its defaults, but with raw (unnormalised) output where it has a ``norm``."""
    cls = extractor_classes().get(name)
    if cls is None:
        get_extractor(name)  # the one-line error naming what exists
    return {"name": name, "params": {"norm": "none"} if "norm" in cls.param_defaults() else {}}


def _post(base: dict[str, Any], steps: list[str]) -> dict[str, Any]:
    return base if not steps else {"name": "post", "params": {"extractor": base, "steps": steps}}


def _input_side(spec: dict[str, Any]) -> int:
    size = extractor_from_spec(spec).input_spec.size
    return max(size) if size else 256


class Tuner:
    """Tunes on one labelled folder; ``run`` can be called with different options on the same features."""

    def __init__(
        self,
        data: str | Path,
        *,
        test_dir: str | Path | None = None,
        extractors: Sequence[str] = BASES,
        test_size: float = 0.2,
        validation_size: float = 0.25,
        seed: int = 0,
        workers: int | None = None,
        budget_seconds: float | None = None,
        progress: Progress | None = None,
    ):
        for name, share in (("test size", test_size), ("validation size", validation_size)):
            if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1:
                raise VisretError(f"{name} must be between 0 and 1 (a share of each class), got {share}")
        records = [r for r in find_images(data) if r.label is not None]
        if test_dir is not None:
            test = [r for r in find_images(test_dir) if r.label is not None]
            if not test:
                raise VisretError(f"no labelled images in {test_dir}")
            self.records, self.is_test = records + test, np.array([False] * len(records) + [True] * len(test))
        else:
            self.records = records
            labels = np.array([r.label for r in records])
            if len(set(labels.tolist())) < 2 or len(records) < 4:
                raise VisretError(f"{data} needs labelled images of at least two classes (one sub-folder per class) to tune")
            self.is_test = stratified_test_mask(labels, test_size, seed)
        self.labels = np.array([r.label for r in self.records])
        tuning = ~self.is_test
        self.is_validation = np.zeros(len(self.records), bool)
        try:
            self.is_validation[tuning] = stratified_test_mask(self.labels[tuning], validation_size, seed + 1)
        except ValueError as exc:
            raise VisretError(str(exc)) from None
        if not self.is_validation.any() or not (tuning & ~self.is_validation).any():
            raise VisretError("too few images to carve a validation split out of the tuning part")
        self.bases = [_base_spec(name) for name in extractors]
        self.seed, self.workers, self.progress = seed, workers, progress
        self.budget_seconds = budget_seconds
        self._features: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # ---- features ------------------------------------------------------------------------
    def _report(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)

    def features(self, spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """``(features, rows)`` of every readable record, by ``spec`` fitted on the tuning part.

        A ``post`` spec is its base extractor's features (extracted once) with its steps fitted on
        the same sample of the tuning part that ``fit_extractor`` would read: what the pipeline
        computes, without decoding every image again.
        """
        key = repr(spec)
        if key not in self._features and spec["name"] == "post" and not extractor_from_spec(spec).base.requires_fit:
            post = extractor_from_spec(spec)
            base, rows = self.features(post.base.get_config() if isinstance(spec["params"]["extractor"], str) else spec["params"]["extractor"])
            position = {r.path: i for i, r in enumerate(self.records)}
            row_of = {int(record_row): i for i, record_row in enumerate(rows)}
            tuning = [self.records[r] for r in rows if not self.is_test[r]]
            chosen = [row_of[position[r.path]] for r in fitting_records(post, tuning, self.seed)]
            labels = self.labels[rows][chosen] if post.supervised else None
            try:
                post.fit_features(base[chosen], labels)
            except ValueError as exc:
                raise VisretError(f"cannot fit extractor 'post': {exc}") from None
            self._features[key] = (post.transform_features(base), rows)
        if key not in self._features:
            extractor = extractor_from_spec(spec)
            if extractor.requires_fit:
                fit_extractor(extractor, [r for r, t in zip(self.records, self.is_test) if not t], seed=self.seed)
            done = 0

            def advance(n: int) -> None:
                nonlocal done
                done += n
                self._report(f"embedding {spec['name']}", done, len(self.records))

            with Embedder(extractor, workers=self.workers) as embedder:
                extracted = embedder.run(self.records, advance)
            position = {r.path: i for i, r in enumerate(self.records)}
            rows = np.array([position[r.path] for r in extracted.records], np.int64)
            self._features[key] = (extracted.features, rows)
        return self._features[key]

    # ---- scoring -------------------------------------------------------------------------
    def _validation_map(self, features: np.ndarray, rows: np.ndarray, rerank: str | None = None) -> float:
        """mAP of the validation queries against the rest of the tuning part."""
        keep = ~self.is_test[rows]
        query = self.is_validation[rows][keep]
        X, y = features[keep], self.labels[rows][keep]
        return evaluate_features(X[~query], y[~query], X[query], y[query], k=1, at=(10,), rerank=rerank).map

    def _fitted_post(self, features: np.ndarray, rows: np.ndarray, steps: list[str], base: dict[str, Any]) -> np.ndarray:
        """Post steps fitted on the validation collection (never its queries), applied to every row."""
        if not steps:
            return features
        post = get_extractor("post", extractor=base, steps=steps)
        collection = ~self.is_test[rows] & ~self.is_validation[rows]
        supervised = post.supervised
        post.fit_features(features[collection], self.labels[rows][collection] if supervised else None)
        return post.transform_features(features)

    # ---- search --------------------------------------------------------------------------
    def run(self, supervised: bool = True, rerank: bool = True) -> TuningResult:
        start = time.perf_counter()
        deadline = None if self.budget_seconds is None else start + self.budget_seconds
        trials: list[Trial] = []
        finished = True

        def over_budget() -> bool:
            nonlocal finished
            if deadline is not None and time.perf_counter() > deadline:
                finished = False
            return not finished

        def trial(stage: str, candidate: str, score: float) -> float:
            trials.append(Trial(stage, candidate, score))
            log.info("%s %s: validation mAP %.4f", stage, candidate, score)
            return score

        rows = None
        for number, base in enumerate(self.bases):
            features, base_rows = self.features(base)
            rows = base_rows if rows is None else np.intersect1d(rows, base_rows)
            self._report("embedding", number + 1, len(self.bases))
        blocks: dict[str, Block] = {}
        for number, base in enumerate(self.bases):  # stage 1: each block's normalisation
            features, base_rows = self.features(base)
            aligned = features[np.searchsorted(base_rows, rows)]
            for name, steps in BLOCK_STEPS.items():
                if base["name"] in blocks and over_budget():
                    break
                transformed = self._fitted_post(aligned, rows, steps, base)
                score = trial("normalisation", f"{base['name']}+{name}", self._validation_map(transformed, rows))
                if base["name"] not in blocks or score > blocks[base["name"]].score:
                    blocks[base["name"]] = Block(score, _post(base, steps), transformed)
            self._report("normalisations", number + 1, len(self.bases))
        # stage 2: greedy forward selection of parts and weights, starting from the best block alone
        first = max(blocks, key=lambda name: blocks[name].score)
        chosen, best_score = [(first, 1.0)], trial("combination", f"{first} x1.0", blocks[first].score)
        while len(chosen) < min(MAX_PARTS, len(blocks)) and not over_budget():
            results = []
            for name, weight in [(n, w) for n in blocks if n not in dict(chosen) for w in WEIGHTS]:
                combined = np.concatenate([blocks[n].unit * w for n, w in chosen + [(name, weight)]], axis=1)
                results.append((self._validation_map(combined, rows), name, weight))
            score, name, weight = max(results)
            if score <= best_score + 0.002:
                break
            chosen.append((name, weight))
            best_score = trial("combination", " + ".join(f"{n} x{w}" for n, w in chosen), score)
            self._report("combination", len(chosen), MAX_PARTS)
        if len(chosen) == 1:
            spec, combined = blocks[first].spec, blocks[first].features
        else:
            spec = {"name": "combine", "params": {
                "parts": [blocks[n].spec for n, _ in chosen], "weights": [w for _, w in chosen],
                "size": max(_input_side(blocks[n].spec) for n, _ in chosen)}}
            combined = np.concatenate([blocks[n].unit * w for n, w in chosen], axis=1)
        best = (best_score, spec, combined, None)
        options = {f"pca-whiten:{n}": ["pca-whiten:" + str(n), "l2"] for n in WHITENING
                   if n < combined.shape[1] and n < int((~self.is_test & ~self.is_validation).sum())}
        if supervised:
            options.update(SUPERVISED)
        for name, steps in options.items():  # stage 3: post-processing of the combination
            if over_budget():
                break
            transformed = self._fitted_post(combined, rows, steps, spec)
            score = trial("post-processing", name, self._validation_map(transformed, rows))
            if score > best[0]:
                best = (score, _post(spec, steps), transformed, None)
        if rerank:  # stage 4: re-ranking of the best so far
            for method in RERANKING:
                if over_budget():
                    break
                score = trial("re-ranking", method, self._validation_map(best[2], rows, method))
                if score > best[0] + 0.002:
                    best = (score, best[1], best[2], method)
        recipe = Recipe(best[1], metric="l2", rerank=best[3])
        held_out = self._held_out(recipe)
        defaults = self._defaults(rows)
        result = TuningResult(recipe, best[0], held_out, defaults, trials, time.perf_counter() - start, finished)
        recipe.scores = {"validation_map": round(best[0], 4), "held_out_map": round(held_out.map, 4),
                         "best_default": dict(zip(("extractor", "map"), result.best_default)),
                         "supervised": bool(extractor_from_spec(recipe.extractor).supervised)}
        return result

    def _base(self, name: str) -> dict[str, Any]:
        return next(base for base in self.bases if base["name"] == name)

    # ---- held-out scores ----------------------------------------------------------------
    def _held_out_report(self, features: np.ndarray, rows: np.ndarray, **options) -> KnnReport:
        """The test queries of ``rows`` searched against their tuning part."""
        test, y = self.is_test[rows], self.labels[rows]
        return evaluate_features(features[~test], y[~test], features[test], y[test], **options)

    def _held_out(self, recipe: Recipe) -> KnnReport:
        """The recipe built for real: fitted on the tuning part, its test queries searched against it."""
        report = self._held_out_report(*self.features(recipe.extractor), metric=recipe.metric, rerank=recipe.rerank)
        report.supervised = bool(extractor_from_spec(recipe.extractor).supervised)
        return report

    def _defaults(self, rows: np.ndarray) -> dict[str, float]:
        """Held-out mAP of each base extractor at its own defaults (its default normalisation), and
        of ``visret index``'s default when its parts are among the bases."""
        out = {}
        if set(DEFAULT_EXTRACTOR["params"]["parts"]) <= {base["name"] for base in self.bases}:
            out[f"default: {DEFAULT_EXTRACTOR_LABEL}"] = self._held_out_report(*self.features(DEFAULT_EXTRACTOR)).map
        for base in self.bases:
            features, base_rows = self.features(base)
            norm = getattr(extractor_from_spec(base["name"]), "norm", "none")
            out[base["name"]] = self._held_out_report(normalize(features, norm), base_rows).map
        return out


def tune(data: str | Path, *, supervised: bool = True, rerank: bool = True, **options) -> TuningResult:
    """Tune a recipe on a labelled folder (see ``Tuner`` for the options)."""
    return Tuner(data, **options).run(supervised=supervised, rerank=rerank)
