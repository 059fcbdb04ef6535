"""Small CNN architectures from the field's textbook, as plain Keras model builders.

Every model takes images with pixel values in 0-255 (a ``Rescaling`` layer comes first) and
ends with a softmax classifier; feature extraction networks cut that head off.
"""

from __future__ import annotations

from typing import Sequence

from visret_keras import runtime


def _seeded(seed: int):
    """Initialisers that give the same random weights for the same seed."""
    keras = runtime.keras()
    counter = iter(range(10_000))
    return lambda: keras.initializers.GlorotUniform(seed=seed * 10_000 + next(counter))


def lenet5(input_shape=(32, 32, 1), n_classes: int = 10, seed: int = 0):
    """LeNet-5: Conv 6@5x5 tanh, AvgPool, Conv 16@5x5 tanh, AvgPool, Dense 120, Dense 84, softmax.

    For a 32x32x1 input and 10 classes it has 61,706 parameters.
    """
    keras = runtime.keras()
    layers, init = keras.layers, _seeded(seed)
    return keras.Sequential(
        [
            keras.Input(shape=tuple(input_shape)),
            layers.Rescaling(1.0 / 255),
            layers.Conv2D(6, 5, activation="tanh", kernel_initializer=init()),
            layers.AveragePooling2D(2),
            layers.Conv2D(16, 5, activation="tanh", kernel_initializer=init()),
            layers.AveragePooling2D(2),
            layers.Flatten(),
            layers.Dense(120, activation="relu", kernel_initializer=init()),
            layers.Dense(84, activation="relu", kernel_initializer=init()),
            layers.Dense(n_classes, activation="softmax", kernel_initializer=init()),
        ],
        name="lenet5",
    )


def vgg_small(
    input_shape=(64, 64, 3), n_classes: int = 10, widths: Sequence[int] = (32, 64, 128), convs_per_block: int = 2, seed: int = 0
):
    """VGG-style stacks of 3x3 convolutions with max-pooling, global average pooling, softmax."""
    keras = runtime.keras()
    layers, init = keras.layers, _seeded(seed)
    stack = [keras.Input(shape=tuple(input_shape)), layers.Rescaling(1.0 / 255)]
    for width in widths:
        for _ in range(convs_per_block):
            stack.append(layers.Conv2D(width, 3, padding="same", activation="relu", kernel_initializer=init()))
        stack.append(layers.MaxPooling2D(2))
    stack += [
        layers.GlobalAveragePooling2D(name="features"),
        layers.Dropout(0.3),
        layers.Dense(n_classes, activation="softmax", kernel_initializer=init()),
    ]
    return keras.Sequential(stack, name="vgg_small")


def cut_before_head(model, layer: str | None = None, drop: int | None = None):
    """The model up to its features: a named layer, all but the last ``drop`` layers, or
    (by default) the input of the last Dense layer. 4-D outputs are globally average-pooled.
    """
    keras = runtime.keras()
    if layer is not None:
        output = model.get_layer(layer).output
    elif drop is not None:
        if not 0 < drop < len(model.layers):
            raise ValueError(f"drop must be between 1 and {len(model.layers) - 1}, got {drop}")
        output = model.layers[-drop - 1].output
    else:
        dense = [l for l in model.layers if isinstance(l, keras.layers.Dense)]
        if not dense:
            raise ValueError("the model has no Dense layer to cut before; pass layer= or drop=")
        output = dense[-1].input
    if len(output.shape) == 4:
        output = keras.layers.GlobalAveragePooling2D(name="visret_pool")(output)
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, output, name=f"{model.name}_features")
