"""A new plugin package from the template in ``template/``: an extractor, its entry point, and
tests that run the conformance kit (``visret new-plugin NAME``)."""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from visret.errors import VisretError

TEMPLATE = Path(__file__).with_name("template")
NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def write_plugin(name: str, out: str | Path = ".") -> Path:
    """Write the package ``visret-NAME`` into ``out`` and return its folder."""
    if not NAME.match(name):
        raise VisretError(f"plugin name {name!r} must be lowercase letters and digits, words joined by '-'")
    module = "visret_" + name.replace("-", "_")
    words = {"name": name, "module": module, "class_name": "".join(w.capitalize() for w in name.split("-")) + "GreyHistogram"}
    folder = Path(out) / f"visret-{name}"
    if folder.exists():
        raise VisretError(f"{folder} exists already; choose another name or --out")
    for source in sorted(TEMPLATE.rglob("*.tmpl")):
        relative = source.relative_to(TEMPLATE).with_suffix("")
        target = folder / Path(*[module if part == "package" else part for part in relative.parts])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(Template(source.read_text()).substitute(words))
    return folder
