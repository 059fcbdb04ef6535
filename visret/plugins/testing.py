"""The conformance kit for plugin authors: what every extractor and classifier head must do.

``check_extractor(ExtractorClass)`` (or an instance with chosen parameters) and
``check_classifier(HeadClass)`` raise ``AssertionError`` naming the first rule broken, in the
spirit of scikit-learn's ``check_estimator``. visret's own suite runs them over every registered
extractor and head; a plugin's tests call them on its classes (the plugin template does).
"""

from __future__ import annotations

import json
import pickle
from typing import Any

import numpy as np

from visret.features._classifier import Classifier
from visret.features._extractor import FeatureExtractor, InputSpec
from visret.errors import VisretError
from visret.features._lookup import CLASSIFIERS, EXTRACTORS, from_config
from visret.features._output import checked_features, finite_rows

MODES = ("RGB", "L", "HSV", "LAB")
#: Extractors the kit has fitted on its sample images, by id.
_FITTED: dict[int, FeatureExtractor] = {}


def _instance(obj: Any, base: type) -> Any:
    if isinstance(obj, type):
        assert issubclass(obj, base), f"{obj.__name__} is not a {base.__name__} subclass"
        obj = obj()
    assert isinstance(obj, base), f"{obj!r} is not a {base.__name__}"
    assert isinstance(type(obj).name, str) and type(obj).name, f"{type(obj).__name__} has no name"
    return obj


def _check_params(obj: Any) -> None:
    """scikit-learn's contract: the constructor stores its parameters, ``clone`` and the config round-trip."""
    from sklearn.base import clone

    cls = type(obj)
    params = obj.get_params(deep=False)
    assert list(params) == list(cls.param_defaults()), f"{cls.__name__}.get_params() does not list the constructor's parameters"
    for key in params:
        assert hasattr(obj, key), f"{cls.__name__}.__init__ does not store {key!r} as an attribute of that name"
    fresh = cls()
    for key, default in cls.param_defaults().items():
        assert getattr(fresh, key) is default or getattr(fresh, key) == default, \
            f"{cls.__name__}.__init__ changes {key!r} (it must store parameters as given)"
    copy = clone(obj)
    assert copy.get_params(deep=False) == params, f"sklearn.base.clone does not reproduce {cls.__name__}'s parameters"
    assert copy.set_params(**params) is copy, f"{cls.__name__}.set_params does not return self"
    try:
        copy.set_params(no_such_parameter=1)
    except ValueError:
        pass
    else:
        raise AssertionError(f"{cls.__name__}.set_params accepts a parameter it does not have")
    config = obj.get_config()
    try:
        config = json.loads(json.dumps(config))  # as an index or a pipeline stores it
    except (TypeError, ValueError):
        raise AssertionError(f"{cls.__name__}.get_config() is not JSON-serialisable") from None
    assert config["name"] == cls.name, f"{cls.__name__}.get_config() names {config['name']!r}, not {cls.name!r}"
    assert obj.validate() is None, f"{cls.__name__}.validate() must return None for valid parameters"
    registered = {**EXTRACTORS.classes(), **CLASSIFIERS.classes()}
    if cls.name in registered and registered[cls.name][0] is cls:
        again = from_config(config)
        same = json.dumps(again.get_config(), sort_keys=True) == json.dumps(config, sort_keys=True)
        assert type(again) is cls and same, f"visret.from_config(get_config()) does not give {cls.__name__} back"


def sample_images(spec: InputSpec, n: int = 6, seed: int = 0) -> list[np.ndarray]:
    """Seeded images shaped as ``spec`` asks: smooth blobs on noise, so features are not degenerate."""
    rng = np.random.default_rng(seed)
    height, width = spec.size or (48, 40)
    yy, xx = np.mgrid[0:height, 0:width]
    images = []
    for _ in range(n):
        cy, cx, r = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width, rng.uniform(0.15, 0.35) * min(height, width)
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2 < r**2)
        channels = 1 if spec.mode == "L" else 3
        base = rng.integers(0, 60, (height, width, channels)) + blob[..., None] * rng.integers(80, 195, channels)
        image = np.clip(base, 0, 255).astype(np.uint8)
        images.append(image[..., 0] if channels == 1 else image)
    return images


