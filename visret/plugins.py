"""Plugin loading and the registries of extractors, classifiers and pipeline kinds.

Plugins, built-in ones included, are found through the ``visret`` entry-point group. A plugin
that fails to import or to register is recorded and reported, never fatal to the others.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable

import pluggy

from visret import hookspecs
from visret.classifier import Classifier
from visret.errors import VisretError
from visret.extractor import FeatureExtractor
from visret.hookspecs import hookimpl
from visret.backends import IndexBackend
from visret.loaders import DatasetLoader
from visret.report_formats import ReportFormat
from visret.pipelines.pipeline import Pipeline

__all__ = ["hookimpl", "pm", "get_extractor", "get_classifier", "extractor_classes", "classifier_classes"]

ENTRY_POINT_GROUP = "visret"
#: Plugins of the core itself (FAISS; folders and lists of images; report formats), registered through the
#: same hooks as the others but always loaded.
BUILTIN_PLUGINS = {"backends": "visret.backends.faiss_backend", "loaders": "visret.loaders.builtin",
                   "report-formats": "visret.report_formats.builtin"}
log = logging.getLogger("visret")

pm = pluggy.PluginManager("visret")
pm.add_hookspecs(hookspecs)


@dataclass
class PluginFailure:
    name: str
    version: str | None
    error: str


@dataclass
class _Registry:
    """What the registering hooks produced: name -> (class, plugin name)."""

    extractors: dict[str, tuple[type, str]] = field(default_factory=dict)
    classifiers: dict[str, tuple[type, str]] = field(default_factory=dict)
    pipelines: dict[str, tuple[type, str]] = field(default_factory=dict)
    loaders: dict[str, tuple[type, str]] = field(default_factory=dict)
    report_formats: dict[str, tuple[type, str]] = field(default_factory=dict)
    backends: dict[str, tuple[type, str]] = field(default_factory=dict)


_load_failures: list[PluginFailure] = []
_register_failures: list[PluginFailure] = []
_versions: dict[str, str | None] = {}
_loaded = False
_registry: _Registry | None = None


def _wanted_plugins() -> set[str] | None:
    value = os.environ.get("VISRET_LOAD_PLUGINS")
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def load_plugins() -> None:
    """Import and register every plugin of the entry-point group, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name, module in BUILTIN_PLUGINS.items():  # what the core cannot do without, whatever VISRET_LOAD_PLUGINS says
        if not pm.has_plugin(name):
            pm.register(importlib.import_module(module), name=name)
    wanted = _wanted_plugins()
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        if wanted is not None and ep.name not in wanted and dist_name not in wanted:
            continue
        version = dist.version if dist is not None else None
        if pm.has_plugin(ep.name):
            continue
        try:
            pm.register(ep.load(), name=ep.name)
            _versions[ep.name] = version
        except Exception as exc:  # a broken plugin must not break visret
            _record_failure(_load_failures, ep.name, version, f"{type(exc).__name__}: {exc}")


def _record_failure(failures: list[PluginFailure], name: str, version: str | None, error: str) -> None:
    failures.append(PluginFailure(name, version, error))
    log.warning("plugin %s failed: %s", name, error)


def reset_registry() -> None:
    """Forget registered names so the next lookup asks the plugins again (after (un)registering)."""
    global _registry
    _registry = None
    _register_failures.clear()


def call_each_plugin(hook_name: str, argument_for: Callable[[str], Any]) -> None:
    """Call a one-argument hook plugin by plugin, so a failing plugin is isolated and attributed.

    ``argument_for(plugin_name)`` gives the argument passed to that plugin's implementation.
    """
    hook = getattr(pm.hook, hook_name)
    for impl in reversed(hook.get_hookimpls()):
        name = impl.plugin_name
        try:
            impl.function(**{hook.spec.argnames[0]: argument_for(name)})
        except VisretError:
            raise
        except Exception as exc:
            error = f"{hook_name}: {type(exc).__name__}: {exc}"
            _record_failure(_register_failures, name, _versions.get(name), error)


