"""Local descriptors (SIFT, ORB, DAISY) aggregated by a learned visual vocabulary: bag of words or VLAD.

``fit`` learns the codebook (MiniBatchKMeans) from descriptors of the images being indexed;
the codebook is saved with the index and reused for every query.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from visret import FeatureExtractor, InputSpec
from visret.features.normalization import normalize, parse_norm
from visret.features.params import check_choice, check_image_size, check_positive_int

DESCRIPTOR_DIMS = {"sift": 128, "orb": 256, "daisy": 200}


def local_descriptors(image: np.ndarray, kind: str, max_keypoints: int) -> np.ndarray:
    """Descriptors of one grey image, ``(m, d)`` float32; ``m`` may be 0 for flat images."""
    from skimage.feature import ORB, SIFT, daisy

    grey = image.astype(np.float64) / 255.0
    if kind == "daisy":
        dense = daisy(grey, step=8, radius=15, rings=3, histograms=8, orientations=8)
        return dense.reshape(-1, dense.shape[-1]).astype(np.float32)
    detector = SIFT(n_octaves=4) if kind == "sift" else ORB(n_keypoints=max_keypoints, fast_threshold=0.05)
    try:
        detector.detect_and_extract(grey)
    except RuntimeError:  # no keypoint found (flat or tiny image)
        return np.zeros((0, DESCRIPTOR_DIMS[kind]), np.float32)
    descriptors = detector.descriptors.astype(np.float32)
    if kind == "sift" and len(descriptors) > max_keypoints:  # keep the strongest-scale ones deterministically
        descriptors = descriptors[:max_keypoints]
    return descriptors


def nearest_word(descriptors: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest codeword (squared Euclidean) for each descriptor."""
    distances = (descriptors**2).sum(1)[:, None] - 2 * descriptors @ centers.T + (centers**2).sum(1)[None]
    return distances.argmin(axis=1)


class BagOfVisualWords(FeatureExtractor):
    """SIFT, ORB or DAISY descriptors encoded against a learned codebook: word histogram or VLAD.

    ``bow``: histogram of nearest codewords (``words`` dims); ``vlad``: per word, the sum of
    residuals to it (``words`` x descriptor dims). ``norm`` (default ``hellinger``: RootSIFT-style
    square root for BoW, the power + L2 normalisation of VLAD) applies to both.
    """

    name: ClassVar[str] = "bovw"
    requires_fit: ClassVar[bool] = True

    def __init__(
        self,
        descriptor: str = "sift",
        encoding: str = "bow",
        words: int = 64,
        max_keypoints: int = 200,
        fit_images: int = 500,
        fit_descriptors: int = 50_000,
        size: int = 128,
        seed: int = 0,
        norm: str = "hellinger",
    ):
        self.descriptor = descriptor
        self.encoding = encoding
        self.words = words
        self.max_keypoints = max_keypoints
        self.fit_images = fit_images
        self.fit_descriptors = fit_descriptors
        self.size = size
        self.seed = seed
        self.norm = norm

    def validate(self) -> None:
        parse_norm(self.norm)
        check_choice("descriptor", self.descriptor, DESCRIPTOR_DIMS)
        check_choice("encoding", self.encoding, ("bow", "vlad"))
        check_positive_int("words", self.words, minimum=2)
        for key in ("max_keypoints", "fit_images", "fit_descriptors"):
            check_positive_int(key, getattr(self, key))
        check_image_size(self.size, minimum=32)
        check_positive_int("seed", self.seed, minimum=0)

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(mode="L", size=(self.size, self.size))

    @property
    def dim(self) -> int:
        return self.words * (DESCRIPTOR_DIMS[self.descriptor] if self.encoding == "vlad" else 1)

    def fit_sample_size(self) -> int:
        return self.fit_images

    def fit(self, images, labels=None) -> BagOfVisualWords:
        from sklearn.cluster import MiniBatchKMeans

        pool = [local_descriptors(image, self.descriptor, self.max_keypoints) for image in images]
        descriptors = np.concatenate(pool) if pool else np.zeros((0, DESCRIPTOR_DIMS[self.descriptor]))
        if len(descriptors) < self.words:
            raise ValueError(
                f"only {len(descriptors)} {self.descriptor} descriptors in {len(images)} images, "
                f"fewer than words={self.words}"
            )
        rng = np.random.default_rng(self.seed)
        if len(descriptors) > self.fit_descriptors:
            descriptors = descriptors[rng.choice(len(descriptors), self.fit_descriptors, replace=False)]
        kmeans = MiniBatchKMeans(n_clusters=self.words, random_state=self.seed, n_init=3, batch_size=2048)
        self.centers_ = kmeans.fit(descriptors).cluster_centers_.astype(np.float32)
        return self

    def get_state(self) -> dict[str, np.ndarray]:
        return {"centers": self.centers_}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.centers_ = np.asarray(state["centers"], dtype=np.float32)

    def encode(self, descriptors: np.ndarray) -> np.ndarray:
        if len(descriptors) == 0:
            return np.zeros(self.dim, np.float32)
        words = nearest_word(descriptors, self.centers_)
        if self.encoding == "bow":
            return (np.bincount(words, minlength=self.words) / len(words)).astype(np.float32)
        residuals = np.zeros_like(self.centers_)
        np.add.at(residuals, words, descriptors - self.centers_[words])
        return residuals.ravel().astype(np.float32)  # norm "hellinger" is VLAD's power + L2 normalisation

    def extract(self, images):
        if not hasattr(self, "centers_"):
            raise RuntimeError("bovw must be fitted (its codebook learned) before extracting")
        return normalize(np.stack([self.encode(local_descriptors(image, self.descriptor, self.max_keypoints)) for image in images]), self.norm)
