"""Plugin loading, and one registry for every kind of thing plugins register.

Plugins, built-in ones included, are found through the ``visret`` entry-point group; the core's own
plugins (``visret.default_plugins``) are loaded by name through the same hooks. A plugin that fails to
import or to register is recorded and reported, never fatal to the others. An extension point is a
``ExtensionPoint``, declared next to its base class: the registry knows none of them, so it imports nothing
that imports it back.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable, Sequence

import pluggy

from visret.errors import VisretError
from visret.plugins import hookspecs

ENTRY_POINT_GROUP = "visret"
#: Plugins of the core itself (FAISS; folders and lists of images; report formats), registered through the
#: same hooks as the others but always loaded.
BUILTIN_PLUGINS = {"backends": "visret.default_plugins.faiss_backend", "loaders": "visret.default_plugins.loaders",
                   "report-formats": "visret.default_plugins.report_formats"}
log = logging.getLogger("visret")

pm = pluggy.PluginManager("visret")
pm.add_hookspecs(hookspecs)


@dataclass
class PluginFailure:
    name: str
    version: str | None
    error: str


_load_failures: list[PluginFailure] = []
_register_failures: list[PluginFailure] = []
_versions: dict[str, str | None] = {}
#: Plugin name -> the distribution that installed it (what to ``pip install`` when it is missing).
_distributions: dict[str, str] = {}
#: Registered class -> the distribution (or plugin) that registered it, and that distribution's version.
_owners: dict[type, str] = {}
_owner_versions: dict[type, str | None] = {}
_loaded = False
#: What each registering hook produced, by hook name: name -> (class, plugin name); filled on first use.
_tables: dict[str, dict[str, tuple[type, str]]] = {}
#: Names each registering hook refused (a broken class, a name two plugins register), by hook: name -> why.
_refusals: dict[str, dict[str, str]] = {}
#: Every extension point declared so far (declaring one imports its module: ``visret.cli`` imports them all).
_POINTS: list[ExtensionPoint] = []


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
            if dist_name:
                _distributions[ep.name] = dist_name
        except Exception as exc:  # a broken plugin must not break visret
            _record_failure(_load_failures, ep.name, version, f"{type(exc).__name__}: {exc}")


def _record_failure(failures: list[PluginFailure], name: str, version: str | None, error: str) -> None:
    failures.append(PluginFailure(name, version, error))
    log.warning("plugin %s failed: %s", name, error)


def reset_registry() -> None:
    """Forget registered names so the next lookup asks the plugins again (after (un)registering)."""
    _tables.clear()
    _refusals.clear()
    _register_failures.clear()
    _owners.clear()
    _owner_versions.clear()


#: A distribution name as PEP 508 allows it: what a saved file's ``plugin`` field must be to be shown in a hint.
DISTRIBUTION_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,98}[A-Za-z0-9])?")


def registered_by(cls: type) -> str | None:
    """The distribution (or plugin, for one registered in code) that registered ``cls``: what a saved
    configuration names, as Keras' ``registered_name``, so a missing plugin says what to install."""
    for point in _POINTS:
        if issubclass(cls, point.base):
            point.classes()
    return _owners.get(cls)


def registered_version(cls: type) -> str | None:
    """The version of the third-party distribution that registered ``cls`` (``None`` for visret's own
    plugins and plugins registered in code): a saved configuration records it, as scikit-learn records
    its version with an estimator, so that a changed plugin is said, not silent."""
    registered_by(cls)
    return _owner_versions.get(cls)


def installed_version(plugin: str) -> str | None:
    """The installed version of the distribution a saved configuration names, if installed."""
    try:
        return metadata.version(plugin)
    except (metadata.PackageNotFoundError, ValueError):
        return None


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