#: What a registered class must implement itself, by base class: checked when it registers, so a
#: plugin that forgot one fails at once, named, instead of with a bare NotImplementedError later.
REQUIRED = {FeatureExtractor: ("input_spec", "dim", "extract"), Classifier: ("fit", "predict_proba"), DatasetLoader: ("records",), ReportFormat: ("render",), IndexBackend: ("build", "read")}


def _register_into(kind: str, base: type, table: dict[str, tuple[type, str]]):
    def for_plugin(plugin_name: str):
        def register(cls: type) -> type:
            if not (isinstance(cls, type) and issubclass(cls, base)) or not getattr(cls, "name", ""):
                raise TypeError(f"{cls!r} is not a named {base.__name__} subclass")
            missing = [member for member in REQUIRED.get(base, ()) if getattr(cls, member) is getattr(base, member)]
            if missing:
                raise TypeError(f"{kind} {cls.name!r} ({cls.__qualname__}) does not implement {', '.join(missing)}")
            if cls.name in table and table[cls.name][0] is not cls:
                other = table[cls.name][1]
                raise VisretError(
                    f"{kind} {cls.name!r} is registered by two plugins: {other} and {plugin_name}; "
                    f"uninstall one or restrict VISRET_LOAD_PLUGINS"
                )
            table[cls.name] = (cls, plugin_name)
            return cls

        return register

    return for_plugin


def registry() -> _Registry:
    global _registry
    if _registry is None:
        load_plugins()
        reg = _Registry()
        call_each_plugin("register_extractors", _register_into("extractor", FeatureExtractor, reg.extractors))
        call_each_plugin("register_classifiers", _register_into("classifier", Classifier, reg.classifiers))
        call_each_plugin("register_pipelines", _register_into("pipeline kind", Pipeline, reg.pipelines))
        call_each_plugin("register_dataset_loaders", _register_into("dataset loader", DatasetLoader, reg.loaders))
        call_each_plugin("register_report_formats", _register_into("report format", ReportFormat, reg.report_formats))
        call_each_plugin("register_index_backends", _register_into("index backend", IndexBackend, reg.backends))
        _registry = reg
    return _registry


def plugin_of(obj: Any) -> str | None:
    """The plugin that registered this extractor's or head's class, if one did."""
    reg = registry()
    for table in (reg.extractors, reg.classifiers):
        cls, owner = table.get(getattr(obj, "name", ""), (None, None))
        if cls is type(obj):
            return owner
    return None


def extractor_classes() -> dict[str, type[FeatureExtractor]]:
    return {name: cls for name, (cls, _) in sorted(registry().extractors.items())}


def classifier_classes() -> dict[str, type[Classifier]]:
    return {name: cls for name, (cls, _) in sorted(registry().classifiers.items())}


def _create(kind: str, table: dict[str, tuple[type, str]], name: str, params: dict[str, Any]):
    prefix, colon, value = name.partition(":")
    if name not in table and colon and getattr(table.get(prefix, (None,))[0], "shorthand", None):
        name, params = prefix, {table[prefix][0].shorthand: value, **params}
    if name not in table:
        known = ", ".join(sorted(table)) or "none"
        raise VisretError(f"unknown {kind} {name!r} (available: {known}); see 'visret plugins'")
    cls = table[name][0]
    defaults = cls.param_defaults()
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise VisretError(
            f"{kind} {name!r} has no parameter {', '.join(unknown)} (parameters: {', '.join(defaults) or 'none'})"
        )
    try:
        obj = cls(**params)
        obj.validate()
    except (TypeError, ValueError) as exc:
        raise VisretError(f"{kind} {name!r}: {exc}") from None
    return obj


