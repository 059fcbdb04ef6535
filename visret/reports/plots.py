"""Pictures of results (matplotlib, PNG): query montages, predictions, confusion matrices, t-SNE maps,
PR curves, training curves, duplicate groups and the distances their threshold cuts.

matplotlib is imported only when a picture is drawn, with the non-interactive Agg backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from visret.errors import VisretError
from visret.features._extractor import InputSpec
from visret.images._decode import ImageReadError, as_array

CORRECT, WRONG, NEUTRAL = "#1a9850", "#d73027", "#777777"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _thumbnail(image: Any, size: int) -> np.ndarray:
    try:
        return as_array(image, InputSpec(mode="RGB", size=(size, size)))
    except ImageReadError:
        return np.full((size, size, 3), 230, np.uint8)


def _save(figure, out: str | Path) -> Path:
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(out, dpi=100, bbox_inches="tight")
    except OSError as exc:
        reason = f"{out.parent} is not a directory" if isinstance(exc, FileExistsError) else exc.strerror or exc
        raise VisretError(f"cannot write {out}: {reason}") from None
    finally:
        _pyplot().close(figure)
    return out


def _tile(axis, image: np.ndarray, title: str, colour: str, fontsize: int = 9) -> None:
    """One framed picture of a grid: the image, a title, a coloured frame, no ticks."""
    axis.imshow(image)
    axis.set_title(title, fontsize=fontsize)
    axis.set_xticks([])
    axis.set_yticks([])
    for spine in axis.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(4)


def save_montage(result, out: str | Path, query_label: str | None = None, size: int = 128) -> Path:
    """The query and its neighbours in rank order, each with label and distance; framed green
    when its label is the query's (``query_label``, else the k-NN prediction), red otherwise."""
    plt = _pyplot()
    expected = query_label if query_label is not None else result.prediction
    n = len(result.neighbors) + 1
    figure, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.6), squeeze=False)
    tiles = [(result.query, f"query\n{expected or ''}", NEUTRAL)]
    for rank, neighbor in enumerate(result.neighbors, start=1):
        colour = NEUTRAL if expected is None or neighbor.label is None else CORRECT if neighbor.label == expected else WRONG
        tiles.append((neighbor.path, f"#{rank} {neighbor.label or ''}\nd={neighbor.distance:.3f}", colour))
    for axis, (image, title, colour) in zip(axes[0], tiles):
        _tile(axis, _thumbnail(image, size), title, colour)
    return _save(figure, out)


#: Images per row of a predictions montage.
PREDICTION_COLUMNS = 8


def save_predictions(predictions, out: str | Path, heatmaps: Sequence[np.ndarray] | None = None, size: int = 112, title: str = "") -> Path:
    """Images with their predicted label and confidence, framed green when right and red when
    wrong (grey when the true label is unknown); ``heatmaps`` (values 0-1, any size) are laid over
    them, e.g. Grad-CAM maps of what drove each prediction."""
    plt = _pyplot()
    n = len(predictions)
    if n == 0:
        raise VisretError("no image to draw")
    columns = min(n, PREDICTION_COLUMNS)
    rows = -(-n // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.0 * columns, 2.4 * rows), squeeze=False)
    for axis in axes.ravel()[n:]:
        axis.axis("off")
    for i, (axis, p) in enumerate(zip(axes.ravel(), predictions)):
        colour = NEUTRAL if p.correct is None else CORRECT if p.correct else WRONG
        label = f"{p.predicted} {p.confidence:.2f}" + ("" if p.correct in (None, True) else f"\ntrue: {p.label}")
        _tile(axis, _thumbnail(p.image, size), label, colour)
        if heatmaps is not None:
            axis.imshow(heatmaps[i], cmap="jet", alpha=0.45, extent=(-0.5, size - 0.5, size - 0.5, -0.5), vmin=0, vmax=1)
    if title:
        figure.suptitle(title, fontsize=10)
    return _save(figure, out)


def save_confusion(matrix: Sequence[Sequence[int]], classes: Sequence[str], out: str | Path, title: str = "") -> Path:
    """A heat map of counts, true classes as rows; rows are normalised for the colours."""
    plt = _pyplot()
    counts = np.asarray(matrix, dtype=float)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = max(4.0, 0.45 * len(classes) + 2)
    figure, axis = plt.subplots(figsize=(side, side))
    shown = axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(classes)), classes, rotation=90, fontsize=8)
    axis.set_yticks(range(len(classes)), classes, fontsize=8)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if len(classes) <= 30:
        for (i, j), value in np.ndenumerate(counts):
            if value:
                axis.text(j, i, int(value), ha="center", va="center", fontsize=7, color="white" if rates[i, j] > 0.5 else "black")
    figure.colorbar(shown, ax=axis, fraction=0.046)
    axis.set_title(title or "confusion matrix (row-normalised colours)")
    return _save(figure, out)


