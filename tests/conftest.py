"""Shared fixtures: small real image folders (scikit-learn digits) and a CLI runner."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

# Rich sizes tables to the terminal, 80 columns without one: wide enough here that a long temporary
# path (pytest-xdist's are longer) never wraps inside what a test reads.
os.environ["COLUMNS"] = "200"
# Graphs derived from CNN extractors are cached per machine (visret_keras.derived): the suite keeps its
# own cache, shared by its workers and subprocesses, apart from the user's.
os.environ.setdefault("VISRET_CACHE", os.path.join(tempfile.gettempdir(), f"visret-test-cache-{os.getuid()}"))

import visret
from visret import plugins
from visret.sample_data import write_digits


@pytest.fixture(scope="session")
def digits(tmp_path_factory) -> Path:
    """Digits in ImageFolder layout, 20 per class: ``train`` (150 images) and ``test`` (50)."""
    return write_digits(tmp_path_factory.mktemp("digits"), test_size=0.25, seed=0, limit=20)


@pytest.fixture(scope="session")
def digits_index(digits, tmp_path_factory) -> Path:
    """A HOG index of the digits' train part (built with one worker: fast and deterministic)."""
    path = tmp_path_factory.mktemp("index") / "hog"
    visret.build_index(
        digits / "train", "hog", path, params={"size": 32, "pixels_per_cell": 4}, workers=1
    ).close()
    return path


@pytest.fixture(scope="session")
def photo_crops(tmp_path_factory) -> Path:
    """Real photographs (scikit-image's cat, coffee, astronaut, rocket) as a labelled folder: 12
    seeded crops of each, 64x64, some mirrored; a small stand-in for a folder of photos."""
    from skimage import data

    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name in ("chelsea", "coffee", "astronaut", "rocket"):
        image = Image.fromarray(getattr(data, name)())
        (root / name).mkdir()
        for i in range(12):
            side = int(min(image.size) * rng.uniform(0.6, 0.95))
            left, top = (int(rng.integers(0, extent - side + 1)) for extent in image.size)
            crop = image.crop((left, top, left + side, top + side)).resize((64, 64), Image.BILINEAR)
            (crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if i % 2 else crop).save(root / name / f"{i:02d}.png")
    return root


def broken_files() -> dict[str, bytes]:
    """One unreadable file of each kind the indexer must skip, by file name."""
    png = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(png, format="PNG")
    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(jpeg, format="JPEG")
    bomb = io.BytesIO()
    Image.new("L", (4000, 4000)).save(bomb, format="PNG")  # 16 Mpx, over the tests' 1 Mpx limit
    return {
        "empty.png": b"",
        "truncated.jpg": jpeg.getvalue()[: len(jpeg.getvalue()) // 2],
        "truncated.png": png.getvalue()[:60],
        "not-an-image.jpg": b"this is text, not pixels\n" * 10,
        "bomb.png": bomb.getvalue(),
    }


@pytest.fixture
def folder_with_broken_files(tmp_path) -> Path:
    """Two labelled classes of good images, with every kind of broken file mixed in."""
    rng = np.random.default_rng(1)
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(3):
            pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / label / f"good{i}.png")
    for name, data in broken_files().items():
        (tmp_path / "a" / name).write_bytes(data)
    return tmp_path


@pytest.fixture
def cli():
    """Invoke the CLI in-process; ``cli(*args)`` returns the click result."""
    from visret.cli._app import add_plugin_commands, app

    add_plugin_commands()
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None):
        return runner.invoke(app, [str(a) for a in args], env=env)

    return invoke


@pytest.fixture
def register_plugin():
    """Register plugin objects for one test and unregister them afterwards."""
    registered = []

    def register(plugin, name: str):
        plugins.pm.register(plugin, name=name)
        registered.append(name)
        plugins.reset_registry()
        return plugin

    yield register
    for name in registered:
        if plugins.pm.has_plugin(name):
            plugins.pm.unregister(name=name)
    plugins.reset_registry()


@pytest.fixture
def project_env():
    """Environment for subprocesses running visret from this checkout's virtual environment."""
    env = dict(os.environ)
    env.pop("VISRET_LOAD_PLUGINS", None)
    return env


@pytest.fixture(scope="session")
def squeezenet_index(photo_crops, tmp_path_factory) -> Path:
    """A ``keras/squeezenet`` index (96 x 96 input) of the photo crops, its network exported for the light runtime."""
    path = tmp_path_factory.mktemp("index") / "squeezenet"
    visret.build_index(photo_crops, "keras/squeezenet", path, params={"size": 96}, workers=1).close()
    return path
