"""The tuner: choices made on validation splits of the tuning part only, an honest held-out score, a recipe."""

import json
import shutil

import pytest

from visret import VisretError, open_index
from visret.evaluation._recipe import read_recipe
from visret.evaluation._tuning import Tuner, tune

BASES = ("pixels", "edges")


@pytest.fixture(scope="module")
def tuned(digits):
    tuner = Tuner(digits / "train", test_dir=digits / "test", extractors=BASES, workers=1)
    return tuner, tuner.run()


def test_the_recipe_is_scored_on_held_out_queries_next_to_every_default(tuned):
    tuner, result = tuned
    assert set(result.defaults) == set(BASES)
    assert result.held_out.n_queries == 50 and 0 < result.held_out.map <= 1
    assert result.beats_every_default == (result.held_out.map > max(result.defaults.values()))
    stages = {t.stage for t in result.trials}
    assert {"normalisation", "combination", "post-processing", "re-ranking"} <= stages
    assert result.validation_map >= max(t.validation_map for t in result.trials if t.stage in ("combination", "post-processing"))
    data = json.loads(json.dumps(result.to_dict()))
    assert data["held_out_map"] == result.held_out.map and data["best_default"]["extractor"] in BASES


def test_the_test_part_never_steers_the_choices(digits, tmp_path, tuned):
    _, result = tuned
    shuffled = tmp_path / "test"
    classes = sorted(p.name for p in (digits / "test").iterdir())
    for i, label in enumerate(classes):  # the same images under other labels
        shutil.copytree(digits / "test" / label, shuffled / classes[(i + 1) % len(classes)])
    again = Tuner(digits / "train", test_dir=shuffled, extractors=BASES, workers=1).run()
    assert [(t.stage, t.candidate, t.validation_map) for t in again.trials] == [(t.stage, t.candidate, t.validation_map) for t in result.trials]
    assert again.recipe.extractor == result.recipe.extractor and again.held_out.map < result.held_out.map


def test_the_recipe_builds_an_index(tuned, digits, tmp_path, cli):
    _, result = tuned
    path = result.recipe.save(tmp_path / "recipe.json")
    assert read_recipe(path).extractor == result.recipe.extractor
    built = cli("index", digits / "train", "--recipe", path, "--index", tmp_path / "ix", "--workers", "1")
    assert built.exit_code == 0, built.stderr
    with open_index(tmp_path / "ix") as index:
        assert index.manifest["extractor"] == json.loads(json.dumps(result.recipe.extractor)) | {"params": index.manifest["extractor"]["params"], "plugin": "visret"}
        assert index.rerank == result.recipe.rerank


def test_the_budget_stops_the_search_with_the_best_so_far(digits):
    result = tune(digits / "train", extractors=BASES, workers=1, budget_seconds=0.01, test_size=0.3)
    assert not result.finished and result.recipe.extractor and len(result.trials) < 10


def test_the_cli_writes_the_recipe_and_says_how_it_compares(digits, tmp_path, cli):
    out = tmp_path / "r.json"
    result = cli("tune", digits / "train", "-e", "pixels", "--no-supervised", "--no-rerank", "--out", out, "--workers", "1", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["recipe"] == json.loads(out.read_text()) and not data["recipe"]["scores"]["supervised"]
    assert f"wrote {out}: held-out mAP" in result.stderr.replace("\n", " ")
    assert all(t["stage"] not in ("re-ranking",) for t in data["trials"])
    assert not any(t["candidate"].startswith(("lda", "learned")) for t in data["trials"])


def test_tuning_needs_labelled_classes_and_known_extractors(digits, tmp_path):
    (tmp_path / "flat").mkdir()
    with pytest.raises(VisretError, match="needs labelled images of at least two classes"):
        Tuner(tmp_path / "flat")
    with pytest.raises(VisretError, match="unknown extractor 'nope'"):
        Tuner(digits / "train", extractors=["nope"])


def test_the_pretrained_network_is_tuned_with_the_handcrafted_blocks_and_scored_with_the_default(photo_crops):
    import numpy as np

    from visret.features._extractor import DEFAULT_EXTRACTOR_LABEL
    from visret.features._lookup import extractor_from_spec

    result = tune(photo_crops, extractors=("keras/squeezenet", "color-hist"), workers=1, test_size=0.25, rerank=False)
    assert set(result.defaults) == {"keras/squeezenet", "color-hist", f"default: {DEFAULT_EXTRACTOR_LABEL}"}
    assert {t.candidate.split("+")[0] for t in result.trials if t.stage == "normalisation"} == {"keras/squeezenet", "color-hist"}
    assert result.defaults["keras/squeezenet"] > 0.9  # crops of four photographs: ImageNet features rank them
    assert result.held_out.map >= result.defaults["keras/squeezenet"] - 0.05
    extractor_from_spec(result.recipe.extractor)  # the recipe is a plain extractor spec
    assert np.isfinite(result.validation_map)
