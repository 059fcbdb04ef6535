"""Choosing a head's hyper-parameters on the validation part, never on the test part.

Each head class lists what is worth trying in ``search_space`` (the SVM's C, the forest's
depth, k for k-NN); parameters the user set are kept as given. Every candidate is fitted on the
training features and scored by validation accuracy; the best (the first of equals, so the
listed order breaks ties) is refitted on training and validation features together.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

import numpy as np

from visret.features._classifier import Classifier
from visret.errors import VisretError
from visret.features._lookup import classifier_classes, get_classifier

#: The most candidates tried for one head.
MAX_CANDIDATES = 16


def candidates(head: str, fixed: dict[str, Any]) -> list[dict[str, Any]]:
    """Parameter sets to try: the product of the head's search space over the unset parameters."""
    cls = classifier_classes().get(head)
    space = {k: v for k, v in (getattr(cls, "search_space", None) or {}).items() if k not in fixed}
    combos = [dict(zip(space, values)) for values in itertools.product(*space.values())] or [{}]
    return [{**fixed, **combo} for combo in combos[:MAX_CANDIDATES]]


def select_head(
    head: str, fixed: dict[str, Any], train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Classifier, dict[str, Any], list[dict[str, Any]], float | None]:
    """``(head refitted on train + validation, chosen parameters, every candidate's score, best score)``."""
    (x_train, y_train), (x_val, y_val) = train, val
    if len(np.unique(y_train)) < 2:
        raise VisretError("the training part has fewer than two classes with readable images")
    options = candidates(head, fixed)
    selection, best, best_score = [], options[0], None
    if len(options) > 1 and len(x_val):
        for n, params in enumerate(options, start=1):
            score = float(np.mean(_fit(head, params, x_train, y_train).predict(x_val) == y_val))
            selection.append({"params": params, "validation_accuracy": round(score, 6)})
            if best_score is None or score > best_score:
                best, best_score = params, score
            if progress is not None:
                progress(n, len(options) + 1)
    final = _fit(head, best, np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val]))
    if progress is not None:
        progress(len(options) + 1, len(options) + 1)
    return final, best, selection, best_score


def _fit(head: str, params: dict[str, Any], X: np.ndarray, y: np.ndarray) -> Classifier:
    try:
        return get_classifier(head, **params).fit(X, y)
    except ValueError as exc:
        raise VisretError(f"cannot train head {head!r} with {params}: {exc}") from None
