"""Keras Applications as feature extraction networks: ``keras/<family>``, headless and pooled.

Each family gets its own ``preprocess_input`` and its own default input size; ``layer`` takes
features from an intermediate layer instead of the last one, globally pooled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from visret import InputSpec
from visret.features.params import check_bool, check_choice, check_image_size, check_positive_int
from visret_keras import runtime
from visret_keras.base import KerasExtractor
from visret_keras.preprocessing import preprocessing_layers


@dataclass(frozen=True)
class Family:
    """Where a Keras Application lives and how it wants its input."""

    module: str  # keras.applications submodule holding its preprocess_input
    constructor: str  # the constructor's name in keras.applications
    size: int  # the family's own input size (what its ImageNet weights were trained at)
    min_size: int = 32


FAMILIES: dict[str, Family] = {
    "mobilenet": Family("mobilenet", "MobileNet", 224),
    "mobilenet_v2": Family("mobilenet_v2", "MobileNetV2", 224),
    "mobilenet_v3_small": Family("mobilenet_v3", "MobileNetV3Small", 224),
    "mobilenet_v3_large": Family("mobilenet_v3", "MobileNetV3Large", 224),
    "resnet50": Family("resnet", "ResNet50", 224),
    "resnet101": Family("resnet", "ResNet101", 224),
    "resnet152": Family("resnet", "ResNet152", 224),
    "resnet50_v2": Family("resnet_v2", "ResNet50V2", 224),
    "resnet101_v2": Family("resnet_v2", "ResNet101V2", 224),
    "resnet152_v2": Family("resnet_v2", "ResNet152V2", 224),
    "vgg16": Family("vgg16", "VGG16", 224),
    "vgg19": Family("vgg19", "VGG19", 224),
    "inception_v3": Family("inception_v3", "InceptionV3", 299, min_size=75),
    "inception_resnet_v2": Family("inception_resnet_v2", "InceptionResNetV2", 299, min_size=75),
    "xception": Family("xception", "Xception", 299, min_size=71),
    "densenet121": Family("densenet", "DenseNet121", 224),
    "densenet169": Family("densenet", "DenseNet169", 224),
    "densenet201": Family("densenet", "DenseNet201", 224),
    **{
        f"efficientnet_b{i}": Family("efficientnet", f"EfficientNetB{i}", size)
        for i, size in enumerate((224, 240, 260, 300, 380, 456, 528, 600))
    },
    **{
        f"efficientnet_v2_{v.lower()}": Family("efficientnet_v2", f"EfficientNetV2{v}", size)
        for v, size in (("B0", 224), ("B1", 240), ("B2", 260), ("B3", 300), ("S", 384), ("M", 480), ("L", 480))
    },
    **{
        f"convnext_{v.lower()}": Family("convnext", f"ConvNeXt{v}", 224)
        for v in ("Tiny", "Small", "Base", "Large", "XLarge")
    },
    "nasnet_mobile": Family("nasnet", "NASNetMobile", 224),
    "nasnet_large": Family("nasnet", "NASNetLarge", 331),
}


class KerasApplication(KerasExtractor):
    """A Keras Application without its classifier, globally pooled (subclassed per family).

    ``weights`` is ``imagenet`` (Keras downloads and caches them), a local weights file, or
    ``none``: random weights drawn from ``seed`` (Keras' global seed is set while building), so
    an index built with them can be queried later.
    """

    family: ClassVar[Family]
    offline: ClassVar[bool] = False  # its default ImageNet weights are Keras' download

    def __init__(
        self,
        size: int | None = None,
        pooling: str = "avg",
        weights: str = "imagenet",
        layer: str | None = None,
        normalize: bool = False,
        seed: int = 0,
    ):
        self.size = size
        self.pooling = pooling
        self.weights = weights
        self.layer = layer
        self.normalize = normalize
        self.seed = seed

    @property
    def input_size(self) -> int:
        return self.size or self.family.size

    def validate(self) -> None:
        if self.size is not None:
            check_image_size(self.size, minimum=self.family.min_size)
        check_choice("pooling", self.pooling, ("avg", "max"))
        check_positive_int("seed", self.seed, minimum=0)
        runtime.check_weights(self.weights)
        check_bool("normalize", self.normalize)
        if self.family.constructor.startswith("NASNet") and self.weights == "imagenet" and self.size not in (None, self.family.size):
            raise ValueError(f"NASNet's ImageNet weights need size {self.family.size}")

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(mode="RGB", size=(self.input_size, self.input_size))

    def weights_file(self) -> Path | None:
        return None if self.weights in ("imagenet", "none", None) else Path(self.weights).expanduser()

    def _module(self):
        import importlib

        runtime.keras()
        return importlib.import_module(f"keras.applications.{self.family.module}")

    def preprocess(self, batch):
        return self._module().preprocess_input(batch)

    def preprocessing_layers(self) -> list:
        return preprocessing_layers(self.family.module)

    def build_model(self):
        keras = runtime.keras()
        if self.weights in ("none", None):
            weights = None
            # random weights must be the same ones when the index is reopened for queries
            keras.utils.set_random_seed(self.seed)
        elif self.weights == "imagenet":
            weights = "imagenet"
        else:
            weights = str(Path(self.weights).expanduser())
        constructor = getattr(keras.applications, self.family.constructor)
        try:
            base = constructor(include_top=False, weights=weights, input_shape=(self.input_size, self.input_size, 3))
        except Exception as exc:
            if weights == "imagenet" and _is_download_failure(exc):
                raise runtime.download_error(self.name, exc) from None
            raise
        if self.layer is not None:
            try:
                features = base.get_layer(self.layer).output
            except ValueError:
                raise ValueError(f"{self.name} has no layer {self.layer!r}") from None
        else:
            features = base.output
        pool = keras.layers.GlobalAveragePooling2D if self.pooling == "avg" else keras.layers.GlobalMaxPooling2D
        if len(features.shape) == 4:
            features = pool(name="visret_pool")(features)
        return keras.Model(base.input, features, name=self.name.replace("/", "_"))


def _is_download_failure(exc: Exception) -> bool:
    text = f"{type(exc).__name__}: {exc}"
    return any(s in text for s in ("URL fetch failure", "URLError", "HTTP Error", "Name or service", "Connection"))


def _family_class(key: str, family: Family) -> type[KerasApplication]:
    cls = type(
        f"Keras_{key}",
        (KerasApplication,),
        {
            "name": f"keras/{key}",
            "family": family,
            "__doc__": f"Keras {family.constructor} without its top, pooled; default input {family.size}x{family.size}.",
            "__module__": __name__,
        },
    )
    globals()[cls.__name__] = cls  # importable by name, so it pickles like any class
    return cls


APPLICATIONS: tuple[type[KerasApplication], ...] = tuple(_family_class(k, f) for k, f in FAMILIES.items())
