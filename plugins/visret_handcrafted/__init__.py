"""visret's built-in handcrafted extractors: colour histograms, HOG, LBP and raw pixels."""

from visret import hookimpl
from visret_handcrafted.color import ColorHistogram
from visret_handcrafted.pixels import RawPixels
from visret_handcrafted.texture import HOG, LBP

EXTRACTORS = (ColorHistogram, HOG, LBP, RawPixels)


@hookimpl
def register_extractors(register):
    for extractor in EXTRACTORS:
        register(extractor)
