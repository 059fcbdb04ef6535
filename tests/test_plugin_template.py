"""``visret new-plugin`` writes a package that builds, installs, is discovered through its entry
point, and passes its own tests (the conformance kit among them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from visret import VisretError
from visret.plugins._new_plugin import write_plugin


@pytest.mark.slow
def test_the_template_builds_installs_and_passes_its_tests(tmp_path, cli):
    result = cli("new-plugin", "texture-plus", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    package = tmp_path / "visret-texture-plus"
    assert (package / "visret_texture_plus" / "__init__.py").is_file()
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(site), str(package)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    listed = subprocess.run([str(Path(sys.executable).with_name("visret")), "extractors", "--json"], capture_output=True, text=True, env=env)
    assert "texture-plus/grey-histogram" in listed.stdout
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests")],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert "8 passed" in tests.stdout  # six rules of the kit, one test each, and two of its own


def test_bad_names_and_existing_folders_are_one_line(tmp_path):
    with pytest.raises(VisretError, match="lowercase letters and digits"):
        write_plugin("Bad_Name", tmp_path)
    write_plugin("ok", tmp_path)
    with pytest.raises(VisretError, match="exists already"):
        write_plugin("ok", tmp_path)
