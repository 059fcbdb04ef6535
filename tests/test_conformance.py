"""The conformance kit (``visret.plugins.testing``) run over every registered extractor and head, and shown to
catch what it is for: plugin classes that break visret's rules."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

import visret
from visret import FeatureExtractor, InputSpec, hookimpl
from visret.features._lookup import classifier_classes, extractor_classes
from visret.plugins.testing import check_extractor, parametrize_with_checks

#: Keras application families share one implementation; each is built with ImageNet-free weights at a
#: small size here only for the ones below (building and exporting all 40 costs minutes and gigabytes):
#: depthwise convolutions, a Normalization layer inside the network, and the shipped SqueezeNet.
KERAS_CHECKED = {"keras/mobilenet_v2", "keras/efficientnet_b0", "keras/squeezenet", "keras/efficientnet_lite0"}
SMALL = {"size": 32}


def _instance(name: str):
    cls = extractor_classes()[name]
    if name in ("keras/squeezenet", "keras/efficientnet_lite0"):  # ImageNet weights with no download: what users get
        return cls(size=64)
    if name.startswith("keras/"):
        return cls(weights="none", **SMALL)
    if name.startswith("cnn/"):
        return cls(weights="none") if "weights" in cls.param_defaults() else cls()
    if name == "model":
        return None  # needs a .keras file: checked in test_a_saved_model_extractor_conforms
    return cls()


CHECKED = sorted(n for n in extractor_classes() if not n.startswith("keras/") or n in KERAS_CHECKED)


def _head(cls):
    """A head as registered; a network head for 20 epochs of its default 100 (the three classes it must learn
    take a few; each epoch on 60 samples costs Keras a quarter of a second)."""
    return cls(epochs=20) if "epochs" in cls.param_defaults() else cls


@parametrize_with_checks([_instance(n) for n in CHECKED if n != "model"] + [_head(c) for c in sorted(classifier_classes().values(), key=lambda c: c.name)])
def test_every_registered_extractor_and_head_conforms(obj, check):
    check(obj)  # one test id per extractor or head and rule, as scikit-learn's parametrize_with_checks


def test_a_saved_model_extractor_conforms(tmp_path):
    from visret_keras import runtime

    keras = runtime.keras()
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Flatten()(keras.layers.Conv2D(4, 3)(inputs))
    x = keras.layers.Dense(8, activation="relu")(x)
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)).save(tmp_path / "net.keras")
    check_extractor(visret.get_extractor("model", path=str(tmp_path / "net.keras")))


def test_every_rule_has_its_own_test_id():
    ids = parametrize_with_checks([visret.get_extractor("hog"), classifier_classes()["knn"]]).kwargs["ids"]
    assert ids == ["hog-params", "hog-input_spec", "hog-features_have_dim_finite_values", "hog-deterministic_whatever_the_batch",
                   "hog-picklable_for_workers", "hog-state_round_trips", "knn-params", "knn-fit_learns_three_classes",
                   "knn-save_and_load_predict_the_same"]


def test_clone_and_nested_params_work_on_a_composed_extractor():
    combined = visret.get_extractor("combine", parts=["hog", "lbp"], weights=[1, 2])
    copy = clone(combined)
    assert copy is not combined and copy.get_params(deep=False) == combined.get_params(deep=False)
    assert combined.set_params(weights=[3, 1]).weights == [3, 1]
    with pytest.raises(ValueError, match="weights"):
        combined.set_params(weights=[1])
    assert combined.weights == [3, 1]  # a refused change leaves the object as it was
    assert visret.from_config(combined.get_config()).get_config() == combined.get_config()


class _Drifting(FeatureExtractor):
    """Gives other numbers on every call: not deterministic."""

    name = "test/drifting"

    def __init__(self):
        self._calls = 0

    @property
    def input_spec(self):
        return InputSpec("L", (16, 16))

    @property
    def dim(self):
        return 2

    def extract(self, images):
        self._calls += 1
        return np.full((len(images), 2), self._calls, np.float32)


class _WrongShape(_Drifting):
    name = "test/wrong-shape"

    def extract(self, images):
        return np.zeros((len(images), 3), np.float32)


class _Float64(_Drifting):
    name = "test/float64"

    def extract(self, images):
        return np.zeros((len(images), 2))


class _NonFinite(_Drifting):
    name = "test/non-finite"

    def extract(self, images):
        return np.full((len(images), 2), np.nan, np.float32)


class _RewritesParams(_Drifting):
    name = "test/rewrites"

    def __init__(self, size: int = 8):
        self.size = max(size, 16)

    def extract(self, images):
        return np.zeros((len(images), 2), np.float32)


@pytest.mark.parametrize("cls, message", [
    (_Drifting, "not deterministic"),
    (_WrongShape, r"gave an array of shape \(6, 3\) for 6 images; expected \(6, 2\)"),
    (_NonFinite, "NaN or infinite"),
    (_RewritesParams, "changes 'size'"),
])
def test_the_kit_catches_broken_extractors(cls, message):
    with pytest.raises(AssertionError, match=message):
        check_extractor(cls)


def test_the_kit_and_the_index_apply_one_rule_to_float64_features(tmp_path):
    """float64 rows convert to float32 where they enter an index: the kit accepts them too."""
    check_extractor(_Float64)
    image = tmp_path / "a" / "0.png"
    image.parent.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((16, 16), np.uint8)).save(image)
    with visret.build_index(tmp_path, _Float64(), tmp_path / "ix", workers=1) as index:
        assert index.vectors([1]).dtype == np.float32 and len(index) == 1


class _NoDim(FeatureExtractor):
    name = "test/no-dim"

    @property
    def input_spec(self):
        return InputSpec()

    def extract(self, images):
        return np.zeros((len(images), 1), np.float32)


class _IncompletePlugin:
    @hookimpl
    def register_extractors(self, register):
        register(_NoDim)


def test_registration_refuses_a_class_without_dim_naming_the_plugin(register_plugin, caplog):
    register_plugin(_IncompletePlugin(), "incomplete")
    report = {row["name"]: row for row in visret.plugins._registry.plugin_report()}
    assert report["incomplete"]["status"] == "failed"
    assert "extractor 'test/no-dim' (_NoDim) does not implement dim" in report["incomplete"]["error"]
    assert "plugin incomplete failed" in caplog.text
    with pytest.raises(visret.VisretError, match=r"extractor 'test/no-dim' \(_NoDim\) does not implement dim; see 'visret plugins'"):
        visret.get_extractor("test/no-dim")  # why, not "unknown extractor"
