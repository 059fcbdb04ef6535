"""Reading image files safely and decoding them into the arrays an extractor asks for.

Only regular files under a size limit are read (never a pipe, a device or a file that would
fill memory); every common format and mode is accepted; EXIF orientation is applied;
transparency is composited onto white; JPEG files are decoded at a reduced scale when the
target size allows (the DCT does the downscaling). Anything that cannot be read raises
``ImageReadError`` with a short reason, which callers turn into a logged skip.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import stat
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps

from visret.features._extractor import InputSpec

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".pnm"}
)
#: Default decompression-bomb limit in pixels (Pillow's own default, about 89 megapixels).
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
#: Files larger than this are skipped unread (the largest common photos are a few tens of MB).
DEFAULT_MAX_BYTES = 512 * 2**20
#: An image is first reduced by a whole factor to the smallest size still covering ``reducing_gap`` times the
#: target (a JPEG by its DCT scale, 1/2 to 1/8, while it decodes; others by ``Image.reduce``), then resized
#: (Pillow's ``reducing_gap``). For targets of at least ``CLOSE_REDUCTION_FROM`` pixels a side (network inputs)
#: the gap is 1, the same for every format: on Oxford Flowers it halves decoding at 227 (3.6 -> 1.9 ms an
#: image) with retrieval and classification unchanged (default mAP 0.5621 -> 0.5620, SqueezeNet + logistic
#: over three splits 0.948 -> 0.951). Smaller targets keep 2: an 8 x 8 perceptual hash of a JPEG copy then
#: moved 5-6 bits from its PNG (at most 4 at 2, ``tests/test_duplicates.py``), and the final resize needs room
#: to smooth what a whole-factor box leaves. Reducing JPEGs alone (others at 2) made a JPEG copy of a PNG drift
#: from it (``visret duplicates -e hog`` found no copies): the reduction is the same for every format.
REDUCING_GAP = 2.0
CLOSE_REDUCTION_FROM = 160


def reducing_gap(size: tuple[int, int]) -> float:
    """The gap of the whole-factor reduction for a target of ``size``."""
    return 1.0 if min(size) >= CLOSE_REDUCTION_FROM else REDUCING_GAP
_pillow_limit = threading.Lock()


class ImageReadError(Exception):
    """A file that is not a readable image; the message is the reason, one line."""


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer and float images into 8-bit grey (Pillow would clip them)."""
    array = np.asarray(image)
    if image.mode.startswith("I;16") or array.dtype == np.uint16:
        scaled = array.astype(np.float32) / 257.0
    else:
        array = array.astype(np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    if image.mode.startswith("I") or image.mode == "F":
        image = _to_8bit(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert(mode)


def _to_space(image: Image.Image, mode: str) -> Image.Image:
    """An RGB image in HSV or CIE L*a*b* (converted after resizing: hue cannot be interpolated)."""
    if mode == "HSV":
        return image.convert("HSV")
    return ImageCms.applyTransform(image, _srgb_to_lab())


@functools.cache
def _srgb_to_lab():
    srgb, lab = ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB")
    return ImageCms.buildTransformFromOpenProfiles(srgb, lab, "RGB", "LAB")


def prepare(image: Image.Image, spec: InputSpec) -> np.ndarray:
    """Orient, convert and resize a Pillow image as ``spec`` says; return a uint8 array."""
    image = ImageOps.exif_transpose(image)
    colour_space = spec.mode in ("HSV", "LAB")
    image = _to_mode(image, "RGB" if colour_space else spec.mode)
    if spec.size is not None and image.size != (spec.size[1], spec.size[0]):
        image = image.resize((spec.size[1], spec.size[0]), Image.Resampling.BILINEAR, reducing_gap=reducing_gap(spec.size))
    if colour_space:
        image = _to_space(image, spec.mode)
    array = np.asarray(image, dtype=np.uint8)
    if spec.mode == "LAB":  # Pillow stores a* and b* as signed bytes: shift them to 0-255 (0 -> 128)
        array = array ^ np.array([0, 0x80, 0x80], np.uint8)
    return array


def _allow_pixels(max_pixels: int) -> None:
    """Raise Pillow's own decompression-bomb guard to ``max_pixels`` when a caller asks for more
    (visret checks the limit itself, before decoding)."""
    with _pillow_limit:
        current = Image.MAX_IMAGE_PIXELS
        if current is not None and max_pixels > current:
            Image.MAX_IMAGE_PIXELS = max_pixels


def decode(data: bytes, spec: InputSpec, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes (the first frame of animations) into an array for ``spec``."""
    if not data:
        raise ImageReadError("empty file")
    _allow_pixels(max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about damaged metadata: the file is judged below
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageReadError(
                        f"{width}x{height} pixels exceeds the limit of {max_pixels} (decompression bomb?)"
                    )
                if spec.size is not None and image.format == "JPEG":
                    side = int(max(spec.size) * reducing_gap(spec.size))  # square: EXIF may turn the image
                    image.draft(None, (side, side))
                image.load()
                return prepare(image, spec)
    except ImageReadError:
        raise
    except Image.DecompressionBombError:
        raise ImageReadError(f"image exceeds the limit of {max_pixels} pixels (decompression bomb?)") from None
    except Exception as exc:  # Pillow raises many types for broken files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "cannot identify image file" in reason:
            reason = "not an image"
        raise ImageReadError(reason) from None


def is_uri(path: str | Path) -> bool:
    """Whether ``path`` names a file on another filesystem (``s3://``, ``gs://``, ``file://``...)."""
    return isinstance(path, str) and "://" in path


def _read_uri(uri: str, max_bytes: int) -> bytes:
    """The bytes of a file that pyarrow's filesystems (or, failing them, fsspec's) can read."""
    import pyarrow
    from pyarrow import fs

    try:
        try:
            filesystem, inner = fs.FileSystem.from_uri(uri)
        except pyarrow.ArrowInvalid:  # a scheme pyarrow does not know: try fsspec's
            import fsspec  # an ImportError: no filesystem knows the scheme

            fsspec_filesystem, inner = fsspec.core.url_to_fs(uri)
            filesystem = fs.PyFileSystem(fs.FSSpecHandler(fsspec_filesystem))
        info = filesystem.get_file_info(inner)
        if info.type == fs.FileType.NotFound:
            raise ImageReadError("No such file or directory")
        if info.type != fs.FileType.File:
            raise ImageReadError("not a regular file")
        if info.size is not None and info.size > max_bytes:
            raise ImageReadError(f"{info.size} bytes exceeds the limit of {max_bytes}")
        with filesystem.open_input_stream(inner) as stream:
            data = stream.read(max_bytes + 1)
    except ImageReadError:
        raise
    except ImportError:
        raise ImageReadError(f"no filesystem for {uri.split('://')[0]}:// (install fsspec and its plugin)") from None
    except Exception as exc:  # network and permission errors of any filesystem
        raise ImageReadError(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__) from None
    if len(data) > max_bytes:
        raise ImageReadError(f"file exceeds the limit of {max_bytes} bytes")
    return data


def utf8_name(path: str | Path) -> bool:
    """Whether a file name is valid UTF-8: the names visret indexes (others are skipped, never stored)."""
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def read_file(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; anything else is an ``ImageReadError``.

    The file is opened without blocking (a named pipe cannot hang the reader) and checked
    before it is read: devices, pipes and sockets are refused, and so are files over the limit.
    A URI (``s3://bucket/key``) is read through pyarrow's or fsspec's filesystems.
    """
    if is_uri(path):
        return _read_uri(path, max_bytes)
    if not utf8_name(path):
        raise ImageReadError("file name is not valid UTF-8; rename the file to index it")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ImageReadError(exc.strerror or str(exc)) from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageReadError("not a regular file")
        if info.st_size > max_bytes:
            raise ImageReadError(f"{info.st_size} bytes exceeds the limit of {max_bytes}")
        try:
            data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise ImageReadError(exc.strerror or str(exc)) from None
    if len(data) > max_bytes:
        raise ImageReadError(f"file exceeds the limit of {max_bytes} bytes")
    return data


def file_sha256(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """SHA-256 of a file's content, read with the same rules as images."""
    return hashlib.sha256(read_file(path, max_bytes)).hexdigest()


def read_image(
    path: str | Path, spec: InputSpec, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[np.ndarray, str]:
    """Read and decode one file; return the array and the SHA-256 of the file's bytes."""
    data = read_file(path, max_bytes)
    return decode(data, spec, max_pixels), hashlib.sha256(data).hexdigest()


def display_path(path: str | Path) -> str:
    """A path as one printable line: control characters and undecodable bytes escaped."""
    text = str(path).encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def as_array(image: str | Path | Image.Image | np.ndarray, spec: InputSpec, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Accept a path, a Pillow image or an array (uint8, HxW or HxWxC) and prepare it for ``spec``."""
    if isinstance(image, (str, Path)):
        return read_image(image, spec, max_pixels)[0]
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ImageReadError(f"arrays must be uint8, got {image.dtype}")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise ImageReadError(f"arrays must be HxW, HxWx3 or HxWx4, got shape {image.shape}")
        image = Image.fromarray(image)
    if isinstance(image, Image.Image):
        return prepare(image, spec)
    raise ImageReadError(f"cannot read an image from {type(image).__name__}")
