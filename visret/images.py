"""Decoding image files into the arrays an extractor asks for.

Every common format and mode is accepted; EXIF orientation is applied; transparency is
composited onto white. Anything that cannot be decoded raises ``ImageReadError`` with a short
reason, which callers turn into a logged skip.
"""

from __future__ import annotations

import functools
import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps

from visret.extractor import InputSpec

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".pnm"}
)
#: Default decompression-bomb limit in pixels (Pillow's own default, about 89 megapixels).
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


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
    if mode == "HSV":  # Pillow converts to HSV from RGB only
        return image.convert("RGB").convert("HSV")
    if mode == "LAB":
        return ImageCms.applyTransform(image.convert("RGB"), _srgb_to_lab())
    return image.convert(mode)


@functools.cache
def _srgb_to_lab():
    srgb, lab = ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB")
    return ImageCms.buildTransformFromOpenProfiles(srgb, lab, "RGB", "LAB")


def prepare(image: Image.Image, spec: InputSpec) -> np.ndarray:
    """Orient, convert and resize a Pillow image as ``spec`` says; return a uint8 array."""
    image = ImageOps.exif_transpose(image)
    image = _to_mode(image, spec.mode)
    if spec.size is not None and image.size != (spec.size[1], spec.size[0]):
        image = image.resize((spec.size[1], spec.size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    if spec.mode == "LAB":  # Pillow stores a* and b* as signed bytes: shift them to 0-255 (0 -> 128)
        array = array ^ np.array([0, 0x80, 0x80], np.uint8)
    return array


def decode(data: bytes, spec: InputSpec, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes (the first frame of animations) into an array for ``spec``."""
    if not data:
        raise ImageReadError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageReadError(
                        f"{width}x{height} pixels exceeds the limit of {max_pixels} (decompression bomb?)"
                    )
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


def read_image(path: str | Path, spec: InputSpec, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, str]:
    """Read and decode one file; return the array and the SHA-256 of the file's bytes."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageReadError(exc.strerror or str(exc)) from None
    return decode(data, spec, max_pixels), hashlib.sha256(data).hexdigest()


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
