"""Why fine-tuning SqueezeNet on flowers starts behind the linear heads: the softmax head alone.

Run from the repository root: ``.venv/bin/python benchmarks/transfer_heads.py`` (about a minute). On
Oxford 17 Flowers split 1, SqueezeNet's fire9 features are extracted once (frozen, no augmentation)
and the head ``visret train --model ... --transfer`` puts on them (dropout 0.2, a softmax Dense layer,
Adam 1e-3, early stopping on 10 % of the training part) is trained on them as they are, square-rooted and
L2-normalised, and standardised, with and without a BatchNormalization layer; held-out accuracy each.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import materialise  # noqa: E402
from results import emit  # noqa: E402

import visret  # noqa: E402
from visret.images._folders import scan_folder  # noqa: E402
from visret.embedding._extraction import extract_records  # noqa: E402
from visret.features.normalization import normalize  # noqa: E402


def main() -> None:
    from visret_keras import runtime

    keras = runtime.keras()
    with tempfile.TemporaryDirectory() as tmp:
        train, test = materialise("flowers", Path(tmp))
        extractor = visret.get_extractor("keras/squeezenet", norm="none")
        a, b = extract_records(extractor, scan_folder(train)), extract_records(extractor, scan_folder(test))
    labels = sorted({r.label for r in a.records})
    X, Q = a.features, b.features
    y = np.array([labels.index(r.label) for r in a.records], np.int64)
    yq = np.array([labels.index(r.label) for r in b.records], np.int64)
    val = np.random.default_rng(0).random(len(X)) < 0.1
    mean, std = np.sqrt(X).mean(0), np.sqrt(X).std(0) + 1e-6
    forms = {"raw": lambda z: z, "sqrt + L2": lambda z: normalize(z, "power:0.5"), "sqrt, standardised": lambda z: (np.sqrt(z) - mean) / std}
    results = {}
    for name, form in forms.items():
        for batch_norm in (False, True):
            keras.utils.set_random_seed(0)
            inputs = keras.Input((X.shape[1],))
            h = keras.layers.BatchNormalization()(inputs) if batch_norm else inputs
            model = keras.Model(inputs, keras.layers.Dense(len(labels), activation="softmax")(keras.layers.Dropout(0.2)(h)))
            model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
            model.fit(form(X[~val]), y[~val], validation_data=(form(X[val]), y[val]), epochs=40, batch_size=32, verbose=0,
                      callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)])
            accuracy = float((model.predict(form(Q), verbose=0).argmax(1) == yq).mean())
            results[f"{name}{' + BatchNormalization' if batch_norm else ''}"] = round(accuracy, 4)
            print(name, batch_norm, accuracy, file=sys.stderr, flush=True)
    emit(results, None)


if __name__ == "__main__":
    main()
