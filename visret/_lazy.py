"""Lazy package faces (PEP 562): a package's public names, imported on first use.

A package lists its public names as imports under ``if TYPE_CHECKING:`` (what type checkers and the API
reference read); ``lazy_face`` reads that list from the package's own source and imports a name's module
only when the name is first asked for, so a command pays only for what it uses.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any, Callable


def _declared(init_file: str) -> dict[str, str]:
    """``name -> module`` of every ``from MODULE import NAME`` under ``if TYPE_CHECKING:`` in ``init_file``."""
    tree = ast.parse(Path(init_file).read_text(encoding="utf-8"))
    homes = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom):
                    homes.update({alias.asname or alias.name: statement.module for alias in statement.names})
    return homes


def lazy_face(package: str, init_file: str, namespace: dict[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for the package ``package`` whose ``__init__`` is ``init_file``; each name,
    once imported, is kept in ``namespace`` (the package's globals), so it is looked up only once."""
    homes: dict[str, str] = {}

    def __getattr__(name: str) -> Any:
        if not homes:
            homes.update(_declared(init_file))
        if name not in homes:
            try:  # a sub-package or module of the package, as plain attribute access would find once imported
                value = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise  # the module exists but a dependency of it is missing: that is the error to see
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        else:
            value = getattr(importlib.import_module(homes[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *_declared(init_file)})

    return __getattr__, __dir__
