"""``keras/squeezenet``: SqueezeNet 1.1 with ImageNet weights that need no download.

The weights come from the ``ndf`` package (see ``squeezenet_weights``), so pretrained deep
features and transfer learning work on machines that cannot reach Keras' download server.
SqueezeNet 1.1 (Iandola et al. 2016, the Caffe release): 227x227 BGR input minus the ImageNet
means, conv1 3x3/2, max-pooling 3/2 after conv1, fire3 and fire5, eight fire modules, conv10
(1000 classes), every convolution followed by ReLU. 1.2 M parameters, 0.35 GFLOPs an image.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from visret import InputSpec
from visret.features.normalization import normalize as normalize_rows, parse_norm
from visret.features.params import check_choice, check_image_size, check_positive_int
from visret_keras import runtime
from visret_keras.base import KerasExtractor
from visret_keras.preprocessing import IMAGENET_MEAN_BGR, mode_layers
from visret_keras.squeezenet_weights import FIRE_FILTERS, imagenet_weights, source

#: Layers features can be taken from (globally pooled), earliest first.
LAYERS = (*FIRE_FILTERS, "conv10")
WEIGHTS = ("imagenet", "none")


def squeezenet(input_shape=(227, 227, 3), weights: str = "imagenet", seed: int = 0, last: str | None = None):
    """SqueezeNet 1.1 up to its class probabilities (conv10, ReLU, global average, softmax), or up
    to the output of layer ``last`` (a fire module or ``conv10``, not pooled).

    It takes Caffe's input (BGR minus the ImageNet means); layers are named ``conv1``,
    ``fireN_squeeze1x1``, ``fireN_expand1x1``, ``fireN_expand3x3``, ``fireN`` (the concatenation)
    and ``conv10``. ``weights``: ``imagenet`` (from ``ndf``) or ``none`` (seeded Glorot).
    """
    trained = imagenet_weights() if weights == "imagenet" else {}  # a missing or damaged file: said before TensorFlow starts
    keras = runtime.keras()
    layers = keras.layers
    if weights == "none":
        keras.utils.set_random_seed(seed)

    def conv(x, filters, size, name, strides=1, padding="same"):
        return layers.Conv2D(filters, size, strides=strides, padding=padding, activation="relu", name=name)(x)

    inputs = keras.Input(shape=tuple(input_shape), name="bgr_centred")
    x = conv(inputs, 64, 3, "conv1", strides=2, padding="valid")
    x = layers.MaxPooling2D(3, 2, name="pool1")(x)
    for fire, (squeeze, expand1, expand3) in FIRE_FILTERS.items():
        s = conv(x, squeeze, 1, f"{fire}_squeeze1x1")
        x = layers.Concatenate(name=fire)([conv(s, expand1, 1, f"{fire}_expand1x1"), conv(s, expand3, 3, f"{fire}_expand3x3")])
        if fire == last:
            break
        if fire in ("fire3", "fire5"):
            x = layers.MaxPooling2D(3, 2, name=f"pool{fire[-1]}")(x)
    else:
        x = conv(layers.Dropout(0.5, name="drop9")(x), 1000, 1, "conv10", padding="valid")
        if last is None:
            x = layers.Softmax(name="predictions")(layers.GlobalAveragePooling2D(name="pool10")(x))
    model = keras.Model(inputs, x, name="squeezenet")
    if weights == "imagenet":
        present = {layer.name for layer in model.layers}
        for layer_name, arrays in trained.items():
            if layer_name.replace("/", "_") in present:
                model.get_layer(layer_name.replace("/", "_")).set_weights(arrays)
    return model


def min_input_size(layer: str) -> int:
    """The smallest input side whose ``layer`` output is still at least 1x1."""
    pools = sum(LAYERS.index(layer) > LAYERS.index(fire) for fire in ("fire3", "fire5"))
    side = 1
    for _ in range(pools + 2):  # those max-pools, pool1 and conv1: all 3x3 with stride 2
        side = 2 * side + 1
    return side


class SqueezeNet(KerasExtractor):
    """SqueezeNet 1.1, ImageNet weights shipped by the ndf package (no download); fire9 pooled.

    ``layer``: fire2 ... fire9 or conv10 (ImageNet class scores), globally pooled (``avg`` or
    ``max``). ``norm`` (default ``power:0.5``: signed square root, then L2) suits Euclidean
    search of ReLU activations. ``weights``: ``imagenet`` or ``none`` (random, from ``seed``);
    ``weights_sha256`` records the ImageNet file an index was built with, checked on reopening.
    """

    name: ClassVar[str] = "keras/squeezenet"

    def __init__(
        self,
        size: int = 227,
        layer: str = "fire9",
        pooling: str = "avg",
        norm: str = "power:0.5",
        weights: str = "imagenet",
        seed: int = 0,
        weights_sha256: str | None = None,
    ):
        self.size = size
        self.layer = layer
        self.pooling = pooling
        self.norm = norm
        self.weights = weights
        self.seed = seed
        self.weights_sha256 = weights_sha256

    def validate(self) -> None:
        check_choice("layer", self.layer, LAYERS)
        check_image_size(self.size, minimum=min_input_size(self.layer))
        check_choice("pooling", self.pooling, ("avg", "max"))
        parse_norm(self.norm)
        check_choice("weights", self.weights, WEIGHTS)
        check_positive_int("seed", self.seed, minimum=0)
        self.check_shipped_weights()

    def shipped_weights_sha256(self) -> str:
        return source()["sha256"]

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(mode="RGB", size=(self.size, self.size))

    @property
    def dim(self) -> int:
        if self.layer == "conv10":
            return 1000
        _, expand1, expand3 = FIRE_FILTERS[self.layer]
        return expand1 + expand3

    def preprocess(self, batch: np.ndarray) -> np.ndarray:
        return batch[..., ::-1] - IMAGENET_MEAN_BGR

    def preprocessing_layers(self) -> list:
        return mode_layers("caffe")

    def build_model(self):
        net = squeezenet((self.size, self.size, 3), self.weights, self.seed, last=self.layer)
        keras = runtime.keras()
        pool = keras.layers.GlobalAveragePooling2D if self.pooling == "avg" else keras.layers.GlobalMaxPooling2D
        return keras.Model(net.input, pool(name="visret_pool")(net.output), name="squeezenet_features")

    def feature_norm(self) -> str:
        return self.norm

    def extract(self, images):
        features = super().extract(images)
        return features if self.norm == "none" else normalize_rows(features, self.norm)