@dataclass(frozen=True)
class ExtensionPoint:
    """One extension point: the hook that registers it, the base class each registered class must
    subclass (with a ``name``), and the members it must implement itself, checked when it registers
    so that a plugin that forgot one fails at once, named, instead of with a bare NotImplementedError
    later. ``table`` names it in ``visret plugins``."""

    label: str
    hook: str
    base: type
    required: tuple[str, ...] = ()
    table: str = ""

    def __post_init__(self) -> None:
        _POINTS.append(self)

    def classes(self) -> dict[str, tuple[type, str]]:
        """Registered name -> (class, plugin name), asking the plugins on first use."""
        if self.hook not in _tables:
            load_plugins()
            table: dict[str, tuple[type, str]] = {}
            refused: dict[str, str] = {}
            call_each_plugin(self.hook, self._register_into(table, refused))
            for name in refused:
                table.pop(name, None)
            _tables[self.hook], _refusals[self.hook] = table, refused
        return _tables[self.hook]

    def _register_into(self, table: dict[str, tuple[type, str]], refused: dict[str, str]):
        """A ``register`` callback per plugin. A class that breaks the contract, or a name two plugins
        register, is refused alone (the reason kept for whoever asks for it by name and shown by
        ``visret plugins``); the plugin's other classes, and every other plugin, still work."""
        def for_plugin(plugin_name: str):
            def refuse(name: str, reason: str) -> None:
                refused[name] = reason
                _record_failure(_register_failures, plugin_name, _versions.get(plugin_name), f"{self.hook}: {reason}")

            def register(cls: type) -> type:
                if not (isinstance(cls, type) and issubclass(cls, self.base)) or not getattr(cls, "name", ""):
                    raise TypeError(f"{cls!r} is not a named {self.base.__name__} subclass")
                missing = [member for member in self.required if getattr(cls, member) is getattr(self.base, member)]
                if missing:
                    refuse(cls.name, f"{self.label} {cls.name!r} ({cls.__qualname__}) does not implement {', '.join(missing)}")
                elif cls.name in table and table[cls.name][0] is not cls:
                    first = table[cls.name][1]
                    reason = (f"{self.label} {cls.name!r} is registered by two plugins, {first} and {plugin_name}, so "
                              "neither is used; uninstall one or restrict VISRET_LOAD_PLUGINS")
                    refuse(cls.name, reason)
                    _record_failure(_register_failures, first, _versions.get(first), f"{self.hook}: {reason}")
                else:
                    table[cls.name] = (cls, plugin_name)
                    _owners[cls] = _distributions.get(plugin_name, plugin_name)
                    if _distributions.get(plugin_name) != "visret":  # visret's own: the visret version says it
                        _owner_versions[cls] = _versions.get(plugin_name)
                return cls

            return register

        return for_plugin

    def named(self, name: str) -> type:
        """The class registered under ``name``, or a one-line error: why it was refused, or the others."""
        table = self.classes()
        if name in _refusals.get(self.hook, {}):
            raise VisretError(f"{_refusals[self.hook][name]}; see 'visret plugins'")
        if name not in table:
            raise VisretError(f"unknown {self.label} {name!r} (available: {', '.join(sorted(table)) or 'none'}); see 'visret plugins'")
        return table[name][0]

    def missing(self, name: str, plugin: str | None) -> VisretError | None:
        """For a saved configuration: a one-line error saying which plugin to install when ``name`` is
        not registered, else None."""
        if name.partition(":")[0] in self.classes() or name in self.classes() or name in _refusals.get(self.hook, {}):
            return None
        if plugin and DISTRIBUTION_NAME.fullmatch(plugin):
            return VisretError(f"{self.label} {name!r} comes from the plugin {plugin!r}, which is not installed or not loaded: "
                               f"pip install {plugin} (or add it to VISRET_LOAD_PLUGINS); see 'visret plugins'")
        if plugin:  # a file names it: never put what is not a package name into a command line to copy
            return VisretError(f"{self.label} {name!r} comes from a plugin that is not installed; the name recorded for it "
                               "is not a package name; see 'visret plugins'")
        return None

    def create(self, name: str, params: dict[str, Any]):
        """An instance of a registered parameterised class (``NAME:VALUE`` sets its ``shorthand``
        parameter), validated; unknown or bad parameters are one line."""
        table = self.classes()
        prefix, colon, value = name.partition(":")
        if name not in table and colon and getattr(table.get(prefix, (None,))[0], "shorthand", None):
            name, params = prefix, {table[prefix][0].shorthand: value, **params}
        cls = self.named(name)
        defaults = cls.param_defaults()
        unknown = sorted(set(params) - set(defaults))
        if unknown:
            raise VisretError(
                f"{self.label} {name!r} has no parameter {', '.join(unknown)} (parameters: {', '.join(defaults) or 'none'})"
            )
        try:
            obj = cls(**params)
            obj.validate()
        except (TypeError, ValueError) as exc:
            raise VisretError(f"{self.label} {name!r}: {exc}") from None
        return obj


def plugin_report(points: Sequence[ExtensionPoint] | None = None) -> list[dict[str, Any]]:
    """One dict per plugin: name, version, hooks, what it registered (per extension point, every one
    declared so far by default), status and error."""
    tables = {point.table: point.classes() for point in (_POINTS if points is None else points)}

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
