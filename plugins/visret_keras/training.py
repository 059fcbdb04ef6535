"""Training CNN classifiers: from scratch, transfer learning (frozen FEN + new head), fine-tuning.

The field's workflow in one function, ``train``: a seeded stratified train / validation / test
split (the test part never touches training, early stopping or model selection, and the split
is saved next to the model), augmentation layers inside the model (active only in training),
optional mixup and class weights, early stopping with the best weights restored, checkpoints,
CSV and TensorBoard logs, a PNG of the curves, and test accuracy with and without TTA.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from visret import VisretError, get_extractor
from visret.dataset import ImageRecord, scan_folder
from visret.images import ImageReadError, read_image
from visret.protocols import stratified_test_mask
from visret_keras import runtime
from visret_keras.applications import KerasApplication
from visret_keras.augment import augmentation_model, mixup, parse_augment
from visret_keras.base import KerasExtractor
from visret_keras.preprocessing import preprocessing_layers

DEFAULT_TTA_AUGMENT = {"flip": "horizontal", "translate": 0.05}


@dataclass
class TrainingReport:
    """What ``train`` did and measured; ``to_dict`` gives the JSON form."""

    model_path: str
    split_path: str
    curves_path: str
    classes: list[str]
    sizes: dict[str, int]
    epochs: int
    seconds: float
    test_accuracy: float | None
    test_accuracy_tta: float | None = None
    history: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- data ----------------------------------------------------------------------------------
def split_records(
    records: Sequence[ImageRecord], val_split: float, test_split: float, seed: int, test_records: Sequence[ImageRecord] | None = None
) -> dict[str, list[ImageRecord]]:
    """Seeded, stratified train / validation / test parts (test from ``test_records`` when given)."""
    labels = np.array([r.label for r in records])
    for name, value in (("validation split", val_split), ("test split", test_split)):
        if not 0 < value < 1:
            raise ValueError(f"{name} must be between 0 and 1, got {value}")
    if test_records is None:
        is_test = stratified_test_mask(labels, test_split, seed)
        test = [r for r, t in zip(records, is_test) if t]
        rest = [r for r, t in zip(records, is_test) if not t]
    else:
        test, rest = list(test_records), list(records)
    is_val = stratified_test_mask(np.array([r.label for r in rest]), val_split, seed + 1)
    return {
        "train": [r for r, v in zip(rest, is_val) if not v],
        "val": [r for r, v in zip(rest, is_val) if v],
        "test": test,
    }


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
    preprocess = preprocessing_layers(extractor.family.module) if isinstance(extractor, KerasApplication) else []
    return extractor.model, extractor.input_spec, preprocess


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


# ---- test-time augmentation ---------------------------------------------------------------
def predict_tta(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray, n: int, augment: Callable[[np.ndarray], np.ndarray]):
    """Posteriors averaged over the images and ``n`` random augmentations of them."""
    total = np.asarray(predict(images), np.float64)
    for _ in range(n):
        total += np.asarray(predict(augment(images)), np.float64)
    return total / (n + 1)


def tta_augmenter(model, seed: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """The model's own augmentation layers in training mode, or a light default (flip, 5 % shift)."""
    try:
        layers = model.get_layer("augmentation")
    except ValueError:
        layers = augmentation_model(DEFAULT_TTA_AUGMENT, seed)
    return lambda images: np.asarray(layers(images, training=True))


def _predict(model, batch_size: int = 256):
    return lambda images: model.predict(images, batch_size=batch_size, verbose=0)


