"""The docs site builds strictly: a broken link, a missing page or an API reference that no longer
resolves fails the suite. The command line reference is generated from the app."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_docs_site_builds_strictly(tmp_path):
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    cli = (tmp_path / "site" / "cli" / "index.html").read_text()
    for command in ("visret index", "visret serve", "visret export", "visret new-plugin", "visret summary", "visret report"):
        assert command in cli  # core, extra and built-in plugin commands alike
    assert "--engine" in cli and "--from-list" in cli
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "index_from_arrays" in api and "check_extractor" in api and "register_extractors" in api


def test_the_command_line_reference_in_the_repository_is_what_the_code_says():
    """docs/cli.md is read on GitHub too, not only on the built site: regenerate it with
    ``.venv/bin/python docs/hooks/cli_reference.py`` when a command changes."""
    sys.path.insert(0, str(ROOT / "docs" / "hooks"))
    try:
        import cli_reference
    finally:
        sys.path.pop(0)
    page = (ROOT / "docs" / "cli.md").read_text()
    assert page == cli_reference.generated(), "docs/cli.md is stale: run .venv/bin/python docs/hooks/cli_reference.py"
    assert " .\n" not in page and " . |" not in page  # no help text that lost its default
