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
from visret_keras.feature_norm import norm_layers
from visret_keras.training_run import PHASES, TrainingRun


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
def feature_network(name: str, params: dict[str, Any]) -> tuple[Any, Any, list, str]:
    """The FEN to train or transfer: ``(model, input spec, preprocessing layers, feature normalisation)``."""
    extractor = get_extractor(name, **params)
    if not isinstance(extractor, KerasExtractor):
        raise VisretError(f"{name} is not a CNN; train one of cnn/*, keras/* or model:PATH")
    return extractor.model, extractor.input_spec, extractor.preprocessing_layers(), extractor.feature_norm()


def classifier(fen, spec, preprocess: list, n_classes: int, augment: dict, dropout: float, frozen: bool, seed: int,
               norm: str = "none"):
    """inputs (0-255) -> augmentation -> family preprocessing -> FEN -> [the extractor's normalisation, for a
    pretrained FEN] -> Dropout -> Dense softmax."""
    keras = runtime.keras()
    channels = 3 if spec.mode == "RGB" else 1
    inputs = keras.Input(shape=(*spec.size, channels), name="pixels")
    x = augmentation_model(augment, seed)(inputs) if augment else inputs
    for layer in preprocess:
        x = layer(x)
    fen.trainable = not frozen
    # training=False keeps BatchNorm statistics frozen, also when the FEN is later unfrozen for fine-tuning
    features = fen(x, training=False) if frozen else fen(x)
    for layer in (norm_layers(norm) or []) if frozen else []:
        features = layer(features)
    x = keras.layers.Dropout(dropout, seed=seed, name="head_dropout")(features)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name="visret_classifier")


def _frozen_features(net, images: np.ndarray, batch_size: int) -> np.ndarray:
    """What the head sees: the network's normalised features (no augmentation, no dropout)."""
    keras = runtime.keras()
    return keras.Model(net.inputs, net.get_layer("head_dropout").input).predict(images, batch_size=batch_size, verbose=0).astype(np.float64)