def save_curves(history: dict[str, list[float]], out: str | Path, boundary: int | None = None) -> Path:
    """Loss and accuracy per epoch, on the training and the validation part; ``boundary``, the last
    epoch before fine-tuning, is marked where a run has two phases."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        if boundary:
            axis.axvline(boundary + 0.5, color="grey", linestyle="--", linewidth=1, label="fine-tuning starts")
        for prefix in ("", "val_"):
            if prefix + metric in history:
                values = history[prefix + metric]
                axis.plot(range(1, len(values) + 1), values, marker="o", label=(prefix or "train_") + metric)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    return _save(figure, out)


def save_tsne(embeddings: np.ndarray, labels: Sequence[str], out: str | Path, seed: int = 0, max_points: int = 3000) -> Path:
    """A 2-D t-SNE map of embeddings coloured by class (a seeded sample of ``max_points``)."""
    from sklearn.manifold import TSNE

    plt = _pyplot()
    embeddings, labels = np.asarray(embeddings, np.float32), np.asarray(labels)
    if len(embeddings) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(embeddings), max_points, replace=False))
        embeddings, labels = embeddings[keep], labels[keep]
    perplexity = float(min(30, max(2, (len(embeddings) - 1) / 3)))
    points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(embeddings)
    figure, axis = plt.subplots(figsize=(7, 6))
    classes = sorted(set(labels.tolist()))
    colours = plt.get_cmap("tab20" if len(classes) > 10 else "tab10")
    for i, label in enumerate(classes):
        members = labels == label
        axis.scatter(points[members, 0], points[members, 1], s=8, color=colours(i % colours.N), label=str(label))
    if len(classes) <= 20:
        axis.legend(markerscale=2, fontsize=7, loc="best")
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_title(f"t-SNE of {len(points)} embeddings")
    return _save(figure, out)


LINE_STYLES, MARKERS = ("-", "--", ":", "-."), ("o", "s", "^", "D", "v", "x")


def save_pr_curves(curves: dict[str, dict[str, list[float]]], out: str | Path) -> Path:
    """Mean interpolated precision against recall, one line per extractor. Each line has its own dash and
    marker as well as its colour, and a line that another covers exactly still shows: equal curves are
    common (two extractors with the same ranking), and a later line drawn over an earlier one hid it."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 5))
    for number, (name, curve) in enumerate(curves.items()):
        dash, marker = LINE_STYLES[number % len(LINE_STYLES)], MARKERS[number % len(MARKERS)]
        axis.plot(curve["recall"], curve["precision"], linestyle=dash, marker=marker, markersize=4 + 2 * (len(curves) - 1 - number),
                  fillstyle="none", linewidth=1.2 + 1.6 * (len(curves) - 1 - number), label=name)
    axis.set_xlabel("recall")
    axis.set_ylabel("interpolated precision")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title("precision-recall (mean over queries)")
    return _save(figure, out)


#: Members drawn per duplicate group; the rest are counted in the title.
MAX_GROUP_TILES = 12


def save_duplicate_group(group, out: str | Path, size: int = 128) -> Path:
    """The files of one duplicate group side by side, the kept one framed green, each with its
    smallest distance to another member."""
    plt = _pyplot()
    closest = {path: pair.distance for path, pair in group.closest().items()}
    files = [group.keep] + group.removable
    shown = files[:MAX_GROUP_TILES]
    figure, axes = plt.subplots(1, len(shown), figsize=(2.2 * len(shown), 2.8), squeeze=False)
    for axis, path in zip(axes[0], shown):
        kept = path == group.keep
        title = f"{'keep' if kept else 'copy'} d={closest.get(path, 0):g}\n{Path(path).name[:24]}"
        _tile(axis, _thumbnail(path, size), title, CORRECT if kept else NEUTRAL, fontsize=8)
    more = f" (+{len(files) - len(shown)} more)" if len(files) > len(shown) else ""
    figure.suptitle(f"{group.kind} duplicates, {len(files)} files{more}", fontsize=10)
    return _save(figure, out)


def save_distance_histogram(nearest: Sequence[float], threshold: float, distance: str, out: str | Path) -> Path:
    """How far each image is from its nearest other image, and where the threshold cuts: the
    images left of the line have a duplicate."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 3.6))
    values = np.asarray(nearest, dtype=float)
    bins = np.arange(values.max(initial=0) + 2) - 0.5 if distance == "hamming" else 60
    axis.hist(values, bins=bins, color="#4575b4")
    axis.axvline(threshold, color=WRONG, linestyle="--", label=f"threshold {threshold:g}")
    axis.set_yscale("log")
    axis.set_xlabel(f"distance to the nearest other image ({'bits that differ' if distance == 'hamming' else 'cosine distance'})")
    axis.set_ylabel("images")
    axis.legend(fontsize=8)
    axis.set_title(f"{len(values)} distinct images: duplicates sit left of the threshold")
    return _save(figure, out)