def _ready(extractor: FeatureExtractor) -> tuple[list[np.ndarray], np.ndarray]:
    """Sample images for the extractor (which is fitted on them first if it learns) and their features."""
    images = sample_images(extractor.input_spec)
    if extractor.requires_fit and id(extractor) not in _FITTED:
        labels = ["a", "b"] * (len(images) // 2) if extractor.supervised else None
        assert extractor.fit(images * 4, labels * 4 if labels else None) is extractor, f"{type(extractor).__name__}.fit must return self"
        _FITTED[id(extractor)] = extractor  # kept alive, so its id is not reused: each check fits it once
    return images, extractor.extract(images)


def check_input_spec(extractor: FeatureExtractor) -> None:
    spec, name = extractor.input_spec, type(extractor).__name__
    assert isinstance(spec, InputSpec) and spec.mode in MODES, f"{name}.input_spec must be an InputSpec with a mode in {MODES}"


def check_features_have_dim_finite_values(extractor: FeatureExtractor) -> None:
    """The rule visret applies where features enter a store (``visret.features.checked_features``)."""
    images, features = _ready(extractor)
    name, dim = type(extractor).__name__, extractor.dim
    assert isinstance(dim, (int, np.integer)) and dim > 0, f"{name}.dim must be a positive integer, got {dim!r}"
    try:
        features = checked_features(extractor, features, len(images))
    except VisretError as exc:
        raise AssertionError(str(exc)) from None
    assert finite_rows(features).all(), f"{name}.extract gave NaN or infinite values"
    if extractor.binary:
        assert set(np.unique(features)) <= {0.0, 1.0}, f"{name} is binary but gives values other than 0 and 1"


def check_deterministic_whatever_the_batch(extractor: FeatureExtractor) -> None:
    images, features = _ready(extractor)
    name = type(extractor).__name__
    np.testing.assert_allclose(extractor.extract(images), features, rtol=1e-5, atol=1e-6, err_msg=f"{name} is not deterministic")
    one_by_one = np.concatenate([extractor.extract([image]) for image in images[:3]])
    np.testing.assert_allclose(one_by_one, features[:3], rtol=1e-4, atol=1e-5, err_msg=f"{name} depends on the batch")


def check_picklable_for_workers(extractor: FeatureExtractor) -> None:
    if not extractor.parallel:
        return
    images, features = _ready(extractor)
    copy = pickle.loads(pickle.dumps(extractor))
    np.testing.assert_allclose(copy.extract(images[:2]), features[:2], rtol=1e-5, atol=1e-6,
                               err_msg=f"{type(extractor).__name__} does not extract the same after pickling (worker processes)")


def check_state_round_trips(extractor: FeatureExtractor) -> None:
    images, features = _ready(extractor)
    name, state = type(extractor).__name__, extractor.get_state()
    assert isinstance(state, dict) and all(isinstance(v, np.ndarray) and v.dtype != object for v in state.values()), \
        f"{name}.get_state must give named arrays (saved without pickle)"
    if state:  # what was learned, or a network exported for the light runtime, as an index stores it
        restored = type(extractor)(**extractor.get_params(deep=False))
        restored.set_state(state)
        np.testing.assert_allclose(restored.extract(images[:2]), features[:2], rtol=1e-4, atol=1e-5,
                                   err_msg=f"{name}.set_state(get_state()) does not give the same features back")


#: Every rule an extractor must follow, in the order ``check_extractor`` runs them.
EXTRACTOR_CHECKS = (_check_params, check_input_spec, check_features_have_dim_finite_values,
                    check_deterministic_whatever_the_batch, check_picklable_for_workers, check_state_round_trips)


def check_extractor(extractor: type[FeatureExtractor] | FeatureExtractor) -> None:
    """Check an extractor class (built with its defaults) or instance against visret's rules.

    Rows of ``dim`` finite numbers that convert to float32 (the rule an index applies), the same for the same images whatever
    the batch, picklable for worker processes, learned state that round-trips, and the
    parameter contract (``get_params``, ``set_params``, ``clone``, ``get_config``/``from_config``).
    """
    extractor = _instance(extractor, FeatureExtractor)
    for check in EXTRACTOR_CHECKS:
        check(extractor)


def _three_classes() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, (3, 8))
    y = np.repeat(np.array(["cat", "dog", "owl"]), 20)
    return (centres[np.repeat(np.arange(3), 20)] + rng.normal(0, 1, (60, 8))).astype(np.float32), y