def _logistic(features: np.ndarray, labels: np.ndarray, C: float):
    """visret's ``logistic`` head: standardised features, L2-regularised multinomial logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features)
    return scaler, LogisticRegression(C=C, max_iter=1000).fit(scaler.transform(features), labels)


def _set_head(net, scaler, fitted, n_classes: int) -> None:
    """The scaler and the logistic regression folded into the softmax Dense layer."""
    coef, intercept = fitted.coef_, fitted.intercept_
    if len(fitted.classes_) == 2:  # one row for two classes: the softmax wants one per class
        coef, intercept = np.vstack([-coef[0], coef[0]]) / 2, np.array([-intercept[0], intercept[0]]) / 2
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    weights, bias = np.zeros((coef.shape[1], n_classes)), np.full(n_classes, -30.0)  # an absent class: never chosen
    weights[:, fitted.classes_] = (coef / scale).T
    bias[fitted.classes_] = intercept - coef @ (scaler.mean_ / scale)
    net.get_layer("head").set_weights([weights.astype(np.float32), bias.astype(np.float32)])


def start_from_linear_head(net, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], n_classes: int,
                           batch_size: int) -> dict[str, float]:
    """Set the softmax head to visret's ``logistic`` head fitted on the frozen network's features of the
    training part (C chosen on the validation part, as ``compare`` chooses it): the network starts where the
    frozen pipeline is, where a random head started at a loss of 6.6 against chance's 2.83 and never caught
    up with it. Returns the chosen C and its validation accuracy."""
    from visret.features import classifier_classes

    (x_train, y_train), (x_val, y_val) = train, val
    f_train, f_val = _frozen_features(net, x_train, batch_size), _frozen_features(net, x_val, batch_size)
    chosen = None
    for C in classifier_classes()["logistic"].search_space["C"]:
        scaler, fitted = _logistic(f_train, y_train, C)
        accuracy = float((fitted.predict(scaler.transform(f_val)) == y_val).mean())
        if chosen is None or accuracy > chosen[2]:  # the first of equals: the head's own default comes first
            chosen = (scaler, fitted, accuracy, C)
    scaler, fitted, accuracy, C = chosen
    _set_head(net, scaler, fitted, n_classes)
    return {"C": C, "val_accuracy": accuracy}


def refit_linear_head(net, images: np.ndarray, labels: np.ndarray, C: float, n_classes: int, batch_size: int) -> None:
    """The head refitted on the trained network's features of ``images`` (training and validation parts: once
    the epochs are chosen, as every visret head is refitted on both)."""
    _set_head(net, *_logistic(_frozen_features(net, images, batch_size), labels, C), n_classes)


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
    budget_minutes: float | None = None,
    resume: bool = False,
    on_epoch: Callable[[int, int], None] | None = None,
    on_checkpoint: Callable[[Path], None] | None = None,
):
    """Train a CNN classifier on ``split``; returns ``(model, facts)`` (see the module docstring).

    ``epochs`` is the first phase's count (the whole training, or the new head's); fine-tuning runs
    ``fine_tune_epochs`` more (by default as many). ``budget_minutes`` stops at the end of the last epoch
    that fits (the best weights kept, the run resumable); ``resume`` takes up an unfinished run of the same
    arguments (``visret_keras.training_run``). ``on_epoch(done, planned)`` is called after every epoch,
    ``on_checkpoint(path)`` whenever the best epoch's model is written. The model returned has the weights of
    the epoch of the lowest validation loss over the whole run.
    """
    out = Path(out)
    if out.suffix != ".keras":
        raise VisretError(f"the model file must end in .keras, got {out}")
    for name, value in (("learning rate", learning_rate), ("fine-tune rate", fine_tune_rate), ("mixup alpha", mixup_alpha),
                        ("time budget", budget_minutes)):
        if value is not None and not value > 0:
            raise VisretError(f"{name} must be positive, got {value}")
    if not 0 <= dropout < 1:
        raise VisretError(f"dropout must be in [0, 1), got {dropout}")
    keras = runtime.keras()
    try:
        augment_spec = parse_augment(augment)
    except ValueError as exc:
        raise VisretError(str(exc)) from None
    arguments = {"split": split.to_dict(), "model": model, "params": params or {}, "transfer": transfer, "fine_tune": fine_tune,
                 "augment": augment_spec, "mixup_alpha": mixup_alpha, "balance": balance, "epochs": epochs,
                 "fine_tune_epochs": fine_tune_epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                 "fine_tune_rate": fine_tune_rate, "dropout": dropout, "patience": patience, "seed": seed}
    run = TrainingRun(out, arguments, on_checkpoint)
    resumed = run.begin(resume)
    keras.utils.set_random_seed(seed + (resumed or {}).get("resumed", 0))
    fen, spec, preprocess, norm = feature_network(model, params or {})
    arrays = {name: load_images(part, spec, split.classes) for name, part in (("train", split.train), ("val", split.val))}
    (x_train, y_train, _), (x_val, y_val, _) = arrays["train"], arrays["val"]
    if not len(x_train) or not len(x_val):
        raise VisretError("too few readable images for a train and a validation part")

    frozen = transfer or fine_tune is not None
    if resumed:
        net = runtime.load_model(run.last)
        fen = [layer for layer in net.layers if isinstance(layer, keras.Model)][-1]  # after any augmentation model
    else:
        net = classifier(fen, spec, preprocess, len(split.classes), augment_spec, dropout, frozen, seed, norm)
    linear_start = start_from_linear_head(net, (x_train, y_train), (x_val, y_val), len(split.classes), batch_size) \
        if frozen and not resumed else None
    if linear_start is not None:
        run.state["linear_start"] = linear_start  # a resumed run refits its head with the same C
    phases = [(PHASES[0], learning_rate, epochs)] + ([(PHASES[1], fine_tune_rate, fine_tune_epochs or epochs)] if fine_tune is not None else [])
    planned = sum(n for _, _, n in phases)
    stopping = resumable_early_stopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    history = run.state["history"]
    begun, spent_before = time.perf_counter(), float(run.state.get("seconds", 0.0))
    budget = None if budget_minutes is None else budget_minutes * 60
    stopped: list[str] = []
    epochs_of = {phase: n for phase, _, n in phases}

    def epoch_end(phase: str, epoch: int, logs: dict[str, float]) -> None:
        run.epoch_done(net, phase, epoch + 1, logs, {"early_stopping": stopping.progress(),
                                                     "seconds": spent_before + time.perf_counter() - begun})
        if on_epoch is not None:
            on_epoch(len(history.get("loss", [])), planned)
        spent = time.perf_counter() - begun
        per_epoch = spent / max(1, len(history.get("loss", [])) - done_before)
        later = sum(n for p, n in epochs_of.items() if PHASES.index(p) > PHASES.index(phase))
        left = epochs_of[phase] - (epoch + 1) + later  # a run with nothing left to do is never "stopped"
        if budget is not None and left > 0 and spent + per_epoch > budget and not net.stop_training:
            net.stop_training = True
            stopped.append(f"time budget of {budget_minutes:g} min reached after {len(history.get('loss', []))} epochs")

    callbacks = [stopping, keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=max(1, patience // 2))]
    if log_dir is not None:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(log_dir)))
    train_data = _dataset(x_train, y_train, len(split.classes), batch_size, True, mixup_alpha, seed)
    val_data = _dataset(x_val, y_val, len(split.classes), batch_size, False, None, seed)
    weights = class_weights(y_train, len(split.classes)) if balance else None
    done_before = len(history.get("loss", []))
    for phase, rate, n_epochs in phases:
        if stopped or phase in run.state["done_phases"]:
            continue
        already = run.state["phases"].get(phase, 0) if resumed else 0  # epochs of this phase a killed run finished
        if phase == PHASES[1] and not already:
            unfreeze_top(fen, fine_tune)
        stopping.resume_from((run.state.get("early_stopping") or {}) if already else {})
        net.compile(optimizer=keras.optimizers.Adam(rate), loss="categorical_crossentropy", metrics=["accuracy"])
        recorder = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs, phase=phase: epoch_end(phase, epoch, logs))
        if already < n_epochs:
            net.fit(train_data, validation_data=val_data, initial_epoch=already, epochs=n_epochs, callbacks=[*callbacks, recorder],
                    class_weight=weights, shuffle=False, verbose=verbose)  # the dataset shuffles itself
        if not stopped:  # early stopping restored the phase's best weights: the next phase (or a resumed run) starts there
            run.phase_done(net, phase)
    best = out.with_suffix(".best.keras")
    if best.is_file():  # the epoch of the lowest validation loss over the whole run, whichever phase and process
        net.set_weights(runtime.load_model(best).get_weights())
    if frozen:
        refit_linear_head(net, np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val]),
                          (linear_start or run.state.get("linear_start") or {}).get("C", 1.0), len(split.classes), batch_size)
    run.finish(stopped[0] if stopped else None)
    seconds = run.state["seconds"]
    boundary = run.state["phases"].get(PHASES[0]) if fine_tune is not None and PHASES[1] in run.state["phases"] else None
    files = {
        "curves": str(save_curves(history, out.with_suffix(".curves.png"), boundary=boundary)),
        "log": str(run.log), "checkpoint": str(out.with_suffix(".best.keras")), "split": str(out.with_suffix(".split.json")),
    }
    return net, {
        "train_seconds": round(seconds, 2), "epochs": len(history.get("loss", [])), "history": history, "files": files,
        "sizes": {name: len(arrays[name][0]) for name in arrays}, "augment": augment_spec, "fine_tune_from": boundary,
        "stopped": stopped[0] if stopped else None, "resumed": bool(resumed), "linear_start": linear_start,
    }


def resumable_early_stopping(**kwargs):
    """Keras' early stopping whose count of epochs without improvement survives a resumed run."""
    keras = runtime.keras()

    class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
        _resumed: dict[str, Any] = {}

        def resume_from(self, progress: dict[str, Any]) -> None:
            self._resumed = progress

        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            if self._resumed.get("best") is not None:
                self.best, self.wait = float(self._resumed["best"]), int(self._resumed.get("wait", 0))

        def progress(self) -> dict[str, Any]:
            best = None if self.best is None or not np.isfinite(self.best) else float(self.best)
            return {"best": best, "wait": int(self.wait)}

    return ResumableEarlyStopping(**kwargs)
