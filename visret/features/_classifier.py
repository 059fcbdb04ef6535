"""The ``Classifier`` interface for heads trained on embeddings (k-NN, scikit-learn, Keras)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from visret._named_files import read_npz
from visret.features.params import Configurable


class Classifier(Configurable):
    """scikit-learn style head: ``fit(X, y)`` returns self, learned state ends in ``_``.

    The default ``save``/``load`` write one ``.npz`` file holding the config as JSON and the
    arrays from ``get_state``; it is read with ``allow_pickle=False``. Heads whose state is not
    plain arrays override both.
    """

    name: ClassVar[str] = ""
    #: The file ending ``save`` writes (a pipeline names its head file by it).
    file_suffix: ClassVar[str] = ".npz"
    #: Values worth trying per parameter: a pipeline chooses among them on its validation part.
    search_space: ClassVar[dict[str, tuple]] = {}

    def fit(self, X: np.ndarray, y: np.ndarray) -> Classifier:
        raise NotImplementedError

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, shape ``(n, len(classes_))``."""
        raise NotImplementedError

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def get_state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def save(self, path: str | Path) -> None:
        config = json.dumps(self.get_config())
        with open(path, "wb") as fh:
            np.savez(fh, __config__=np.array(config), **self.get_state())

    @classmethod
    def load(cls, path: str | Path) -> Classifier:
        state = read_npz(Path(path))
        config: dict[str, Any] = json.loads(str(state.pop("__config__")))
        if config.get("name") != cls.name:
            raise ValueError(f"{path} holds a {config.get('name')!r} classifier, not {cls.name!r}")
        head = cls(**config["params"])
        head.set_state(state)
        return head