#: id(head) -> (head, its clone fitted on the three classes, what fit returned, the clone's attributes before
#: fitting): each check of a head object fits it once (a network head takes seconds).
_FITTED_HEADS: dict[int, tuple] = {}


def _fitted_head(head: Classifier) -> tuple[Classifier, Any, set[str]]:
    from sklearn.base import clone

    if id(head) not in _FITTED_HEADS:
        fitted = clone(head)
        before = set(vars(fitted))
        _FITTED_HEADS[id(head)] = (head, fitted, fitted.fit(*_three_classes()), before)
    return _FITTED_HEADS[id(head)][1:]


def check_fit_learns_three_classes(head: Classifier) -> None:
    """``fit`` returns self and adds only attributes ending in ``_``; probabilities are rows summing
    to one over the sorted ``classes_``; three well-separated classes are learned."""
    name = type(head).__name__
    X, y = _three_classes()
    head, returned, before = _fitted_head(head)
    assert returned is head, f"{name}.fit must return self"
    learned = set(vars(head)) - before
    assert learned and all(key.endswith("_") for key in learned), f"{name}.fit must only add attributes ending in _ (added {sorted(learned)})"
    assert list(head.classes_) == ["cat", "dog", "owl"], f"{name}.classes_ must be the sorted labels"
    proba = head.predict_proba(X)
    assert proba.shape == (60, 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-4), f"{name}.predict_proba rows must sum to 1"
    accuracy = float(np.mean(head.predict(X) == y))
    assert accuracy > 0.8, f"{name} fits three well-separated classes with training accuracy {accuracy:.2f}"


def check_save_and_load_predict_the_same(head: Classifier, tmp_path=None) -> None:
    import tempfile
    from pathlib import Path

    name = type(head).__name__
    X, _ = _three_classes()
    head = _fitted_head(head)[0]
    proba = head.predict_proba(X)
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        file = Path(folder) / f"head{type(head).file_suffix}"
        head.save(file)
        again = type(head).load(file)
        np.testing.assert_allclose(again.predict_proba(X), proba, rtol=1e-4, atol=1e-5, err_msg=f"{name} predicts otherwise after save and load")


#: Every rule a classifier head must follow, in the order ``check_classifier`` runs them.
CLASSIFIER_CHECKS = (_check_params, check_fit_learns_three_classes, check_save_and_load_predict_the_same)


def check_classifier(classifier: type[Classifier] | Classifier, tmp_path=None) -> None:
    """Check a classifier head class (with its defaults) or instance: ``fit`` returns self, learned
    state ends in ``_``, probabilities are rows summing to one over ``classes_``, and a save and a
    load give the same predictions (in ``tmp_path``, or a temporary folder)."""
    head = _instance(classifier, Classifier)
    _check_params(head)
    check_fit_learns_three_classes(head)
    check_save_and_load_predict_the_same(head, tmp_path)


def _check_name(check) -> str:
    return check.__name__.lstrip("_").removeprefix("check_")


def parametrize_with_checks(objects: list[Any]):
    """A ``pytest.mark.parametrize`` over every (object, check) pair, one test id each, as
    scikit-learn's ``parametrize_with_checks``: the test receives ``obj`` and ``check`` and calls
    ``check(obj)``. Objects are extractor or head classes or instances.

    ``@parametrize_with_checks([MeanColor, MyHead]) def test_conforms(obj, check): check(obj)``
    """
    import pytest

    cases, ids = [], []
    for obj in objects:
        base = Classifier if issubclass(obj if isinstance(obj, type) else type(obj), Classifier) else FeatureExtractor
        instance = _instance(obj, base)
        checks = CLASSIFIER_CHECKS if base is Classifier else EXTRACTOR_CHECKS
        for check in checks:
            cases.append((instance, check))
            ids.append(f"{type(instance).name}-{_check_name(check)}")
    return pytest.mark.parametrize("obj, check", cases, ids=ids)
