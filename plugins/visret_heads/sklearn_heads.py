"""scikit-learn heads on embeddings, saved with skops (a format that never unpickles).

A head with ``standardize=True`` scales each feature to zero mean and unit variance (fitted on
the training features) before its estimator: it helps low-dimensional histograms and logistic
regression, and slows a linear SVM on HOG-like features tenfold, so each head has its own default
and the SVM tries both on the validation part. Loading accepts exactly the types each head is
made of and refuses a file holding anything else.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from visret import Classifier
from visret.features.params import check_bool, check_positive_int, check_positive_number


class SklearnHead(Classifier):
    """Shared fit / predict / save / load around one scikit-learn estimator (``estimator_``)."""

    #: The extra types (beyond skops' defaults) a saved head of this kind may contain.
    trusted_types: ClassVar[tuple[str, ...]] = ()
    file_suffix: ClassVar[str] = ".skops"
    standardize: bool = False

    def make_estimator(self, smallest_class: int):
        """The estimator to fit, knowing how many examples the smallest class has."""
        raise NotImplementedError

    def fit(self, X, y) -> SklearnHead:
        y = np.asarray(y).astype(str)
        estimator = self.make_estimator(int(np.unique(y, return_counts=True)[1].min()) if len(y) else 0)
        if self.standardize:
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            estimator = make_pipeline(StandardScaler(), estimator)
        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)  # an iteration cap reached: said by converged_, not on stderr
            self.estimator_ = estimator.fit(np.asarray(X, np.float32), y)
        self.converged_ = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        for other in (w for w in caught if not issubclass(w.category, ConvergenceWarning)):
            warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
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
    """Multinomial logistic regression (on standardised features by default)."""

    name: ClassVar[str] = "logistic"
    search_space: ClassVar[dict[str, tuple]] = {"C": (1.0, 0.1, 10.0)}

    def __init__(self, C: float = 1.0, max_iter: int = 1000, standardize: bool = True):
        self.C = C
        self.max_iter = max_iter
        self.standardize = standardize

    def validate(self) -> None:
        check_positive_int("max_iter", self.max_iter)
        check_positive_number("C", self.C)
        check_bool("standardize", self.standardize)

    def make_estimator(self, smallest_class: int):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=self.C, max_iter=self.max_iter)


class LinearSVMHead(SklearnHead):
    """Linear support vector machine, its scores calibrated into probabilities (Platt scaling)."""

    name: ClassVar[str] = "linear-svm"
    search_space: ClassVar[dict[str, tuple]] = {"C": (1.0, 0.01, 0.1, 10.0)}
    trusted_types: ClassVar[tuple[str, ...]] = (
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
    )

    def __init__(self, C: float = 1.0, standardize: bool = False):
        self.C = C
        self.standardize = standardize

    def validate(self) -> None:
        check_positive_number("C", self.C)
        check_bool("standardize", self.standardize)

    def make_estimator(self, smallest_class: int):
        from sklearn.svm import LinearSVC

        return calibrated(LinearSVC(C=self.C), smallest_class)


def calibrated(svm, smallest_class: int):
    """An SVM whose scores are calibrated into probabilities by Platt scaling, cross-fitted in up to
    three folds (fewer when the smallest class has fewer examples)."""
    from sklearn.calibration import CalibratedClassifierCV

    if smallest_class < 2:
        raise ValueError("each class needs at least 2 training images to calibrate an SVM's probabilities")
    return CalibratedClassifierCV(svm, cv=min(3, smallest_class))


def _check_gamma(gamma) -> None:
    if gamma in ("scale", "auto"):
        return
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or gamma <= 0:
        raise ValueError(f"gamma must be scale, auto or a positive number, got {gamma!r}")


class SVMHead(SklearnHead):
    """Support vector machine with an RBF kernel, its scores calibrated into probabilities."""

    name: ClassVar[str] = "svm"
    search_space: ClassVar[dict[str, tuple]] = {"C": (10.0, 1.0, 100.0), "standardize": (False, True)}
    trusted_types: ClassVar[tuple[str, ...]] = LinearSVMHead.trusted_types

    def __init__(self, C: float = 10.0, gamma: float | str = "scale", standardize: bool = False):
        self.C = C
        self.gamma = gamma
        self.standardize = standardize

    def validate(self) -> None:
        check_positive_number("C", self.C)
        _check_gamma(self.gamma)
        check_bool("standardize", self.standardize)

    def make_estimator(self, smallest_class: int):
        from sklearn.svm import SVC

        return calibrated(SVC(C=self.C, gamma=self.gamma), smallest_class)


class RandomForestHead(SklearnHead):
    """Random forest of decision trees."""

    name: ClassVar[str] = "random-forest"
    search_space: ClassVar[dict[str, tuple]] = {"max_depth": (None, 20, 10)}
    trusted_types: ClassVar[tuple[str, ...]] = ("sklearn.tree._tree.Tree",)

    def __init__(self, trees: int = 200, max_depth: int | None = None, seed: int = 0):
        self.trees = trees
        self.max_depth = max_depth
        self.seed = seed

    def validate(self) -> None:
        check_positive_int("trees", self.trees)
        if self.max_depth is not None:
            check_positive_int("max_depth", self.max_depth)

    def make_estimator(self, smallest_class: int):
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=self.trees, max_depth=self.max_depth, random_state=self.seed, n_jobs=-1)
