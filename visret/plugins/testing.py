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
from visret.features._lookup import CLASSIFIERS, EXTRACTORS, from_config

MODES = ("RGB", "L", "HSV", "LAB")


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


def check_extractor(extractor: type[FeatureExtractor] | FeatureExtractor) -> None:
    """Check an extractor class (built with its defaults) or instance against visret's rules.

    Fixed-length float32 rows of ``dim`` finite numbers, the same for the same images whatever
    the batch, picklable for worker processes, learned state that round-trips, and the
    parameter contract (``get_params``, ``set_params``, ``clone``, ``get_config``/``from_config``).
    """
    extractor = _instance(extractor, FeatureExtractor)
    name = type(extractor).__name__
    _check_params(extractor)
    spec = extractor.input_spec
    assert isinstance(spec, InputSpec) and spec.mode in MODES, f"{name}.input_spec must be an InputSpec with a mode in {MODES}"
    images = sample_images(spec)
    if extractor.requires_fit:
        labels = ["a", "b"] * (len(images) // 2) if extractor.supervised else None
        assert extractor.fit(images * 4, labels * 4 if labels else None) is extractor, f"{name}.fit must return self"
    dim = extractor.dim
    assert isinstance(dim, (int, np.integer)) and dim > 0, f"{name}.dim must be a positive integer, got {dim!r}"
    features = extractor.extract(images)
    assert isinstance(features, np.ndarray) and features.dtype == np.float32, f"{name}.extract must return a float32 array"
    assert features.shape == (len(images), dim), f"{name}.extract gave shape {features.shape}, not {(len(images), dim)}"
    assert np.isfinite(features).all(), f"{name}.extract gave NaN or infinite values"
    np.testing.assert_allclose(extractor.extract(images), features, rtol=1e-5, atol=1e-6, err_msg=f"{name} is not deterministic")
    one_by_one = np.concatenate([extractor.extract([image]) for image in images[:3]])
    np.testing.assert_allclose(one_by_one, features[:3], rtol=1e-4, atol=1e-5, err_msg=f"{name} depends on the batch")
    if extractor.binary:
        assert set(np.unique(features)) <= {0.0, 1.0}, f"{name} is binary but gives values other than 0 and 1"
    if extractor.parallel:
        copy = pickle.loads(pickle.dumps(extractor))
        np.testing.assert_allclose(copy.extract(images[:2]), features[:2], rtol=1e-5, atol=1e-6,
                                   err_msg=f"{name} does not extract the same after pickling (worker processes)")
    state = extractor.get_state()
    assert isinstance(state, dict) and all(isinstance(v, np.ndarray) and v.dtype != object for v in state.values()), \
        f"{name}.get_state must give named arrays (saved without pickle)"
    if extractor.requires_fit:
        restored = type(extractor)(**extractor.get_params(deep=False))
        restored.set_state(state)
        np.testing.assert_allclose(restored.extract(images[:2]), features[:2], rtol=1e-5, atol=1e-6,
                                   err_msg=f"{name}.set_state(get_state()) does not restore what was learned")


def check_classifier(classifier: type[Classifier] | Classifier, tmp_path=None) -> None:
    """Check a classifier head class (with its defaults) or instance: ``fit`` returns self, learned
    state ends in ``_``, probabilities are rows summing to one over ``classes_``, and a save and a
    load give the same predictions (in ``tmp_path``, or a temporary folder)."""
    import tempfile
    from pathlib import Path

    head = _instance(classifier, Classifier)
    name = type(head).__name__
    _check_params(head)
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, (3, 8))
    y = np.repeat(np.array(["cat", "dog", "owl"]), 20)
    X = (centres[np.repeat(np.arange(3), 20)] + rng.normal(0, 1, (60, 8))).astype(np.float32)
    before = set(vars(head))
    assert head.fit(X, y) is head, f"{name}.fit must return self"
    learned = set(vars(head)) - before
    assert learned and all(key.endswith("_") for key in learned), f"{name}.fit must only add attributes ending in _ (added {sorted(learned)})"
    assert list(head.classes_) == ["cat", "dog", "owl"], f"{name}.classes_ must be the sorted labels"
    proba = head.predict_proba(X)
    assert proba.shape == (60, 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-4), f"{name}.predict_proba rows must sum to 1"
    accuracy = float(np.mean(head.predict(X) == y))
    assert accuracy > 0.8, f"{name} fits three well-separated classes with training accuracy {accuracy:.2f}"
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        file = Path(folder) / f"head{type(head).file_suffix}"
        head.save(file)
        again = type(head).load(file)
        np.testing.assert_allclose(again.predict_proba(X), proba, rtol=1e-4, atol=1e-5, err_msg=f"{name} predicts otherwise after save and load")
