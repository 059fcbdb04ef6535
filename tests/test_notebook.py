"""The notebook in docs/notebooks runs from top to bottom on a fresh kernel, so it never goes stale."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "classic-exercise.ipynb"


@pytest.mark.slow
def test_the_classic_exercise_notebook_runs_and_shows_its_results(tmp_path):
    stored = nbformat.read(NOTEBOOK, as_version=4)
    fresh = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(fresh, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [(old, new) for old, new in zip(stored.cells, fresh.cells) if old.cell_type == "code"]
    assert all(old.execution_count for old, _ in code), "the notebook is stored executed"
    assert [bool(old.outputs) for old, _ in code] == [bool(new.outputs) for _, new in code], "its stored outputs are those of a run"
    outputs = [output for cell in fresh.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("cnn/lenet5" in table and "<table>" in table for table in html)  # the leaderboard, as a table
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 5
    text = "".join(o.get("text", "") for o in outputs)
    assert "LeNet-5 latent space: k-NN accuracy" in text and (tmp_path / "models" / "cnn-lenet5.keras").is_file()
