"""The floor plan (docs/architecture.md): no import cycle inside ``visret``, counting imports inside
functions; each package imports only its own layer or those below; plugins import only public modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Lowest first: a module may import its own layer and those below it, never one above.
LAYERS = [
    ["visret.errors", "visret.version", "visret._named_files", "visret._lazy", "visret.sample_data"],
    ["visret.plugins._registry", "visret.plugins.hookspecs", "visret.plugins"],
    ["visret.features"],
    ["visret.images"],
    ["visret.embedding"],
    ["visret.index"],
    ["visret.evaluation"],
    ["visret.classification"],
    ["visret.duplicates", "visret.reports"],
    ["visret.serve", "visret.plugins.testing", "visret.plugins._new_plugin"],
    ["visret.cli", "visret.default_plugins"],
]


def _modules(package: Path) -> dict[str, Path]:
    found = {}
    for file in package.rglob("*.py"):
        parts = list(file.relative_to(package.parent).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return found


def _imports(file: Path, name: str, modules: dict[str, Path] | None = None) -> set[str]:
    """Every ``visret`` module a file imports, at the top or inside functions, as dotted names
    (``from package import module`` names the module; a package's own ``__init__`` runs first for
    every submodule, which is no dependency of the importer)."""
    is_package = file.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(parts + ([node.module] if node.module else []))
            submodules = {f"{base}.{alias.name}" for alias in node.names}
            found |= submodules if modules is not None and submodules <= set(modules) else submodules | {base}
    return {module for module in found if module == "visret" or module.startswith("visret.")}


def _graph() -> dict[str, set[str]]:
    modules = _modules(ROOT / "visret")

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    return {name: {t for t in map(resolve, _imports(file, name, modules)) if t and t != name} for name, file in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iteratively)."""
    index, low, on_stack, stack, groups, counter = {}, {}, set(), [], [], 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def _layer(module: str) -> int | None:
    best = None
    for number, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (number, len(prefix))
    return None if best is None else best[0]


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_inside_visret():
    assert _cycles(_graph()) == []


def test_every_module_has_a_layer_and_imports_nothing_above_it():
    graph = _graph()
    unplaced = sorted(m for m in graph if m != "visret" and _layer(m) is None)
    assert unplaced == [], f"place these in LAYERS and docs/architecture.md: {unplaced}"
    upward = sorted(f"{m} -> {t}" for m, targets in graph.items() if m != "visret" for t in targets
                    if t != "visret" and _layer(t) > _layer(m))
    assert upward == []


@pytest.mark.parametrize("plugin", sorted(p.name for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").exists()))
def test_built_in_plugins_import_only_public_modules(plugin):
    private = sorted({f"{file.name}: {module}" for name, file in _modules(ROOT / "plugins" / plugin).items()
                      for module in _imports(file, name) if any(part.startswith("_") for part in module.split("."))})
    assert private == []


def test_the_layers_are_documented():
    page = (ROOT / "docs" / "architecture.md").read_text()
    assert all(f"`{prefix}`" in page for layer in LAYERS for prefix in layer)
