"""The ``dense`` head: a small neural network trained with Keras on frozen features.

Features are standardised by a ``Normalization`` layer adapted on the training features, then an
optional hidden ReLU layer with dropout, then softmax; a tenth of the training features stops
training early (best weights kept). Saved as ``.keras`` (loaded in safe mode) and a JSON file of
its parameters and classes beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np

from visret import Classifier, VisretError
from visret.features.params import check_positive_int, check_positive_number
from visret_keras import runtime


class DenseHead(Classifier):
    """Softmax (after an optional hidden layer) trained with Keras on standardised features."""

    name: ClassVar[str] = "dense"
    file_suffix: ClassVar[str] = ".keras"
    search_space: ClassVar[dict[str, tuple]] = {"hidden": (256, 0)}

    def __init__(self, hidden: int = 256, dropout: float = 0.3, epochs: int = 100, learning_rate: float = 1e-3,
                 batch_size: int = 64, patience: int = 8, seed: int = 0):
        self.hidden = hidden
        self.dropout = dropout
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.patience = patience
        self.seed = seed

    def validate(self) -> None:
        check_positive_int("hidden", self.hidden, minimum=0)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        for name in ("epochs", "batch_size", "patience"):
            check_positive_int(name, getattr(self, name))
        check_positive_number("learning_rate", self.learning_rate)
        check_positive_int("seed", self.seed, minimum=0)

    def _network(self, X: np.ndarray, n_classes: int):
        keras = runtime.keras()
        inputs = keras.Input((X.shape[1],), name="features")
        scale = keras.layers.Normalization(name="standardise")
        scale.adapt(X)
        x = scale(inputs)
        if self.hidden:
            x = keras.layers.Dense(self.hidden, activation="relu", name="hidden")(x)
            x = keras.layers.Dropout(self.dropout, seed=self.seed, name="hidden_dropout")(x)
        outputs = keras.layers.Dense(n_classes, activation="softmax", name="head")(x)
        return keras.Model(inputs, outputs, name="dense_head")

    def fit(self, X, y) -> DenseHead:
        keras = runtime.keras()
        X = np.asarray(X, np.float32)
        self.classes_, codes = np.unique(np.asarray(y).astype(str), return_inverse=True)
        keras.utils.set_random_seed(self.seed)
        self.model_ = self._network(X, len(self.classes_))
        self.model_.compile(optimizer=keras.optimizers.Adam(self.learning_rate), loss="sparse_categorical_crossentropy")
        order = np.random.default_rng(self.seed).permutation(len(X))
        n_val = max(1, len(X) // 10) if len(X) >= 20 else 0
        val, train = order[:n_val], order[n_val:]
        stop = keras.callbacks.EarlyStopping(monitor="val_loss" if n_val else "loss", patience=self.patience, restore_best_weights=True)
        self.model_.fit(
            X[train], codes[train], validation_data=(X[val], codes[val]) if n_val else None, epochs=self.epochs,
            batch_size=self.batch_size, callbacks=[stop], verbose=0,
        )
        return self

    def predict_proba(self, X) -> np.ndarray:
        return np.asarray(self.model_.predict(np.asarray(X, np.float32), batch_size=1024, verbose=0))

    def save(self, path: str | Path) -> None:
        path = Path(path)
        self.model_.save(path)
        path.with_suffix(".json").write_text(json.dumps({**self.get_config(), "classes": self.classes_.tolist()}))

    @classmethod
    def load(cls, path: str | Path) -> DenseHead:
        path = Path(path)
        try:
            config = json.loads(path.with_suffix(".json").read_text())
        except (OSError, ValueError) as exc:
            raise VisretError(f"cannot read the parameters of {path}: {exc}") from None
        if config.get("name") != cls.name:
            raise ValueError(f"{path} holds a {config.get('name')!r} head, not {cls.name!r}")
        head = cls(**config["params"])
        head.model_ = runtime.load_model(path)
        head.classes_ = np.asarray(config["classes"])
        return head
