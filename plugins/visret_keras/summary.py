"""The layers of a Keras model with their output shapes and parameter counts: "CNN arithmetic".

Nested models (a feature network inside a classifier) are listed under their own row, indented;
totals count each weight once and split it into trainable and frozen.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _count(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def _shape(layer) -> str:
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):
        return "?"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def layer_rows(model, depth: int = 0) -> list[dict[str, Any]]:
    """One row per layer: name, type, output shape, parameters, trainable parameters, nesting depth."""
    from visret_keras import runtime

    nested = runtime.keras().Model
    rows = []
    for layer in model.layers:
        rows.append({
            "layer": layer.name, "type": type(layer).__name__, "output_shape": _shape(layer),
            "params": _count(layer.weights), "trainable": _count(layer.trainable_weights), "depth": depth,
        })
        if isinstance(layer, nested):
            rows += layer_rows(layer, depth + 1)
    return rows


def summarise(model) -> dict[str, Any]:
    """The model's layers and its totals: ``{"name", "input_shape", "layers", "total", "trainable", "frozen"}``."""
    total, trainable = _count(model.weights), _count(model.trainable_weights)
    return {
        "name": model.name, "input_shape": str(model.input_shape), "output_shape": str(model.output_shape),
        "layers": layer_rows(model), "total": total, "trainable": trainable, "frozen": total - trainable,
    }
