"""The command line contract: outputs, JSON shapes, and one-line user errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

VISRET = str(Path(sys.executable).with_name("visret"))


@pytest.fixture(scope="module")
def cli_index(digits, tmp_path_factory):
    from typer.testing import CliRunner

    from visret.cli._app import app

    path = tmp_path_factory.mktemp("cli") / "ix"
    result = CliRunner().invoke(
        app, ["index", str(digits / "train"), "-e", "hog", "-p", "size=32", "-p", "pixels_per_cell=4", "--index", str(path), "--workers", "1"]
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("indexed 150 images, skipped 0,")
    assert "images/s" in result.stdout
    return path


def test_query_json(cli, cli_index, digits):
    images = [sorted((digits / "test" / d).iterdir())[0] for d in ("3", "8")]
    result = cli("query", *images, "--index", cli_index, "-k", "4", "--json")
    assert result.exit_code == 0, result.stderr
    answers = json.loads(result.stdout)
    assert [a["query"] for a in answers] == [str(p) for p in images]
    for answer in answers:
        assert set(answer) >= {"query", "prediction", "neighbors"}
        assert len(answer["neighbors"]) == 4
        assert set(answer["neighbors"][0]) >= {"path", "label", "distance"}
    assert answers[0]["prediction"] == "3" and answers[1]["prediction"] == "8"


def test_query_table_shows_ranks_and_prediction(cli, cli_index, digits):
    image = sorted((digits / "train" / "5").iterdir())[0]
    result = cli("query", image, "--index", cli_index, "-k", "2")
    assert result.exit_code == 0
    assert "predicted: 5" in result.stdout and "0.0000" in result.stdout


def test_evaluate_json(cli, cli_index, digits):
    result = cli("evaluate", digits / "test", "--index", cli_index, "-k", "5", "--json", "--workers", "1")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"accuracy", "map", "precision_at_k", "per_class", "n_queries", "confusion_matrix"} <= set(report)
    assert report["n_queries"] == 50 and 0.85 < report["accuracy"] <= 1.0


def test_evaluate_table(cli, cli_index, digits):
    result = cli("evaluate", digits / "test", "--index", cli_index, "--workers", "1")
    assert result.exit_code == 0 and "accuracy" in result.stdout and "per class" in result.stdout


def test_info_json_and_table(cli, cli_index):
    info = json.loads(cli("info", "--index", cli_index, "--json").stdout)
    assert info["count"] == 150 and info["extractor"]["name"] == "hog" and info["bytes"] > 0
    table = cli("info", "--index", cli_index).stdout
    assert "entries" in table and "150" in table


def test_index_reports_skipped_files(cli, folder_with_broken_files, tmp_path):
    result = cli("index", folder_with_broken_files, "--index", tmp_path / "ix", "--max-pixels", "1000000", "--workers", "1")
    assert result.exit_code == 0, result.stderr
    assert "indexed 6 images, skipped 5" in result.stdout
    assert len([line for line in result.stderr.splitlines() if line.startswith("warning: skipped")]) == 5


@pytest.mark.parametrize(
    "args, message",
    [
        (["query", "{img}", "--index", "{tmp}/missing"], "error: no index at"),
        (["index", "{data}", "--extractor", "sift9000", "--index", "{tmp}/x"], "error: unknown extractor 'sift9000'"),
        (["index", "{data}", "-e", "hog", "-p", "pixels_per_cell=big", "--index", "{tmp}/x"], "error: extractor 'hog': pixels_per_cell must be"),
        (["index", "{data}", "-p", "novalue", "--index", "{tmp}/x"], "error: parameter 'novalue' is not KEY=VALUE"),
        (["index", "{tmp}/nowhere", "--index", "{tmp}/x"], "is not a folder"),
        (["index", "{data}", "--metric", "manhattan", "--index", "{tmp}/x"], "error: metric must be one of"),
        (["index", "{data}", "-e", "hog", "--metric", "hamming", "--index", "{tmp}/x"], "error: distance hamming needs 0/1 features"),
        (["query", "{tmp}/notes.txt", "--index", "{index}"], "error: cannot read query image"),
        (["remove", "{tmp}/\udcff.png", "--index", "{index}"], "is in the index at"),
        (["tune", "{data}", "-e", "pixels", "--test-size", "1.5"], "error: test size must be between 0 and 1"),
        (["index", "{data}", "--recipe", "{tmp}/rerank.json", "--index", "{tmp}/x"], 'error: a recipe\'s "rerank" is a re-ranking spec'),
        (["index", "{data}", "--recipe", "{tmp}/params.json", "--index", "{tmp}/x"], "error: the params of extractor 'hog' must be an object"),
        (["index", "{data}", "--recipe", "{tmp}/deep.json", "--index", "{tmp}/x"], "is nested too deeply"),
        (["index", "{data}", "--recipe", "{tmp}/posts.json", "--index", "{tmp}/x"], "nests more than 32 levels"),
    ],
)
def test_user_errors_exit_1_with_one_line_and_no_traceback(args, message, cli_index, digits, tmp_path, project_env):
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "rerank.json").write_text(json.dumps({"extractor": {"name": "hog"}, "rerank": 5}))
    (tmp_path / "params.json").write_text(json.dumps({"extractor": {"name": "hog", "params": [1, 2]}}))
    (tmp_path / "deep.json").write_text('{"extractor": ' + "[" * 100_000 + "]" * 100_000 + "}")
    spec = {"name": "hog"}
    for _ in range(400):
        spec = {"name": "post", "params": {"extractor": spec, "steps": ["l2"]}}
    (tmp_path / "posts.json").write_text(json.dumps({"extractor": spec}))
    values = {"img": sorted((digits / "test" / "1").iterdir())[0], "tmp": tmp_path, "data": digits / "test", "index": cli_index}
    argv = [a.format(**values) for a in args]
    done = subprocess.run([VISRET, *argv], capture_output=True, text=True, env=project_env, timeout=120)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_progress_where_no_bar_is_seen_is_plain_lines_with_time_spent_and_left(monkeypatch, capsys):
    """stderr that is not a terminal (a log, a pipe): one line per step of a short count, one every
    10 s of a long one, each after the stage's first 2 s, with the time spent and what is left."""
    from visret.cli import console

    clock = iter(range(0, 10_000, 1))  # one second per call
    monkeypatch.setattr(console.time, "monotonic", lambda: float(next(clock)))
    with console.ProgressBar("training") as bar:
        assert bar.lines  # pytest's stderr is not a terminal
        for epoch in range(1, 6):
            bar.stages("training cnn/lenet5", epoch, 5)
        for done in range(0, 1001, 10):
            bar.stages("embedding test images", done, 1000)
    lines = capsys.readouterr().err.splitlines()
    epochs = [line for line in lines if line.startswith("training cnn/lenet5: ")]
    assert epochs[0].startswith("training cnn/lenet5: 2/5 (40 %), ") and epochs[0].endswith(" left")
    assert len(epochs) == 4 and epochs[-1].startswith("training cnn/lenet5: 5/5 (100 %), ") and "left" not in epochs[-1]
    images = [line for line in lines if line.startswith("embedding test images: ")]
    assert 8 <= len(images) <= 12 and images[-1].startswith("embedding test images: 1000/1000 (100 %)")
