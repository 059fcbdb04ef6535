"""Extractors and classifier heads by name: the two kinds of plugin the core creates from configs."""

from __future__ import annotations

import logging
from typing import Any

from visret.errors import VisretError
from visret.features._classifier import Classifier
from visret.features._extractor import FeatureExtractor
from visret.plugins._registry import DISTRIBUTION_NAME, ExtensionPoint, installed_version

log = logging.getLogger("visret")
EXTRACTORS = ExtensionPoint("extractor", "register_extractors", FeatureExtractor, ("input_spec", "dim", "extract"), table="extractors")
CLASSIFIERS = ExtensionPoint("classifier", "register_classifiers", Classifier, ("fit", "predict_proba"), table="classifiers")


def plugin_of(obj: Any) -> str | None:
    """The plugin that registered this extractor's or head's class, if one did."""
    for kind in (EXTRACTORS, CLASSIFIERS):
        cls, owner = kind.classes().get(getattr(obj, "name", ""), (None, None))
        if cls is type(obj):
            return owner
    return None


def extractor_classes() -> dict[str, type[FeatureExtractor]]:
    return {name: cls for name, (cls, _) in sorted(EXTRACTORS.classes().items())}


def classifier_classes() -> dict[str, type[Classifier]]:
    return {name: cls for name, (cls, _) in sorted(CLASSIFIERS.classes().items())}


def get_extractor(name: str, **params: Any) -> FeatureExtractor:
    """Create a registered extractor: ``get_extractor("hog", pixels_per_cell=16)``."""
    return EXTRACTORS.create(name, params)


def get_classifier(name: str, **params: Any) -> Classifier:
    """Create a registered classifier head: ``get_classifier("knn", k=5)``."""
    return CLASSIFIERS.create(name, params)


#: The keys of a saved configuration: ``plugin`` (who registered the class) is optional.
CONFIG_KEYS = {"name", "params", "plugin", "plugin_version"}
#: How deep an extractor spec may nest (``combine`` of ``post`` of ... ): far past any real use.
MAX_SPEC_DEPTH = 32


def _nesting(value: Any) -> int:
    """Depth of nested dicts and lists, counted without recursion (a hostile spec cannot overflow it)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth <= MAX_SPEC_DEPTH and isinstance(item, (dict, list, tuple)):
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def warn_if_plugin_changed(config: dict[str, Any]) -> None:
    """One logged line when a configuration was saved under another version of its plugin than the
    installed one: its features or predictions may differ from those it was saved with."""
    saved, plugin = config.get("plugin_version"), config.get("plugin")
    if not isinstance(saved, str) or not isinstance(plugin, str) or not DISTRIBUTION_NAME.fullmatch(plugin):
        return
    installed = installed_version(plugin)
    if installed is not None and installed != saved and (config["name"], saved, installed) not in _WARNED:
        _WARNED.add((config["name"], saved, installed))
        log.warning(f"{config['name']!r} was saved with {plugin} {saved[:40]}, and {plugin} {installed} is installed: "
                    "its answers may differ; rebuild it if they look wrong")


_WARNED: set[tuple[str, str, str]] = set()


def extractor_from_spec(spec: str | dict[str, Any]) -> FeatureExtractor:
    """An extractor from a name (``"hog"``, ``"model:net.keras"``) or ``{"name": ..., "params": {...}}``,
    the form nested extractors take in the parameters of ``combine`` and ``post``."""
    if isinstance(spec, str):
        return get_extractor(spec)
    if isinstance(spec, dict) and isinstance(spec.get("name"), str) and set(spec) <= CONFIG_KEYS:
        if (error := EXTRACTORS.missing(spec["name"], spec.get("plugin"))) is not None:
            raise error
        warn_if_plugin_changed(spec)
        if not isinstance(spec.get("params") or {}, dict):
            raise VisretError(f"the params of extractor {spec['name']!r} must be an object of NAME: VALUE, got {spec['params']!r}")
        if _nesting(spec) > MAX_SPEC_DEPTH:
            raise VisretError(f"extractor {spec['name']!r} nests more than {MAX_SPEC_DEPTH} levels of extractors and parameters")
        return get_extractor(spec["name"], **(spec.get("params") or {}))
    raise VisretError(f'an extractor must be a name or {{"name": ..., "params": {{...}}}}, got {spec!r}')


def from_config(config: dict[str, Any]) -> FeatureExtractor | Classifier:
    """The inverse of ``get_config()``: an extractor or a classifier head from ``{"name", "params"}``
    (learned state aside: ``set_state`` restores it)."""
    name = config.get("name") if isinstance(config, dict) else None
    if not isinstance(name, str) or not set(config) <= CONFIG_KEYS:
        raise VisretError(f'a configuration is {{"name": ..., "params": {{...}}}}, got {config!r}')
    kinds = [kind for kind in (EXTRACTORS, CLASSIFIERS) if name.partition(":")[0] in kind.classes()]
    if len(kinds) > 1:
        raise VisretError(f"{name!r} is both an extractor and a classifier; use get_extractor or get_classifier")
    if kinds == [CLASSIFIERS]:
        warn_if_plugin_changed(config)
        return get_classifier(name, **(config.get("params") or {}))
    return extractor_from_spec(config)


def resolve_extractor(extractor: str | dict[str, Any] | FeatureExtractor, params: dict[str, Any] | None = None) -> FeatureExtractor:
    """An extractor from an instance, a name (with ``params``) or a ``{"name": ..., "params": ...}`` spec."""
    if isinstance(extractor, (FeatureExtractor, dict)):
        if params:
            raise VisretError("pass params only with an extractor name")
        return extractor if isinstance(extractor, FeatureExtractor) else extractor_from_spec(extractor)
    return get_extractor(extractor, **(params or {}))
