"""Parameters of extractors and heads: read from constructors, parsed from the command line, checked.

Extractors and classifiers share the scikit-learn convention that ``__init__`` keyword arguments
are the parameters, stored under the same attribute names.
"""

from __future__ import annotations

import inspect
import json
from typing import Any, Iterable

from visret.plugins._registry import registered_by, registered_version


class Configurable:
    """Parameter introspection shared by ``FeatureExtractor`` and ``Classifier``."""

    name: str = ""

    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        """The constructor's parameters and their defaults, read from its signature."""
        return {
            p.name: p.default
            for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring, for listings."""
        doc = inspect.getdoc(cls) or ""
        return doc.splitlines()[0] if doc else ""

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters, as scikit-learn's ``clone`` and searches expect; with
        ``deep``, those of nested estimators too, as ``name__param``."""
        params = {key: getattr(self, key) for key in self.param_defaults()}
        if deep:
            for key, value in list(params.items()):
                if hasattr(value, "get_params") and not isinstance(value, type):
                    params.update({f"{key}__{k}": v for k, v in value.get_params(deep=True).items()})
        return params

    def set_params(self, **params: Any) -> Configurable:
        """Set parameters (``name__param`` reaches a nested estimator), check them, return ``self``."""
        valid = self.param_defaults()
        nested: dict[str, dict[str, Any]] = {}
        own = {}
        for key, value in params.items():
            head, _, rest = key.partition("__")
            if head not in valid:
                raise ValueError(f"{type(self).__name__} has no parameter {head!r}; it has {', '.join(valid) or 'none'}")
            if rest:
                nested.setdefault(head, {})[rest] = value
            else:
                own[key] = value
        before = dict(vars(self))
        try:
            for key, value in own.items():
                setattr(self, key, value)
            for head, values in nested.items():
                getattr(self, head).set_params(**values)
            self.validate()
        except Exception:
            vars(self).clear()
            vars(self).update(before)  # a refused change leaves the object as it was
            raise
        return self

    def get_config(self) -> dict[str, Any]:
        """Everything needed to re-create this object (learned state aside); JSON-serialisable.

        ``plugin`` names the distribution (or plugin) that registered the class, as Keras'
        ``registered_name`` does, so that opening it where that plugin is missing says what to install;
        ``plugin_version`` its version, so that opening it under another version says so.
        """
        config = {"name": self.name, "params": self.get_params(deep=False)}
        plugin, version = registered_by(type(self)), registered_version(type(self))
        if plugin:
            config["plugin"] = plugin
        if version:
            config["plugin_version"] = version
        return config

    def validate(self) -> None:
        """Raise ``ValueError`` naming a bad parameter; called by the registry on creation."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params(deep=False).items())
        return f"{type(self).__name__}({args})"


def parse_value(text: str) -> Any:
    """``16`` -> 16, ``0.5`` -> 0.5, ``true`` -> True, ``8,8,8`` -> [8, 8, 8], else the string."""
    if "," in text and not text.lstrip().startswith(("[", "{", '"')):
        return [parse_value(part.strip()) for part in text.split(",")]
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_params(pairs: Iterable[str]) -> dict[str, Any]:
    """Parse ``KEY=VALUE`` strings from ``--param`` options."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"parameter {pair!r} is not KEY=VALUE")
        params[key.strip().replace("-", "_")] = parse_value(value.strip())
    return params


#: The largest image side an extractor may ask for (a 4096 x 4096 image is 16.8 megapixels).
MAX_IMAGE_SIDE = 4096


def check_positive_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value!r}")


def check_positive_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")


def check_image_size(value: Any, minimum: int = 1, name: str = "size") -> None:
    """An image side in pixels, from ``minimum`` to ``MAX_IMAGE_SIDE``."""
    check_positive_int(name, value, minimum, MAX_IMAGE_SIDE)


def check_choice(name: str, value: Any, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def as_int_tuple(name: str, value: Any, length: int, minimum: int = 1) -> tuple[int, ...]:
    """Accept an int (repeated) or a sequence of ``length`` ints."""
    values = [value] * length if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(values, (list, tuple)) or len(values) != length:
        raise ValueError(f"{name} must be an integer or {length} integers, got {value!r}")
    for v in values:
        check_positive_int(name, v, minimum)
    return tuple(values)
