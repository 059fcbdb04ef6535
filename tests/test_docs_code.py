"""Every Python block of README.md and docs/ runs, in order, on small real data laid out under the
names the docs use (``photos/``, ``query.jpg``...), so the documented API cannot rot.

A block that cannot run here says why in an HTML comment right above it
(``<!-- not run: REASON -->``); the names the prose leaves to the reader (``X``, ``images``...)
are given real values below.
"""

from __future__ import annotations

import csv
import re
import shutil
import sys
import traceback
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visret.sample_data import write_digits

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"(?:<!-- not run: (?P<reason>[^>]+?) -->\s*\n)?```python\n(?P<code>.*?)```", re.S)
#: Where the docs' own numbers would take minutes on this small data: the same call, a smaller budget.
SHORTER = {"README.md": {"budget_seconds=1800": "budget_seconds=5", "epochs=30": "epochs=2", "epochs=20": "epochs=2"}}
#: Class folders of the docs' photo collections (the images are scikit-learn's digits 0-3).
CLASSES = {"0": "cats", "1": "dogs", "2": "birds", "3": "fish"}


def python_blocks(page: Path) -> list[tuple[str, str | None]]:
    return [(m["code"], m["reason"]) for m in BLOCK.finditer(page.read_text())]


DOCUMENTED = [page for page in PAGES if python_blocks(page)]


def _photos(digits: Path, part: str, target: Path) -> None:
    for digit, name in CLASSES.items():
        shutil.copytree(digits / part / digit, target / name)


def _lay_out(folder: Path) -> dict:
    """The files and folders the docs name, and real values for the names they leave open."""
    digits = write_digits(folder / ".digits", limit=12)
    for name in ("photos", "train", "digits", "flowers/train"):
        _photos(digits, "train", folder / name)
    for name in ("test-photos", "test", "flowers/test"):
        _photos(digits, "test", folder / name)
    queries = sorted((folder / "test").rglob("*.png"))
    Image.open(queries[0]).convert("RGB").save(folder / "query.jpg")
    Image.open(queries[-1]).convert("RGB").save(folder / "q.jpg")
    shutil.copy(queries[1], folder / "a.png")
    shutil.copy(queries[-2], folder / "b.png")
    new = folder / "new-photos" / "cats"
    new.mkdir(parents=True)
    for i, source in enumerate(sorted((digits / "train" / "4").glob("*.png"))[:3]):
        shutil.copy(source, new / f"new-{i}.png")
    with open(folder / "more.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        for source in sorted((digits / "test" / "5").glob("*.png")):
            writer.writerow([str(source), "dogs"])

    from sklearn.datasets import load_digits
    from visret_heads.knn import KNNClassifier

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    return {
        "X": X, "y": y, "X_train": X[:1200], "y_train": y[:1200], "X_test": X[1200:], "y_test": y[1200:],
        "images": [str(p) for p in queries[:4]], "image_array": np.asarray(Image.open(folder / "query.jpg")),
        "MyHead": KNNClassifier,
    }


@pytest.mark.slow
@pytest.mark.parametrize("page", DOCUMENTED, ids=[str(p.relative_to(ROOT)) for p in DOCUMENTED])
def test_python_blocks_run(page, tmp_path, monkeypatch):
    module = types.ModuleType("docs_" + re.sub(r"\W", "_", page.stem))  # classes defined in a block can be pickled
    module.__dict__.update(_lay_out(tmp_path))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.chdir(tmp_path)
    namespace = module.__dict__
    shorter = dict(SHORTER.get(page.name, {}))
    for number, (code, reason) in enumerate(python_blocks(page), 1):
        if reason:
            continue
        for long, short in list(shorter.items()):
            if long in code:
                code = code.replace(long, short)
                del shorter[long]
        try:
            exec(compile(code, f"{page.name}, Python block {number}", "exec"), namespace)
        except Exception:
            line = next(f.lineno for f in reversed(traceback.extract_tb(sys.exc_info()[2])) if f.filename.startswith(page.name))
            pytest.fail(f"{page.relative_to(ROOT)}, Python block {number}, line {line}: {code.splitlines()[line - 1].strip()}\n"
                        f"{traceback.format_exc(limit=-4)}")
    assert not shorter, f"{page.name} no longer says {', '.join(shorter)}: update SHORTER"


def test_every_skipped_block_says_why_and_few_are_skipped():
    skipped = [(page.name, reason) for page in PAGES for _, reason in python_blocks(page) if reason]
    ran = sum(1 for page in PAGES for _, reason in python_blocks(page) if not reason)
    assert all(reason.strip() for _, reason in skipped)
    assert ran >= 7 and len(skipped) <= 2, skipped


#: The assignment tutorial's commands on the small data: its numbers of epochs would take minutes.
ASSIGNMENT_SHORTER = {"--epochs 4 --fine-tune-epochs 4": "--epochs 1 --fine-tune-epochs 1"}


@pytest.mark.slow
def test_the_assignment_tutorials_commands_run_in_order(tmp_path):
    """docs/tutorials/assignment.md, its shell blocks as written (benchmarks/assignment.py runs the same on
    Oxford 17 Flowers), on small data laid out under the names it uses."""
    import os
    import subprocess

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from assignment import commands
    finally:
        sys.path.pop(0)
    _lay_out(tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    shorter = dict(ASSIGNMENT_SHORTER)
    for command in commands():
        for long, short in list(shorter.items()):
            if long in command:
                command = command.replace(long, short)
                del shorter[long]
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command}\n{done.stderr[-2000:]}"
    assert not shorter, f"the tutorial no longer says {', '.join(shorter)}: update ASSIGNMENT_SHORTER"
    page = (tmp_path / "report.html").read_text()
    assert "squeezenet-ft.keras + 4 TTA views" in page and "training curves of squeezenet-ft.keras" in page
    assert "model:squeezenet-ft.keras" in page and "chosen test images" in page
