"""An extractor's feature normalisation as Keras layers, so that a classifier trained on a network sees
the features the frozen pipeline of the same network sees (``power:0.5``: signed square root, then L2).

``SignedPower`` is registered with Keras (package ``visret``) before any model is built or loaded here,
so models that carry it load in safe mode like any other.
"""

from __future__ import annotations

import functools

from visret.features.normalization import parse_norm
from visret_keras import runtime


@functools.cache
def signed_power_layer() -> type:
    """The ``SignedPower`` layer class, registered with Keras on first use."""
    keras = runtime.keras()

    @keras.saving.register_keras_serializable(package="visret", name="SignedPower")
    class SignedPower(keras.layers.Layer):
        """``sign(x) |x|^exponent``, its gradient bounded at 0 (``|x| + 1e-6``)."""

        def __init__(self, exponent: float = 0.5, **kwargs):
            super().__init__(**kwargs)
            self.exponent = float(exponent)

        def call(self, x):
            ops = keras.ops
            return ops.sign(x) * ops.power(ops.abs(x) + 1e-6, self.exponent)

        def get_config(self):
            return {**super().get_config(), "exponent": self.exponent}

    return SignedPower


def norm_layers(norm: str) -> list | None:
    """Layers equal to ``visret.features.normalization.normalize(features, norm)``, or ``None`` for a
    normalisation they do not cover (``l1``, ``hellinger``)."""
    keras = runtime.keras()
    kind, exponent = parse_norm(norm)
    if kind == "none":
        return []
    if kind == "l2":
        return [keras.layers.UnitNormalization(name="head_l2")]
    if kind == "power":
        return [signed_power_layer()(exponent, name="head_power"), keras.layers.UnitNormalization(name="head_l2")]
    return None
