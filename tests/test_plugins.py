"""Plugin discovery through entry points, registration, isolation of broken plugins, listings."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

import visret
from visret import VisretError, get_classifier, get_extractor
from visret.plugins._registry import plugin_report
from visret.features._lookup import extractor_classes

VISRET = str(Path(sys.executable).with_name("visret"))


class Brightness(visret.FeatureExtractor):
    """Mean grey level (a test extractor)."""

    name: ClassVar[str] = "test/brightness"

    @property
    def input_spec(self):
        return visret.InputSpec(mode="L", size=(8, 8))

    @property
    def dim(self):
        return 1

    def extract(self, images):
        return np.array([[image.mean() / 255.0] for image in images], np.float32)


class BrightnessPlugin:
    @visret.hookimpl
    def register_extractors(self, register):
        register(Brightness)


class RaisingPlugin:
    @visret.hookimpl
    def register_extractors(self, register):
        raise RuntimeError("boom")


class ImpostorPlugin:
    @visret.hookimpl
    def register_extractors(self, register):
        class FakeHog(Brightness):
            name = "hog"

        register(FakeHog)


def by_name():
    return {row["name"]: row for row in plugin_report()}


def test_builtin_plugins_load_through_entry_points():
    rows = by_name()
    assert rows["handcrafted"]["version"] == visret.__version__
    assert rows["handcrafted"]["extractors"] == sorted(
        ["color-hist", "color-moments", "color-correlogram", "hog", "lbp", "glcm", "gabor", "gist", "shape", "edges", "bovw", "pixels",
         "phash", "dhash", "ahash", "whash"]
    )
    assert rows["compose"]["extractors"] == ["combine", "post"]
    assert "keras/mobilenet_v2" in rows["keras"]["extractors"] and "model" in rows["keras"]["extractors"]
    assert rows["handcrafted"]["hooks"] == ["register_extractors"]
    assert rows["heads"]["classifiers"] == ["knn", "linear-svm", "logistic", "random-forest", "svm"]
    assert rows["heads"]["pipelines"] == ["features"] and rows["keras"]["pipelines"] == ["cnn"]
    assert rows["keras"]["classifiers"] == ["dense"]
    assert get_classifier("knn", k=3).k == 3


def test_third_party_plugin_is_discovered_from_its_installed_entry_point():
    rows = by_name()
    assert rows["example"]["status"] == "loaded"
    assert rows["example"]["extractors"] == ["example/mean-color"]
    assert rows["example"]["hooks"] == ["register_commands", "register_extractors"]
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    assert get_extractor("example/mean-color").extract([red]).tolist() == [[1.0, 0.0, 0.0]]
    # saved configurations name who registered the class (Keras' registered_name): what to install
    assert get_extractor("example/mean-color").get_config()["plugin"] == "visret-plugin-example"
    assert get_extractor("hog").get_config()["plugin"] == "visret"


def test_third_party_command_runs(cli):
    result = cli("hello", "--name", "tester")
    assert result.exit_code == 0
    assert result.stdout == "hello tester from visret-plugin-example\n"


def test_registered_plugin_works_end_to_end_and_goes_away(register_plugin, digits, tmp_path):
    register_plugin(BrightnessPlugin(), "brightness")
    assert "test/brightness" in extractor_classes()
    assert by_name()["brightness"]["extractors"] == ["test/brightness"]
    index = visret.build_index(digits / "train", "test/brightness", tmp_path / "ix", workers=1)
    with index:
        assert len(index) == 150 and index.extractor.dim == 1
    visret.plugins._registry.pm.unregister(name="brightness")
    visret.plugins._registry.reset_registry()
    assert "test/brightness" not in extractor_classes()
    with visret.open_index(tmp_path / "ix") as index, pytest.raises(
            VisretError, match="cannot be created: extractor 'test/brightness' comes from the plugin 'brightness', "
                               "which is not installed or not loaded: pip install brightness"):
        index.extractor  # noqa: B018 - what embedding a query needs
    with pytest.raises(VisretError, match="pip install brightness"):
        visret.from_config({"name": "test/brightness", "params": {}, "plugin": "brightness"})
    # a file names the plugin: what is not a package name never reaches the pip command shown
    forged = "visret-evil --index-url http://example.invalid/simple"
    with pytest.raises(VisretError, match="comes from a plugin that is not installed") as refused:
        visret.from_config({"name": "test/brightness", "params": {}, "plugin": forged})
    assert "pip install" not in str(refused.value) and "index-url" not in str(refused.value)


def test_a_plugins_version_is_recorded_and_another_one_is_said_when_opening(digits, tmp_path, caplog):
    from visret.index._store.layout import MANIFEST, checksum

    config = get_extractor("example/mean-color").get_config()
    assert config["plugin"] == "visret-plugin-example" and config["plugin_version"] == "0.1.0"
    assert "plugin_version" not in get_extractor("hog").get_config()  # visret's own: its version is recorded apart
    visret.build_index(digits / "train" / "1", "example/mean-color", tmp_path / "ix", workers=1).close()
    manifest = json.loads((tmp_path / "ix" / MANIFEST).read_text())
    assert manifest["extractor"]["plugin_version"] == "0.1.0"
    with caplog.at_level("WARNING", logger="visret"):
        visret.open_index(tmp_path / "ix").close()
    assert not caplog.records
    manifest["extractor"]["plugin_version"] = "0.0.9"
    manifest["checksum"] = checksum(manifest)
    (tmp_path / "ix" / MANIFEST).write_text(json.dumps(manifest))
    with caplog.at_level("WARNING", logger="visret"):
        visret.open_index(tmp_path / "ix").close()
    assert [r.getMessage() for r in caplog.records] == [
        "'example/mean-color' was saved with visret-plugin-example 0.0.9, and visret-plugin-example 0.1.0 is installed: "
        "its answers may differ; rebuild it if they look wrong"]


def test_an_index_whose_plugin_is_gone_still_serves_what_its_stored_vectors_answer(register_plugin, digits, tmp_path, cli):
    register_plugin(BrightnessPlugin(), "brightness")
    visret.build_index(digits / "train", "test/brightness", tmp_path / "ix", workers=1).close()
    visret.plugins._registry.pm.unregister(name="brightness")
    visret.plugins._registry.reset_registry()
    info = cli("info", "--index", str(tmp_path / "ix"))
    assert info.exit_code == 0 and "test/brightness" in info.output
    loo = cli("evaluate", "--index", str(tmp_path / "ix"), "-k", "3", "--json")
    assert loo.exit_code == 0 and json.loads(loo.stdout)["protocol"] == "loo"
    exported = cli("export", str(tmp_path / "emb"), "--format", "autofaiss", "--index", str(tmp_path / "ix"))
    assert exported.exit_code == 0 and any((tmp_path / "emb").rglob("*.npy"))
    duplicates = cli("duplicates", "--index", str(tmp_path / "ix"), "--json")
    assert duplicates.exit_code == 0 and json.loads(duplicates.stdout)["images"] == 150
    query = cli("query", str(sorted((digits / "test" / "3").iterdir())[0]), "--index", str(tmp_path / "ix"))
    assert query.exit_code == 1 and len(query.output.strip().splitlines()) == 1
    assert "comes from the plugin 'brightness', which is not installed or not loaded" in query.output


def test_a_plugin_that_raises_is_reported_and_the_rest_still_work(register_plugin):
    register_plugin(RaisingPlugin(), "raiser")
    rows = by_name()
    assert rows["raiser"]["status"] == "failed"
    assert "RuntimeError: boom" in rows["raiser"]["error"]
    assert rows["handcrafted"]["status"] == "loaded"
    assert get_extractor("hog").dim == 1764


def test_two_plugins_registering_one_name_refuse_that_name_only_and_say_so(register_plugin, cli):
    register_plugin(ImpostorPlugin(), "impostor")
    with pytest.raises(VisretError, match="'hog' is registered by two plugins, (handcrafted and impostor|impostor and handcrafted), "
                                          "so neither is used"):
        get_extractor("hog")
    assert get_extractor("lbp").dim > 0  # every other name of both plugins still works
    rows = by_name()
    assert all("'hog' is registered by two plugins" in rows[name]["error"] for name in ("handcrafted", "impostor"))
    listed = cli("plugins")
    assert listed.exit_code == 0 and "registered by two plugins" in " ".join(listed.output.split())


def test_plugins_and_extractors_list_as_json(cli):
    plugins = json.loads(cli("plugins", "--json").stdout)
    assert {"name", "version", "hooks", "extractors", "classifiers", "pipelines", "status", "error"} <= set(plugins[0])
    extractors = {row["name"]: row for row in json.loads(cli("extractors", "--json").stdout)}
    assert extractors["hog"]["params"]["pixels_per_cell"] == 16
    assert extractors["lbp"]["params"] == {"points": 8, "radius": 1.0, "method": "uniform", "grid": 1, "size": 128, "norm": "hellinger"}
    assert extractors["color-hist"]["description"].startswith("Colour histogram in RGB, HSV or Lab")


def fake_distribution(root: Path, module_source: str) -> None:
    """An installed-looking distribution (dist-info + entry point) whose module is ``module_source``."""
    info = root / "broken_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[visret]\nbroken = broken_plugin\n")
    (root / "broken_plugin.py").write_text(textwrap.dedent(module_source))


def run_visret(*args, env, extra_path=None):
    if extra_path is not None:
        env = {**env, "PYTHONPATH": str(extra_path)}
    return subprocess.run([VISRET, *args], capture_output=True, text=True, env=env, timeout=120)


def test_a_plugin_that_fails_to_import_never_breaks_the_cli(tmp_path, project_env):
    fake_distribution(tmp_path, "import a_module_that_does_not_exist\n")
    listing = run_visret("plugins", "--json", env=project_env, extra_path=tmp_path)
    assert listing.returncode == 0, listing.stderr
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    assert rows["broken"]["status"] == "failed"
    assert rows["broken"]["version"] == "1.0"
    assert "ModuleNotFoundError" in rows["broken"]["error"]
    assert rows["handcrafted"]["status"] == "loaded"
    warnings = [line for line in listing.stderr.splitlines() if line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: plugin broken failed")
    assert run_visret("extractors", env=project_env, extra_path=tmp_path).returncode == 0


def test_visret_load_plugins_restricts_what_loads(project_env):
    core = sorted(visret.plugins._registry.BUILTIN_PLUGINS)  # the core's own plugins load whatever the setting
    listing = run_visret("plugins", "--json", env={**project_env, "VISRET_LOAD_PLUGINS": "handcrafted"})
    assert [row["name"] for row in json.loads(listing.stdout)] == sorted(["handcrafted", *core])
    by_dist = run_visret("plugins", "--json", env={**project_env, "VISRET_LOAD_PLUGINS": "visret-plugin-example"})
    assert [row["name"] for row in json.loads(by_dist.stdout)] == sorted(["example", *core])


class Threshold(visret.Pipeline):
    """Dark or light, by the mean grey level against a threshold learnt on the training part."""

    name: ClassVar[str] = "test/threshold"

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.classes_ = np.array(["dark", "light"])

    @property
    def input_spec(self):
        return visret.InputSpec(mode="L", size=(8, 8))

    def predict_arrays(self, images):
        light = 1 / (1 + np.exp(-(np.array([image.mean() for image in images]) - self.threshold) / 10))
        return np.stack([1 - light, light], axis=1)

    def save(self, path):
        Path(path).write_text(json.dumps({"threshold": self.threshold}))
        return Path(path)

    @classmethod
    def recognises(cls, path):
        return Path(path).suffix == ".threshold"

    @classmethod
    def load(cls, path):
        return cls(json.loads(Path(path).read_text())["threshold"])

    @classmethod
    def trains(cls, model):
        return model == "test/threshold"

    @classmethod
    def train(cls, split, settings, out, progress=None):
        means = {label: [] for label in split.classes}
        for record in split.train:
            means[record.label].append(np.asarray(Image.open(record.path).convert("L")).mean())
        return cls(float(np.mean([np.mean(v) for v in means.values()]))), {"train_seconds": 0.0, "params": {"seed": settings["seed"]}}


class ThresholdPlugin:
    @visret.hookimpl
    def register_pipelines(self, register):
        register(Threshold)


def test_a_plugins_pipeline_kind_trains_saves_loads_and_classifies(register_plugin, cli, tmp_path):
    rng = np.random.default_rng(0)
    for label, level in (("dark", 60), ("light", 190)):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(np.clip(rng.normal(level, 20, (16, 16)), 0, 255).astype(np.uint8)).save(tmp_path / "data" / label / f"{i}.png")
    register_plugin(ThresholdPlugin(), "threshold")
    assert by_name()["threshold"]["pipelines"] == ["test/threshold"]
    model = tmp_path / "m.threshold"
    trained = cli("train", tmp_path / "data", "--model", "test/threshold", "--out", model, "--json")
    assert trained.exit_code == 0, trained.stderr
    report = json.loads(trained.stdout)
    assert report["test_accuracy"] == 1.0 and report["pipeline"] == "test/threshold" and 60 < json.loads(model.read_text())["threshold"] < 190
    classified = cli("classify", tmp_path / "data", "--model", model, "--json")
    assert classified.exit_code == 0 and [r["label"] for r in json.loads(classified.stdout)] == ["dark"] * 10 + ["light"] * 10
    visret.plugins._registry.pm.unregister(name="threshold")
    visret.plugins._registry.reset_registry()
    with pytest.raises(VisretError, match="is not a saved pipeline"):
        visret.load_pipeline(model)


class Majority(visret.Classifier):
    """Predicts the most frequent training class: the smallest head a plugin can register."""

    name = "test/majority"

    def fit(self, features, labels):
        values, counts = np.unique(np.asarray(labels), return_counts=True)
        self.classes_ = values
        self.prior_ = (counts / counts.sum()).astype(np.float32)
        return self

    def predict_proba(self, features):
        return np.tile(self.prior_, (len(features), 1))


class HeadPlugin:
    @visret.hookimpl
    def register_classifiers(self, register):
        register(Majority)


class CommandPlugin:
    @visret.hookimpl
    def register_commands(self, app):
        @app.command()
        def greet_from_test():
            """Say hello."""
            print("hello from a plugin")


def test_a_plugin_head_is_created_by_name_and_learns(register_plugin):
    register_plugin(HeadPlugin(), "majority")
    head = visret.get_classifier("test/majority").fit(np.zeros((5, 2)), ["a", "b", "b", "b", "a"])
    assert list(head.classes_) == ["a", "b"] and np.allclose(head.predict_proba(np.zeros((2, 2))), [[0.4, 0.6]] * 2)
    assert by_name()["majority"]["classifiers"] == ["test/majority"]


def test_a_plugin_command_joins_visrets_own_cli(project_env):
    """Through ``visret``'s own entry point, in a process of its own, beside the built-in commands."""
    code = ("import sys\nsys.path.insert(0, {tests!r})\nfrom test_plugins import CommandPlugin\nfrom visret import plugins\n"
            "plugins.pm.register(CommandPlugin(), name='greeter')\nfrom visret.cli._app import main\n"
            "sys.argv = ['visret', 'greet-from-test']\nmain()").format(tests=str(Path(__file__).parent))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=project_env, timeout=120)
    assert done.returncode == 0 and done.stdout == "hello from a plugin\n", done.stderr


def test_every_hook_is_documented_and_implemented_by_a_test_plugin():
    """datasette's check, over the hooks pluggy knows (a new hook cannot be forgotten here)."""
    root = Path(__file__).resolve().parents[1]
    hooks = sorted(name for name in dir(visret.plugins.pm.hook) if not name.startswith("_"))
    assert len(hooks) >= 7
    for guide in ("README.md", "docs/plugins.md"):
        text = (root / guide).read_text()
        assert [hook for hook in hooks if f"`{hook}(" not in text] == [], guide
    tests = "".join(path.read_text() for path in (root / "tests").glob("*.py"))
    assert [hook for hook in hooks if f"def {hook}(" not in tests] == []
