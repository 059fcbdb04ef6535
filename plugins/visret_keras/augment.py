"""Data augmentation: Keras preprocessing layers (active only in training) and mixup.

``--augment flip=horizontal,rotate=0.1,translate=0.1,zoom=0.1,contrast=0.2,brightness=0.2``
"""

from __future__ import annotations

from visret_keras import runtime

KINDS = ("flip", "rotate", "translate", "zoom", "contrast", "brightness")


def parse_augment(spec: str | dict | None) -> dict:
    """``"flip=horizontal,rotate=0.1"`` -> ``{"flip": "horizontal", "rotate": 0.1}``."""
    if spec is None or spec == "":
        return {}
    if isinstance(spec, dict):
        items = spec.items()
    else:
        items = []
        for part in str(spec).split(","):
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"augmentation {part!r} is not KIND=VALUE (kinds: {', '.join(KINDS)})")
            items.append((key.strip(), value.strip()))
    parsed = {}
    for key, value in items:
        if key not in KINDS:
            raise ValueError(f"unknown augmentation {key!r} (kinds: {', '.join(KINDS)})")
        if key == "flip":
            if value not in ("horizontal", "vertical", "horizontal_and_vertical"):
                raise ValueError(f"flip must be horizontal, vertical or horizontal_and_vertical, got {value!r}")
            parsed[key] = value
        else:
            try:
                parsed[key] = float(value)
            except ValueError:
                raise ValueError(f"{key} must be a number, got {value!r}") from None
            if not 0 < parsed[key] < 1:
                raise ValueError(f"{key} must be between 0 and 1, got {value!r}")
    return parsed


def augmentation_model(spec: dict, seed: int = 0):
    """A ``Sequential`` of random layers named ``augmentation``; they pass images through unchanged
    unless called with ``training=True`` (Keras does so only inside ``fit``)."""
    keras = runtime.keras()
    layers = keras.layers
    stack = []
    for i, (kind, value) in enumerate(spec.items()):
        s = seed + i
        if kind == "flip":
            stack.append(layers.RandomFlip(value, seed=s))
        elif kind == "rotate":
            stack.append(layers.RandomRotation(value, fill_mode="reflect", seed=s))
        elif kind == "translate":
            stack.append(layers.RandomTranslation(value, value, fill_mode="reflect", seed=s))
        elif kind == "zoom":
            stack.append(layers.RandomZoom(value, fill_mode="reflect", seed=s))
        elif kind == "contrast":
            stack.append(layers.RandomContrast(value, value_range=(0, 255), seed=s))
        elif kind == "brightness":
            stack.append(layers.RandomBrightness(value, value_range=(0, 255), seed=s))
    return keras.Sequential(stack, name="augmentation")


def mixup(images, labels, alpha: float, seed=None):
    """Convex combinations of each example with a shuffled partner: lambda ~ Beta(alpha, alpha),
    applied alike to the images and their one-hot labels (Zhang et al. 2018). TensorFlow ops, for tf.data."""
    tf = runtime.tensorflow()
    n = tf.shape(images)[0]
    a = tf.random.gamma([n], alpha, seed=seed)
    b = tf.random.gamma([n], alpha, seed=None if seed is None else seed + 1)
    lam = a / (a + b)
    partner = tf.random.shuffle(tf.range(n), seed=seed)
    lam_images = tf.reshape(lam, [-1, 1, 1, 1])
    lam_labels = tf.reshape(lam, [-1, 1])
    mixed_images = lam_images * images + (1 - lam_images) * tf.gather(images, partner)
    mixed_labels = lam_labels * labels + (1 - lam_labels) * tf.gather(labels, partner)
    return mixed_images, mixed_labels
