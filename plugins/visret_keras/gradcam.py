"""Grad-CAM (Selvaraju et al., 2017): where in an image a CNN found the evidence for a class.

The gradient of the class score with respect to the last spatial feature map, averaged over
its positions, weighs each channel of that map; the weighted sum, rectified and scaled to 0-1,
is the heat map, enlarged to the image. Augmentation layers are skipped (inference only).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from visret import VisretError
from visret_keras import runtime


def _last_spatial_layer(model):
    """The last layer of ``model`` whose output is a feature map (batch, height, width, channels)."""
    for layer in reversed(model.layers):
        try:
            if len(layer.output.shape) == 4:
                return layer
        except (AttributeError, ValueError):
            continue
    return None


def _stages(model):
    """``(layers before, feature network with its map and output, layers after)`` of a classifier
    whose feature network is a nested model; else the whole model with its last map."""
    keras = runtime.keras()
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    for i, layer in enumerate(layers):
        if isinstance(layer, keras.Model) and layer.name != "augmentation":
            spatial = _last_spatial_layer(layer)
            if spatial is not None:
                inner = keras.Model(layer.inputs, [spatial.output, layer.outputs[0]])
                before = [l for l in layers[:i] if l.name != "augmentation"]
                return before, inner, layers[i + 1 :]
    spatial = _last_spatial_layer(model)
    if spatial is None:
        raise VisretError(f"{model.name} has no convolutional feature map to explain")
    return [], keras.Model(model.inputs, [spatial.output, model.outputs[0]]), []


def grad_cam(model, images: Sequence[np.ndarray], classes: Sequence[int]) -> list[np.ndarray]:
    """One heat map (float32, 0-1, the images' size) per image for the given class index."""
    tf = runtime.tensorflow()
    before, inner, after = _stages(model)
    batch = np.asarray(images, np.float32)
    if batch.ndim == 3:
        batch = batch[..., None]
    x = tf.convert_to_tensor(batch)
    for layer in before:
        x = layer(x, training=False)
    with tf.GradientTape() as tape:
        feature_map, y = inner(x, training=False)
        tape.watch(feature_map)
        for layer in after:
            y = layer(y, training=False)
        chosen = tf.gather(y, np.asarray(classes), axis=1, batch_dims=1)
    gradients = tape.gradient(chosen, feature_map)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    maps = tf.nn.relu(tf.reduce_sum(weights * feature_map, axis=-1)).numpy()
    height, width = batch.shape[1:3]
    out = []
    for heat in maps:
        peak = heat.max()
        heat = heat / peak if peak > 0 else heat
        resized = tf.image.resize(heat[..., None], (height, width), method="bilinear").numpy()[..., 0]
        out.append(resized.astype(np.float32))
    return out