def get_extractor(name: str, **params: Any) -> FeatureExtractor:
    """Create a registered extractor: ``get_extractor("hog", pixels_per_cell=16)``."""
    return _create("extractor", registry().extractors, name, params)


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


def extractor_from_spec(spec: str | dict[str, Any]) -> FeatureExtractor:
    """An extractor from a name (``"hog"``, ``"model:net.keras"``) or ``{"name": ..., "params": {...}}``,
    the form nested extractors take in the parameters of ``combine`` and ``post``."""
    if isinstance(spec, str):
        return get_extractor(spec)
    if isinstance(spec, dict) and isinstance(spec.get("name"), str) and set(spec) <= {"name", "params"}:
        if not isinstance(spec.get("params") or {}, dict):
            raise VisretError(f"the params of extractor {spec['name']!r} must be an object of NAME: VALUE, got {spec['params']!r}")
        if _nesting(spec) > MAX_SPEC_DEPTH:
            raise VisretError(f"extractor {spec['name']!r} nests more than {MAX_SPEC_DEPTH} levels of extractors and parameters")
        return get_extractor(spec["name"], **(spec.get("params") or {}))
    raise VisretError(f'an extractor must be a name or {{"name": ..., "params": {{...}}}}, got {spec!r}')


def from_config(config: dict[str, Any]) -> FeatureExtractor | Classifier:
    """The inverse of ``get_config()``: an extractor or a classifier head from ``{"name", "params"}``
    (learned state aside: ``set_state`` restores it)."""
    reg = registry()
    name = config.get("name") if isinstance(config, dict) else None
    if not isinstance(name, str) or not set(config) <= {"name", "params"}:
        raise VisretError(f'a configuration is {{"name": ..., "params": {{...}}}}, got {config!r}')
    kinds = [kind for kind, table in (("extractor", reg.extractors), ("classifier", reg.classifiers)) if name.partition(":")[0] in table]
    if len(kinds) > 1:
        raise VisretError(f"{name!r} is both an extractor and a classifier; use get_extractor or get_classifier")
    if kinds == ["classifier"]:
        return get_classifier(name, **(config.get("params") or {}))
    return extractor_from_spec(config)


def resolve_extractor(extractor: str | dict[str, Any] | FeatureExtractor, params: dict[str, Any] | None = None) -> FeatureExtractor:
    """An extractor from an instance, a name (with ``params``) or a ``{"name": ..., "params": ...}`` spec."""
    if isinstance(extractor, (FeatureExtractor, dict)):
        if params:
            raise VisretError("pass params only with an extractor name")
        return extractor if isinstance(extractor, FeatureExtractor) else extractor_from_spec(extractor)
    return get_extractor(extractor, **(params or {}))


def get_classifier(name: str, **params: Any) -> Classifier:
    """Create a registered classifier head: ``get_classifier("knn", k=5)``."""
    return _create("classifier", registry().classifiers, name, params)


def plugin_report() -> list[dict[str, Any]]:
    """One dict per plugin: name, version, hooks, what it registered (per table), status and error."""
    reg = registry()
    tables = {name: getattr(reg, name) for name in _Registry.__dataclass_fields__}

    def row(name: str, version: str | None, hooks: list[str], status: str, error: str | None) -> dict[str, Any]:
        registered = {table: sorted(n for n, (_, owner) in entries.items() if owner == name) for table, entries in tables.items()}
        return {"name": name, "version": version, "hooks": hooks, **registered, "status": status, "error": error}

    rows = [row(name, _versions.get(name), sorted(impl.name for impl in pm.get_hookcallers(plugin) or []), "loaded", None)
            for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]) if plugin is not None]
    for failure in _load_failures + _register_failures:
        existing = next((r for r in rows if r["name"] == failure.name), None)
        if existing is not None:
            existing.update(status="failed", error=failure.error)
        else:
            rows.append(row(failure.name, failure.version, [], "failed", failure.error))
    return sorted(rows, key=lambda r: r["name"])