# ---- the workflow --------------------------------------------------------------------------
def save_curves(history: dict[str, list[float]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for prefix in ("", "val_"):
            if prefix + metric in history:
                axis.plot(range(1, len(history[prefix + metric]) + 1), history[prefix + metric], marker="o", label=(prefix or "train_") + metric)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return out


def train(
    data: str | Path,
    *,
    model: str = "cnn/lenet5",
    params: dict[str, Any] | None = None,
    test_data: str | Path | None = None,
    transfer: bool = False,
    fine_tune: int | None = None,
    augment: str | dict | None = None,
    mixup_alpha: float | None = None,
    balance: bool = False,
    epochs: int = 20,
    fine_tune_epochs: int | None = None,
    batch_size: int = 32,
    val_split: float = 0.1,
    test_split: float = 0.2,
    learning_rate: float = 1e-3,
    fine_tune_rate: float = 1e-5,
    dropout: float = 0.2,
    patience: int = 5,
    tta: int = 0,
    out: str | Path = "model.keras",
    log_dir: str | Path | None = None,
    seed: int = 0,
    verbose: int = 1,
    on_epoch: Callable[[int, dict], None] | None = None,
) -> TrainingReport:
    """Train a CNN classifier on an ImageFolder; see the module docstring for what it does."""
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
    records = [r for r in scan_folder(data) if r.label is not None]
    test_records = [r for r in scan_folder(test_data) if r.label is not None] if test_data else None
    if len({r.label for r in records}) < 2:
        raise VisretError(f"{data} needs at least two classes in sub-folders to train a classifier")
    classes = sorted({r.label for r in records})
    try:
        parts = split_records(records, val_split, test_split, seed, test_records)
    except ValueError as exc:
        raise VisretError(str(exc)) from None
    keras.utils.set_random_seed(seed)
    fen, spec, preprocess = feature_network(model, params or {})
    arrays = {name: load_images(part, spec, classes) for name, part in parts.items()}
    (x_train, y_train, _), (x_val, y_val, _), (x_test, y_test, _) = arrays["train"], arrays["val"], arrays["test"]
    if not len(x_train) or not len(x_val):
        raise VisretError("too few readable images for a train and a validation part")
    out.parent.mkdir(parents=True, exist_ok=True)
    split_path = out.with_suffix(".split.json")
    split_path.write_text(json.dumps({
        "classes": classes, "seed": seed, "model": model, "params": params or {},
        **{name: [str(r.path) for r in part] for name, part in parts.items()},
    }, indent=1))

    frozen = transfer or fine_tune is not None
    net = classifier(fen, spec, preprocess, len(classes), augment_spec, dropout, frozen, seed)
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=max(1, patience // 2)),
        keras.callbacks.ModelCheckpoint(str(out.with_suffix(".best.keras")), monitor="val_loss", save_best_only=True),
        keras.callbacks.CSVLogger(str(out.with_suffix(".log.csv")), append=True),
    ]
    if log_dir is not None:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(log_dir)))
    if on_epoch is not None:
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: on_epoch(epoch, logs)))
    train_data = _dataset(x_train, y_train, len(classes), batch_size, True, mixup_alpha, seed)
    val_data = _dataset(x_val, y_val, len(classes), batch_size, False, None, seed)
    weights = class_weights(y_train, len(classes)) if balance else None
    history: dict[str, list[float]] = {}

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
    net.save(out)
    test_accuracy = tta_accuracy = None
    if len(x_test):
        probabilities = _predict(net)(x_test)
        test_accuracy = float(np.mean(probabilities.argmax(axis=1) == y_test))
        if tta:
            tta_probabilities = predict_tta(_predict(net), x_test, tta, tta_augmenter(net, seed))
            tta_accuracy = float(np.mean(tta_probabilities.argmax(axis=1) == y_test))
    curves = save_curves(history, out.with_suffix(".curves.png"))
    return TrainingReport(
        model_path=str(out),
        split_path=str(split_path),
        curves_path=str(curves),
        classes=classes,
        sizes={name: len(arrays[name][0]) for name in arrays},
        epochs=len(history.get("loss", [])),
        seconds=round(seconds, 2),
        test_accuracy=test_accuracy,
        test_accuracy_tta=tta_accuracy,
        history=history,
    )


def load_classifier(path: str | Path):
    """A model saved by ``train`` (safe mode) and its classes (from the split file beside it)."""
    keras = runtime.keras()
    path = Path(path)
    if not path.is_file() or path.suffix != ".keras":
        raise VisretError(f"{path} is not a saved .keras model")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for unsafe or damaged files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VisretError(f"cannot load {path} in safe mode: {reason}") from None
    split = path.with_suffix(".split.json")
    if split.is_file():
        classes = json.loads(split.read_text())["classes"]
    else:
        classes = [str(i) for i in range(model.output_shape[-1])]
    return model, classes
