"""Fuzzing the decoder: random bytes and mutated real files of every format end in an array of the
requested shape or a one-line ``ImageReadError``, quickly; never another exception."""

import io
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from skimage import data as samples

from visret.features._extractor import InputSpec
from visret.images._decode import ImageReadError, decode

SPECS = [InputSpec("RGB", (16, 16)), InputSpec("L", (24, 12)), InputSpec("HSV", (8, 8)), InputSpec("LAB", (8, 8))]
#: Pixels a fuzzed file may claim: small, so a mutated header cannot make the test allocate much.
MAX_PIXELS = 4_000_000
SECONDS = 2.0


def _seeds() -> list[bytes]:
    """Real images (scikit-image samples) encoded in each format the decoder accepts."""
    photo = Image.fromarray(samples.astronaut()).resize((48, 48))
    grey = Image.fromarray(samples.camera()).resize((40, 30))
    out = []
    for image, fmt, options in [
        (photo, "PNG", {}), (photo, "JPEG", {"quality": 80}), (photo.convert("P"), "GIF", {}),
        (photo, "TIFF", {"compression": "tiff_lzw"}), (photo, "WEBP", {"quality": 70}), (grey, "BMP", {}),
        (grey, "PNG", {}), (photo.convert("RGBA"), "PNG", {}), (grey, "PPM", {}),
    ]:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **options)
        out.append(buffer.getvalue())
    return out


SEEDS = _seeds()


def _check(data: bytes, spec: InputSpec) -> None:
    start = time.perf_counter()
    try:
        array = decode(data, spec, MAX_PIXELS)
    except ImageReadError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert array.dtype == np.uint8 and array.shape[:2] == spec.size
        assert array.ndim == (2 if spec.mode == "L" else 3)
    assert time.perf_counter() - start < SECONDS


def test_every_seed_decodes():
    for data in SEEDS:
        for spec in SPECS:
            assert decode(data, spec).shape[:2] == spec.size


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096), st.sampled_from(SPECS))
def test_random_bytes(data, spec):
    _check(data, spec)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(range(len(SEEDS))),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, 10**6),
    st.sampled_from(SPECS),
)
def test_mutated_real_files(seed, edits, cut, spec):
    data = bytearray(SEEDS[seed])
    for position, value in edits:
        data[position % len(data)] = value
    _check(bytes(data[: max(1, cut % (len(data) + 1))]), spec)


@pytest.mark.parametrize("seed", range(len(SEEDS)))
def test_every_truncation_of_a_header(seed):
    for cut in range(0, min(200, len(SEEDS[seed]))):
        _check(SEEDS[seed][:cut], SPECS[0])
