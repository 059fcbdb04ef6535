"""scikit-learn heads on embeddings, saved with skops (a format that never unpickles).

Loading accepts exactly the types each head is made of and refuses a file holding anything else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from visret import Classifier
from visret.params import check_positive_int


class SklearnHead(Classifier):
    """Shared fit / predict / save / load around one scikit-learn estimator (``estimator_``)."""

    #: The extra types (beyond skops' defaults) a saved head of this kind may contain.
    trusted_types: ClassVar[tuple[str, ...]] = ()

    def make_estimator(self):
        raise NotImplementedError

    def fit(self, X, y) -> SklearnHead:
        self.estimator_ = self.make_estimator().fit(np.asarray(X, np.float32), np.asarray(y).astype(str))
        self.classes_ = np.asarray(self.estimator_.classes_)
        return self

    def predict_proba(self, X) -> np.ndarray:
        return self.estimator_.predict_proba(np.asarray(X, np.float32))

    def save(self, path: str | Path) -> None:
        import skops.io

        skops.io.dump({"config": json.dumps(self.get_config()), "estimator": self.estimator_}, path)

    @classmethod
    def load(cls, path: str | Path) -> SklearnHead:
        import skops.io

        untrusted = set(skops.io.get_untrusted_types(file=path))
        unexpected = untrusted - set(cls.trusted_types)
        if unexpected:
            raise ValueError(f"{path} holds types a {cls.name} head does not use: {', '.join(sorted(unexpected))}")
        data = skops.io.load(path, trusted=sorted(untrusted))
        config: dict[str, Any] = json.loads(data["config"])
        if config.get("name") != cls.name:
            raise ValueError(f"{path} holds a {config.get('name')!r} head, not {cls.name!r}")
        head = cls(**config["params"])
        head.estimator_ = data["estimator"]
        head.classes_ = np.asarray(head.estimator_.classes_)
        return head


class LogisticHead(SklearnHead):
    """Multinomial logistic regression on standardised embeddings."""

    name: ClassVar[str] = "logistic"

    def __init__(self, C: float = 1.0, max_iter: int = 1000):
        self.C = C
        self.max_iter = max_iter

    def validate(self) -> None:
        check_positive_int("max_iter", self.max_iter)
        if not isinstance(self.C, (int, float)) or self.C <= 0:
            raise ValueError(f"C must be a positive number, got {self.C!r}")

    def make_estimator(self):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=self.C, max_iter=self.max_iter)


class LinearSVMHead(SklearnHead):
    """Linear support vector machine, its scores calibrated into probabilities (Platt scaling)."""

    name: ClassVar[str] = "linear-svm"
    trusted_types: ClassVar[tuple[str, ...]] = (
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
    )

    def __init__(self, C: float = 1.0):
        self.C = C

    def validate(self) -> None:
        if not isinstance(self.C, (int, float)) or self.C <= 0:
            raise ValueError(f"C must be a positive number, got {self.C!r}")

    def make_estimator(self):
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import LinearSVC

        return CalibratedClassifierCV(LinearSVC(C=self.C), cv=3)


class RandomForestHead(SklearnHead):
    """Random forest of decision trees."""

    name: ClassVar[str] = "random-forest"
    trusted_types: ClassVar[tuple[str, ...]] = ("sklearn.tree._tree.Tree",)

    def __init__(self, trees: int = 200, max_depth: int | None = None, seed: int = 0):
        self.trees = trees
        self.max_depth = max_depth
        self.seed = seed

    def validate(self) -> None:
        check_positive_int("trees", self.trees)
        if self.max_depth is not None:
            check_positive_int("max_depth", self.max_depth)

    def make_estimator(self):
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=self.trees, max_depth=self.max_depth, random_state=self.seed, n_jobs=-1)
