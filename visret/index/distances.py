"""The distances an index searches by: each is a map applied to vectors before they are stored,
a FAISS metric over the mapped vectors, and the distance users read.

============  ==========================================  =============  ===========================================
name          vectors stored                              FAISS metric   distance reported
============  ==========================================  =============  ===========================================
l2            as extracted                                L2             Euclidean
cosine        L2-normalised                               inner product  1 - cosine similarity
l1            as extracted                                L1             L1 (Manhattan)
intersection  L1-normalised (features must be >= 0)       L1             1 - histogram intersection (= L1 / 2)
chi2          explicit additive chi-square feature map    L2             chi-square distance, sum (x-y)^2/(x+y)
              (features >= 0; 5x the dimensions)                         (approximated by the map)
hamming       as extracted (features must be 0 or 1)      L2             bits that differ (squared L2 of 0/1 vectors)
============  ==========================================  =============  ===========================================

Because the map is applied before storing, FAISS searches every distance, and the exact search
over the shards needs no copy of the vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from visret.errors import VisretError

#: Steps and sampling interval of the chi-square feature map (Vedaldi & Zisserman); the map has
#: 2 * steps - 1 values per feature. On random histograms of 32 bins this interval keeps 97.5 % of
#: the exact top 10 (scikit-learn's default for 3 steps, 0.4, keeps 95 %).
CHI2_STEPS = 3
CHI2_INTERVAL = 0.5


@dataclass(frozen=True)
class Distance:
    name: str
    faiss_metric: int
    #: The FAISS metric ranks by similarity (larger is closer).
    similarity: bool = False
    #: Works with approximate FAISS factories (IVF, HNSW, PQ), not only exact search.
    approximate: bool = True

    def vector_dim(self, dim: int) -> int:
        """Length of the stored vectors for features of length ``dim``."""
        return dim * (2 * CHI2_STEPS - 1) if self.name == "chi2" else dim

    def prepare(self, features: np.ndarray) -> np.ndarray:
        """The stored (and searched) form of features: float32, C-contiguous, 2-D."""
        x = np.ascontiguousarray(np.atleast_2d(features), dtype=np.float32)
        if self.name in ("intersection", "chi2") and (x < 0).any():
            raise VisretError(f"distance {self.name} needs non-negative features (histograms); use l2 or cosine")
        if self.name == "hamming" and ((x != 0) & (x != 1)).any():
            raise VisretError("distance hamming needs 0/1 features (perceptual hashes such as phash); use l2 or cosine")
        if self.name == "cosine":
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        elif self.name == "intersection":
            x = x / np.maximum(x.sum(axis=1, keepdims=True), 1e-12)
        elif self.name == "chi2":
            from sklearn.kernel_approximation import AdditiveChi2Sampler

            x = AdditiveChi2Sampler(sample_steps=CHI2_STEPS, sample_interval=CHI2_INTERVAL).fit_transform(x)
        return np.ascontiguousarray(x, dtype=np.float32)

    def project(self, stored: np.ndarray) -> np.ndarray:
        """Vectors made in the stored space (a mean of stored vectors, say) put back in the form the
        metric expects: unit length for cosine, unit mass for intersection; others as they are."""
        x = np.ascontiguousarray(np.atleast_2d(stored), dtype=np.float32)
        if self.name == "cosine":
            return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        if self.name == "intersection":
            return x / np.maximum(np.abs(x).sum(axis=1, keepdims=True), 1e-12)
        return x

    def readable(self, raw: np.ndarray) -> np.ndarray:
        """FAISS's raw scores as the distance users read (smaller is closer)."""
        if self.name == "l2":
            out = np.sqrt(np.maximum(raw, 0.0))
        elif self.name == "cosine":
            out = 1.0 - raw
        elif self.name == "intersection":
            out = raw / 2.0
        elif self.name in ("chi2", "hamming"):
            out = np.maximum(raw, 0.0)
        else:
            out = raw
        return out.astype(np.float32)

    def check_factory(self, factory: str) -> None:
        if not self.approximate and factory != "Flat":
            raise VisretError(f"distance {self.name} works with the Flat index only, not {factory!r}")


DISTANCES = {
    d.name: d
    for d in (
        Distance("l2", faiss.METRIC_L2),
        Distance("cosine", faiss.METRIC_INNER_PRODUCT, similarity=True),
        Distance("l1", faiss.METRIC_L1, approximate=False),
        Distance("intersection", faiss.METRIC_L1, approximate=False),
        Distance("chi2", faiss.METRIC_L2),
        Distance("hamming", faiss.METRIC_L2),
    )
}


def get_distance(name: str) -> Distance:
    if name not in DISTANCES:
        raise VisretError(f"metric must be one of {', '.join(DISTANCES)}, got {name!r}")
    return DISTANCES[name]


def default_metric(extractor) -> str:
    """Hamming for extractors of 0/1 bits (perceptual hashes), Euclidean for everything else."""
    return "hamming" if getattr(extractor, "binary", False) else "l2"
