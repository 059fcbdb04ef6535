"""Training CNN classifiers: from scratch, transfer learning (frozen FEN + new head), fine-tuning.

``fit_network`` trains on a ``visret.classification._split.Split``: the training part, the validation
part for early stopping and the learning-rate schedule, never the test part (held-out testing
is shared by every pipeline, in ``visret.classification._training``). Augmentation layers live inside
the model (active only in training); mixup, class weights, checkpoints, CSV and TensorBoard logs
and a PNG of the curves are optional or written next to the model.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from visret import VisretError, get_extractor
from visret.images import ImageReadError, ImageRecord, read_image
from visret.reports.plots import save_curves
from visret_keras import runtime
from visret_keras.augment import augmentation_model, mixup, parse_augment
from visret_keras.base import KerasExtractor


# ---- data ----------------------------------------------------------------------------------
def load_images(records: Sequence[ImageRecord], spec, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode records for ``spec``: ``(images float32 NHWC 0-255, class codes, skipped paths)``."""
    position = {c: i for i, c in enumerate(classes)}
    images, codes, skipped = [], [], []
    for record in records:
        try:
            image = read_image(record.path, spec)[0]
        except ImageReadError:
            skipped.append(str(record.path))
            continue
        images.append(image if image.ndim == 3 else image[..., None])
        codes.append(position[record.label])
    return np.asarray(images, np.float32), np.asarray(codes, np.int64), skipped


# ---- model ---------------------------------------------------------------------------------
def feature_network(name: str, params: dict[str, Any]) -> tuple[Any, Any, list]:
    """The FEN to train or transfer: ``(model, input spec, preprocessing layers)``."""
    extractor = get_extractor(name, **params)
    if not isinstance(extractor, KerasExtractor):
        raise VisretError(f"{name} is not a CNN; train one of cnn/*, keras/* or model:PATH")
    return extractor.model, extractor.input_spec, extractor.preprocessing_layers()


def classifier(fen, spec, preprocess: list, n_classes: int, augment: dict, dropout: float, frozen: bool, seed: int):
    """inputs (0-255) -> augmentation -> family preprocessing -> FEN -> Dropout -> Dense softmax."""
    keras = runtime.keras()
    channels = 3 if spec.mode == "RGB" else 1
    inputs = keras.Input(shape=(*spec.size, channels), name="pixels")
    x = augmentation_model(augment, seed)(inputs) if augment else inputs
    for layer in preprocess:
        x = layer(x)
    fen.trainable = not frozen
    # training=False keeps BatchNorm statistics frozen, also when the FEN is later unfrozen for fine-tuning
    features = fen(x, training=False) if frozen else fen(x)
    x = keras.layers.Dropout(dropout, seed=seed, name="head_dropout")(features)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name="visret_classifier")


def unfreeze_top(fen, layers: int) -> int:
    """Make the last ``layers`` layers of the FEN trainable (all when 0), BatchNorm excepted."""
    keras = runtime.keras()
    fen.trainable = True
    candidates = fen.layers if layers == 0 else fen.layers[-layers:]
    opened = 0
    for layer in fen.layers:
        layer.trainable = layer in candidates and not isinstance(layer, keras.layers.BatchNormalization)
        opened += bool(layer.trainable and layer.weights)
    return opened


def _dataset(images, labels, n_classes, batch_size, shuffle, alpha, seed):
    tf = runtime.tensorflow()
    onehot = np.eye(n_classes, dtype=np.float32)[labels]
    data = tf.data.Dataset.from_tensor_slices((images, onehot))
    if shuffle:
        data = data.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size)
    if alpha:
        data = data.map(lambda x, y: mixup(x, y, alpha), num_parallel_calls=tf.data.AUTOTUNE)
    return data.prefetch(tf.data.AUTOTUNE)


def class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """Balanced weights: n / (classes x count), so every class weighs the same in the loss."""
    counts = np.bincount(labels, minlength=n_classes)
    return {c: float(len(labels) / (n_classes * counts[c])) for c in range(n_classes) if counts[c]}


