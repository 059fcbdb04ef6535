"""visret's built-in handcrafted extractors: colour, texture, shape, edges, local descriptors, pixels, perceptual hashes."""

from visret import hookimpl
from visret_handcrafted.color import ColorCorrelogram, ColorHistogram, ColorMoments
from visret_handcrafted.edges import EdgeHistogram
from visret_handcrafted.gabor import GIST, GaborEnergy
from visret_handcrafted.hashes import AverageHash, DifferenceHash, PHash, WaveletHash
from visret_handcrafted.local import BagOfVisualWords
from visret_handcrafted.pixels import RawPixels
from visret_handcrafted.shape import RegionShape
from visret_handcrafted.texture import GLCM, HOG, LBP

EXTRACTORS = (
    ColorHistogram, ColorMoments, ColorCorrelogram,
    HOG, LBP, GLCM, GaborEnergy, GIST,
    RegionShape, EdgeHistogram, BagOfVisualWords, RawPixels,
    PHash, DifferenceHash, AverageHash, WaveletHash,
)


@hookimpl
def register_extractors(register):
    for extractor in EXTRACTORS:
        register(extractor)
