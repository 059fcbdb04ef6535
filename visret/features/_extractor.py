"""The ``FeatureExtractor`` interface every extractor plugin implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

from visret.features.params import Configurable

#: The extractor used when none is named: SqueezeNet's ImageNet features (no download) side by
#: side with a colour histogram at 0.3 of their weight. Alone, the network wins on photographs and
#: digits but loses to colour on objects and faces; this mix is measured on every shared dataset
#: in docs/benchmarks.md ("Defaults"). ``-e color-hist`` is the fast handcrafted choice.
DEFAULT_EXTRACTOR = {"name": "combine", "params": {"parts": ("keras/squeezenet", "color-hist"), "weights": (1.0, 0.3), "size": 227}}
#: The default as help texts show it.
DEFAULT_EXTRACTOR_LABEL = "keras/squeezenet + 0.3 x color-hist (combine)"


@dataclass(frozen=True)
class InputSpec:
    """What an extractor wants its images to look like, so each file is decoded and resized once.

    ``mode`` is ``"RGB"``, ``"L"``, ``"HSV"`` or ``"LAB"``, each channel as a byte (HSV hue
    0-255; CIE L*a*b* with L* scaled to 0-255 and a*, b* offset by 128); ``size`` is
    ``(height, width)`` or ``None`` for the image's own size.
    """

    mode: str = "RGB"
    size: tuple[int, int] | None = None


class FeatureExtractor(Configurable):
    """Turns a batch of decoded images into fixed-length float32 vectors.

    Subclasses follow scikit-learn conventions: ``__init__`` stores its keyword arguments as
    attributes of the same name and does nothing else; learned state (set by ``fit``) ends in
    ``_``. Parameters are JSON-serialisable so that an index records how it was built.
    """

    name: ClassVar[str] = ""
    #: Extractors that learn from the indexed images (codebooks, PCA) set this to True.
    requires_fit: ClassVar[bool] = False
    #: True when extraction is CPU-bound Python/numpy work that scales across worker processes;
    #: False for extractors that use every core themselves (TensorFlow): files are then decoded
    #: in worker processes while this process extracts the previous batch.
    parallel: ClassVar[bool] = True
    #: True when ``fit`` learns from the labels (LDA): such an extractor is refitted without the
    #: queries whenever it is evaluated, and cannot be fitted on unlabelled images.
    supervised: ClassVar[bool] = False
    #: True when features are 0/1 bits (perceptual hashes), compared by Hamming distance.
    binary: ClassVar[bool] = False
    #: The parameter that ``name:VALUE`` sets (``model:net.keras`` -> ``path="net.keras"``).
    shorthand: ClassVar[str | None] = None
    #: False when the extractor, at its defaults, downloads something (Keras' ImageNet weights): what
    #: ``visret extractors`` says to people on machines that cannot.
    offline: ClassVar[bool] = True

    @property
    def input_spec(self) -> InputSpec:
        raise NotImplementedError

    @property
    def dim(self) -> int:
        raise NotImplementedError

    def extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Return a float32 array of shape ``(len(images), dim)``.

        Images arrive as uint8 arrays shaped by ``input_spec``: ``(h, w)`` for L, else ``(h, w, 3)``.
        """
        raise NotImplementedError

    def fit(self, images: Sequence[np.ndarray], labels: Sequence[str] | None = None) -> FeatureExtractor:
        """Learn state from the images to be indexed; a no-op for extractors without state."""
        return self

    def for_trained_head(self) -> FeatureExtractor:
        """The extractor a classification head is trained on: this one, unless its defaults serve
        retrieval in a way a head does better itself (``combine`` stops weighing its blocks by
        retrieval mAP: an SVM weighs them, and starves when weak blocks are scaled away)."""
        return self

    def fit_sample_size(self) -> int | None:
        """How many of the images to be indexed ``fit`` needs (a seeded sample); None for all."""
        return None

    def get_state(self) -> dict[str, np.ndarray]:
        """Learned state as named arrays, saved next to the index (never pickled)."""
        return {}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what ``get_state`` returned."""