def fit_network(
    split,
    *,
    model: str = "cnn/lenet5",
    params: dict[str, Any] | None = None,
    transfer: bool = False,
    fine_tune: int | None = None,
    augment: str | dict | None = None,
    mixup_alpha: float | None = None,
    balance: bool = False,
    epochs: int = 20,
    fine_tune_epochs: int | None = None,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    fine_tune_rate: float = 1e-5,
    dropout: float = 0.2,
    patience: int = 5,
    out: str | Path = "model.keras",
    log_dir: str | Path | None = None,
    seed: int = 0,
    verbose: int = 0,
    on_epoch: Callable[[int, int], None] | None = None,
):
    """Train a CNN classifier on ``split``; returns ``(model, facts)`` (see the module docstring).

    ``on_epoch(done, planned)`` is called after every epoch.
    """
    out = Path(out)
    if out.suffix != ".keras":
        raise VisretError(f"the model file must end in .keras, got {out}")
    for name, value in (("learning rate", learning_rate), ("fine-tune rate", fine_tune_rate), ("mixup alpha", mixup_alpha)):
        if value is not None and not value > 0:
            raise VisretError(f"{name} must be positive, got {value}")
    if not 0 <= dropout < 1:
        raise VisretError(f"dropout must be in [0, 1), got {dropout}")
    keras = runtime.keras()
    try:
        augment_spec = parse_augment(augment)
    except ValueError as exc:
        raise VisretError(str(exc)) from None
    keras.utils.set_random_seed(seed)
    fen, spec, preprocess = feature_network(model, params or {})
    arrays = {name: load_images(part, spec, split.classes) for name, part in (("train", split.train), ("val", split.val))}
    (x_train, y_train, _), (x_val, y_val, _) = arrays["train"], arrays["val"]
    if not len(x_train) or not len(x_val):
        raise VisretError("too few readable images for a train and a validation part")

    frozen = transfer or fine_tune is not None
    net = classifier(fen, spec, preprocess, len(split.classes), augment_spec, dropout, frozen, seed)
    planned = epochs + ((fine_tune_epochs or epochs) if fine_tune is not None else 0)
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=max(1, patience // 2)),
        keras.callbacks.ModelCheckpoint(str(out.with_suffix(".best.keras")), monitor="val_loss", save_best_only=True),
        keras.callbacks.CSVLogger(str(out.with_suffix(".log.csv"))),
    ]
    if log_dir is not None:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(log_dir)))
    history: dict[str, list[float]] = {}
    if on_epoch is not None:
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: on_epoch(len(history.get("loss", [])) + epoch + 1, planned)))
    train_data = _dataset(x_train, y_train, len(split.classes), batch_size, True, mixup_alpha, seed)
    val_data = _dataset(x_val, y_val, len(split.classes), batch_size, False, None, seed)
    weights = class_weights(y_train, len(split.classes)) if balance else None

    def fit(rate: float, n_epochs: int) -> None:
        net.compile(optimizer=keras.optimizers.Adam(rate), loss="categorical_crossentropy", metrics=["accuracy"])
        run = net.fit(train_data, validation_data=val_data, epochs=n_epochs, callbacks=callbacks, class_weight=weights, shuffle=False, verbose=verbose)  # the dataset shuffles itself
        for key, values in run.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)

    start = time.perf_counter()
    fit(learning_rate, epochs)
    if fine_tune is not None:
        unfreeze_top(fen, fine_tune)
        fit(fine_tune_rate, fine_tune_epochs or epochs)
    seconds = time.perf_counter() - start
    files = {
        "curves": str(save_curves(history, out.with_suffix(".curves.png"))),
        "log": str(out.with_suffix(".log.csv")), "checkpoint": str(out.with_suffix(".best.keras")), "split": str(out.with_suffix(".split.json")),
    }
    return net, {
        "train_seconds": round(seconds, 2), "epochs": len(history.get("loss", [])), "history": history, "files": files,
        "sizes": {name: len(arrays[name][0]) for name in arrays}, "augment": augment_spec,
    }
