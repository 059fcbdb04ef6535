"""Decoding: every listed format and mode, EXIF orientation, transparency, broken files."""

import io

import numpy as np
import pytest
from PIL import Image

from visret import InputSpec
from visret.images._decode import ImageReadError, as_array, decode, read_image
from conftest import broken_files

RGB = InputSpec(mode="RGB")
GREY = InputSpec(mode="L")


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def gradient_rgb(w=48, h=32) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.uint8)
    pixels = np.stack(np.broadcast_arrays(x[None, :], x[::-1][None, :], np.full((h, w), 90, np.uint8)), axis=-1)
    return Image.fromarray(np.ascontiguousarray(pixels))


@pytest.mark.parametrize(
    "fmt, mode",
    [("PNG", "RGB"), ("JPEG", "RGB"), ("BMP", "RGB"), ("GIF", "P"), ("TIFF", "RGB"), ("WEBP", "RGB"), ("PPM", "RGB"), ("PPM", "L")],
)
def test_every_format_decodes_to_the_requested_mode_and_size(fmt, mode):
    data = encode(gradient_rgb().convert(mode), fmt)
    rgb = decode(data, InputSpec(mode="RGB", size=(16, 24)))
    grey = decode(data, InputSpec(mode="L"))
    assert rgb.shape == (16, 24, 3) and rgb.dtype == np.uint8
    assert grey.shape == (32, 48) and grey.dtype == np.uint8
    # the left-to-right ramp survives every codec: first column dark red, last column bright red
    full = decode(data, RGB)
    if mode == "RGB":
        assert full[:, -1, 0].mean() > full[:, 0, 0].mean() + 150


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16"])
def test_every_mode_is_converted(mode):
    image = gradient_rgb().convert("L").convert(mode) if mode in ("1", "I;16") else gradient_rgb().convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    out = decode(encode(image, fmt), RGB)
    assert out.shape == (32, 48, 3) and out.dtype == np.uint8


def test_sixteen_bit_grey_is_scaled_not_clipped():
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    out = decode(encode(image, "PNG"), GREY)
    assert out.tolist() == [[0, 100, 255]]


def test_hsv_mode_scales_every_channel_to_bytes():
    pixels = np.array([[[255, 0, 0], [0, 0, 255], [128, 128, 128]]], np.uint8)
    hsv = as_array(pixels, InputSpec(mode="HSV"))
    assert hsv.tolist() == [[[0, 255, 255], [170, 255, 255], [0, 0, 128]]]


def test_lab_mode_centres_the_colour_axes():
    pixels = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0]]], np.uint8)
    lab = as_array(pixels, InputSpec(mode="LAB")).astype(int)
    assert lab[0, 0].tolist() == [255, 128, 128] and lab[0, 1].tolist() == [0, 128, 128]
    assert lab[0, 2, 1] > 180 and lab[0, 3, 1] < 70  # red is +a*, green is -a*


def test_transparency_is_composited_on_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red
    rgba[:2, :, 3] = 255  # top half opaque, bottom half fully transparent
    out = decode(encode(Image.fromarray(rgba, "RGBA"), "PNG"), RGB)
    assert out[0, 0].tolist() == [255, 0, 0]
    assert out[3, 0].tolist() == [255, 255, 255]


def test_gif_gives_its_first_frame():
    frames = [Image.new("L", (8, 8), 10), Image.new("L", (8, 8), 240)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    assert decode(buffer.getvalue(), GREY).max() < 50


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = decode(encode(image, "JPEG", exif=exif), RGB)
    assert out.shape == (40, 20, 3)


@pytest.mark.parametrize("name", sorted(broken_files()))
def test_broken_files_raise_a_one_line_reason(name, tmp_path):
    path = tmp_path / name
    path.write_bytes(broken_files()[name])
    with pytest.raises(ImageReadError) as info:
        read_image(path, RGB, max_pixels=1_000_000)
    assert str(info.value) and "\n" not in str(info.value)


def test_decompression_bomb_message_names_the_limit(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(broken_files()["bomb.png"])
    with pytest.raises(ImageReadError, match="4000x4000 pixels exceeds the limit of 1000000"):
        read_image(path, GREY, max_pixels=1_000_000)
    assert read_image(path, GREY, max_pixels=20_000_000)[0].shape == (4000, 4000)


def test_read_image_returns_the_file_hash(tmp_path):
    import hashlib

    path = tmp_path / "x.png"
    data = encode(gradient_rgb(), "PNG")
    path.write_bytes(data)
    assert read_image(path, RGB)[1] == hashlib.sha256(data).hexdigest()


def test_as_array_accepts_arrays_and_pillow_images():
    pixels = np.asarray(gradient_rgb())
    assert np.array_equal(as_array(pixels, RGB), pixels)
    assert np.array_equal(as_array(gradient_rgb(), RGB), pixels)
    assert as_array(pixels[:, :, 0], RGB).shape == (32, 48, 3)
    with pytest.raises(ImageReadError, match="uint8"):
        as_array(pixels.astype(np.float32), RGB)
