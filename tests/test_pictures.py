"""The pictures are drawn from real results, non-empty and not blank."""

import json

import numpy as np
import pytest
from PIL import Image


def assert_picture(path, min_size=(200, 150)):
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= min_size[0] and image.height >= min_size[1]
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 10  # not a blank canvas


def test_query_montage_frames_neighbours_by_correctness(cli, digits_index, digits, tmp_path):
    image = sorted((digits / "test" / "9").iterdir())[0]
    result = cli("query", image, "--index", digits_index, "-k", "4", "--montage", tmp_path / "montage.png")
    assert result.exit_code == 0, result.stderr
    assert_picture(tmp_path / "montage.png", (500, 100))
    assert f"wrote {tmp_path / 'montage.png'}" in result.stderr
    with Image.open(tmp_path / "montage.png") as picture:
        rgb = np.asarray(picture.convert("RGB")).reshape(-1, 3).astype(int)
    green = ((rgb[:, 1] > 130) & (rgb[:, 0] < 60) & (rgb[:, 2] < 110)).sum()
    assert green > 500  # correct neighbours are framed green


def test_evaluate_draws_confusion_matrix_and_tsne(cli, digits_index, digits, tmp_path):
    result = cli("evaluate", digits / "test", "--index", digits_index, "--confusion", tmp_path / "cm.png", "--tsne", tmp_path / "tsne.png", "--json", "--workers", "1")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["n_queries"] == 50
    assert_picture(tmp_path / "cm.png")
    assert_picture(tmp_path / "tsne.png")


def test_compare_writes_pr_curves_and_an_html_report(cli, digits, tmp_path):
    result = cli("compare", digits / "train", "-e", "pixels,lbp", "--html", tmp_path / "report.html", "--pr-curve", tmp_path / "pr.png", "--workers", "1")
    assert result.exit_code == 0, result.stderr
    assert_picture(tmp_path / "pr.png")
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "<b>" in page and "pixels" in page and "lbp" in page


def test_leave_one_out_from_the_cli(cli, digits_index):
    result = cli("evaluate", "--index", digits_index, "--json", "--at", "1,3")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["protocol"] == "loo" and report["n_queries"] == 150 and set(report["precision_at"]) == {"1", "3"}


@pytest.mark.parametrize("args, message", [
    (["compare", "{data}", "--protocol", "nope"], "protocol must be one of"),
    (["compare", "{data}", "--k", "0,5"], "cut-offs must be integers of at least 1"),
])
def test_compare_user_errors(cli, digits, args, message):
    result = cli(*[a.format(data=digits / "train") for a in args])
    assert result.exit_code == 1 and message in result.stderr


def test_a_precision_recall_curve_under_an_equal_one_still_shows(tmp_path):
    """Two extractors with the same ranking give the same curve: the first stays visible under the second."""
    from PIL import Image

    from visret.reports.plots import save_pr_curves

    curve = {"recall": [i / 10 for i in range(11)], "precision": [1 - 0.06 * i for i in range(11)]}

    def blue_pixels(curves) -> int:
        pixels = np.asarray(Image.open(save_pr_curves(curves, tmp_path / "pr.png")).convert("RGB")).astype(int)
        return int((np.abs(pixels - [31, 119, 180]).sum(axis=2) < 60).sum())  # matplotlib's first colour

    alone = blue_pixels({"hog": curve})
    assert blue_pixels({"hog": curve, "hog again": dict(curve)}) > 0.3 * alone
