"""Images in: decoding with limits (``read_image``, ``as_array``), folders in ImageFolder layout, CSV and
Parquet image lists, and the dataset loaders plugins add (``find_images``)."""

from visret.images._decode import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    ImageReadError,
    as_array,
    decode,
    display_path,
    is_image_path,
    read_image,
)
from visret.images._folders import ImageRecord, scan_folder
from visret.images._lists import read_image_list
from visret.images.loaders import LOADERS, DatasetLoader, find_images

__all__ = [
    "DEFAULT_MAX_BYTES", "DEFAULT_MAX_PIXELS", "IMAGE_EXTENSIONS", "LOADERS", "DatasetLoader", "ImageReadError",
    "ImageRecord", "as_array", "decode", "display_path", "find_images", "is_image_path", "read_image",
    "read_image_list", "scan_folder",
]
