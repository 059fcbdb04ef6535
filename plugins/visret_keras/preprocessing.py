"""Each Keras Application family's ``preprocess_input`` as Keras layers, so trained models carry it.

A model saved by ``visret train`` takes raw pixel values (0-255) and needs nothing else: it
works with ``visret classify`` and as ``model:PATH``, and loads in safe mode (no Lambda).
"""

from __future__ import annotations

import numpy as np

from visret_keras import runtime

#: keras.applications module -> preprocessing mode of its preprocess_input
MODES = {
    "mobilenet": "tf", "mobilenet_v2": "tf", "resnet_v2": "tf", "inception_v3": "tf", "inception_resnet_v2": "tf",
    "xception": "tf", "nasnet": "tf",
    "resnet": "caffe", "vgg16": "caffe", "vgg19": "caffe",
    "densenet": "torch",
    "mobilenet_v3": "none", "efficientnet": "none", "efficientnet_v2": "none", "convnext": "none",
}
IMAGENET_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)
TORCH_MEAN, TORCH_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def preprocessing_layers(module: str) -> list:
    """Layers equal to ``keras.applications.<module>.preprocess_input`` on 0-255 RGB input."""
    return mode_layers(MODES[module])


def mode_layers(mode: str) -> list:
    """Layers for one of ``preprocess_input``'s modes (``tf``, ``torch``, ``caffe``, ``none``)."""
    keras = runtime.keras()
    if mode == "tf":
        return [keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")]
    if mode == "torch":
        return [
            keras.layers.Rescaling(1 / 255.0, name="preprocess_scale"),
            keras.layers.Normalization(mean=TORCH_MEAN.tolist(), variance=(TORCH_STD**2).tolist(), name="preprocess"),
        ]
    if mode == "caffe":  # RGB -> BGR and minus the ImageNet means: a fixed 1x1 convolution
        swap = np.zeros((1, 1, 3, 3), np.float32)
        swap[0, 0, [2, 1, 0], [0, 1, 2]] = 1.0
        layer = keras.layers.Conv2D(3, 1, name="preprocess", trainable=False)
        layer.build((None, None, None, 3))
        layer.set_weights([swap, -IMAGENET_MEAN_BGR])
        return [layer]
    return []
