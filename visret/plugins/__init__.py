"""The plugin system: hook specifications (``visret.plugins.hookspecs``), loading and the registry of
what plugins register (one ``ExtensionPoint`` per kind), and the conformance kit plugin authors test
with (``visret.plugins.testing``). What a plugin implements lives in ``visret.features``."""

from visret.plugins._registry import (
    BUILTIN_PLUGINS,
    ExtensionPoint,
    call_each_plugin,
    load_plugins,
    plugin_report,
    pm,
    reset_registry,
)
from visret.plugins.hookspecs import hookimpl

__all__ = ["BUILTIN_PLUGINS", "ExtensionPoint", "call_each_plugin", "hookimpl", "load_plugins", "plugin_report", "pm", "reset_registry"]
