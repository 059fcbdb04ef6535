"""Dataset loaders: the built-in folder and list loaders, and a third-party loader registered by a
plugin and used end to end by ``build_index``, ``visret index`` and ``add``."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest

import visret
from visret import VisretError, hookimpl
from visret.images._folders import ImageRecord
from visret.images.loaders import DatasetLoader, find_images

HOG = {"size": 32, "pixels_per_cell": 4}


class GlobLoader(DatasetLoader):
    """``glob:PATTERN``: the files a shell pattern matches, labelled by their folder's name."""

    name = "glob"

    def records(self, source):
        return [ImageRecord(Path(p).absolute(), Path(p).parent.name) for p in sorted(glob.glob(source))]


class ManifestLoader(DatasetLoader):
    """Claims ``*.images`` files (one path per line) without a prefix."""

    name = "manifest"

    @classmethod
    def recognises(cls, source):
        return source.endswith(".images")

    def records(self, source):
        return [ImageRecord(Path(line.strip()), None) for line in Path(source).read_text().splitlines() if line.strip()]


class LoaderPlugin:
    @hookimpl
    def register_dataset_loaders(self, register):
        register(GlobLoader)
        register(ManifestLoader)


@pytest.fixture
def loaders(register_plugin):
    register_plugin(LoaderPlugin(), "test-loaders")


def test_the_builtin_loaders_read_folders_and_lists(digits, tmp_path):
    assert find_images(digits / "train") == find_images(f"folder:{digits / 'train'}")
    listed = tmp_path / "l.csv"
    listed.write_text("path,label\n" + "".join(f"{r.path},{r.label}\n" for r in find_images(digits / "test")))
    assert [(str(r.path), r.label) for r in find_images(listed)] == [(str(r.path), r.label) for r in find_images(digits / "test")]
    with pytest.raises(VisretError, match="not a folder, a .csv or .parquet image list.*loaders: folder, list"):
        find_images(tmp_path / "missing")


def test_a_plugin_loader_is_chosen_by_prefix_and_by_file_type(loaders, digits, tmp_path, cli):
    pattern = str(digits / "train" / "[12]" / "*.png")
    index = visret.build_index(f"glob:{pattern}", "hog", tmp_path / "ix", params=HOG, workers=1)
    assert len(index) == 30 and set(index.classes) == {"1", "2"}
    listed = tmp_path / "three.images"
    listed.write_text("\n".join(str(p) for p in sorted((digits / "test" / "7").iterdir())[:3]))
    assert index.add(listed, workers=1).added == 3 and len(index) == 33
    result = cli("index", f"glob:{digits / 'test' / '5' / '*.png'}", "--index", str(tmp_path / "cli"),
                 "-e", "hog", "-p", "size=32", "-p", "pixels_per_cell=4")
    assert result.exit_code == 0 and "indexed 5 images" in result.output, result.output
    report = {row["name"]: row for row in visret.plugins._registry.plugin_report()}
    assert report["test-loaders"]["loaders"] == ["glob", "manifest"]
    assert report["loaders"]["loaders"] == ["folder", "list"]


def test_the_builtin_loaders_stay_when_plugins_are_restricted(project_env, digits, tmp_path):
    import subprocess
    import sys

    run = subprocess.run([str(Path(sys.executable).with_name("visret")), "index", str(digits / "test"), "-e", "pixels",
                          "--index", str(tmp_path / "ix"), "--workers", "1"],
                         env={**project_env, "VISRET_LOAD_PLUGINS": "handcrafted"}, capture_output=True, text=True)
    assert run.returncode == 0 and "indexed 50 images" in run.stdout, run.stderr


def test_every_command_that_reads_images_takes_what_a_loader_reads(loaders, digits, tmp_path, cli):
    """Not only index and add: evaluate, compare, train, tune and duplicates read a loader's source too,
    and info shows the source as it was given."""
    train, test = (f"glob:{digits / part / '[1-4]' / '*.png'}" for part in ("train", "test"))
    hog = ["-e", "hog", "-p", "size=32", "-p", "pixels_per_cell=4"]
    assert cli("index", train, "--index", str(tmp_path / "ix"), *hog).exit_code == 0
    assert json.loads(cli("info", "--index", str(tmp_path / "ix"), "--json").stdout)["build"]["source"] == train
    runs = {
        "evaluate": cli("evaluate", test, "--index", str(tmp_path / "ix"), "-k", "3", "--json"),
        "compare": cli("compare", train, "--extractors", "hog,color-hist", "--json"),
        "train": cli("train", train, "-e", "hog", "--head", "knn", "--test-dir", test, "--out", str(tmp_path / "m.pipeline")),
        "tune": cli("tune", train, "--budget-minutes", "0.1", "--out", str(tmp_path / "r.json")),
        "duplicates": cli("duplicates", test, "--json"),
    }
    assert {name: run.exit_code for name, run in runs.items()} == dict.fromkeys(runs, 0), {n: r.output[-300:] for n, r in runs.items()}
    assert json.loads(runs["evaluate"].stdout)["accuracy"] > 0.8
