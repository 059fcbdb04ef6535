"""Retrieval quality: normalisations, distances, re-ranking (each against a hand-computed case),
supervised post-processing that is never fitted on its queries, ranking depth, recipes."""

import json
from pathlib import Path

import faiss
import numpy as np
import pytest
from PIL import Image

import visret
from visret import VisretError, build_index, evaluate_features, evaluate_knn, open_index, remove_images
from visret.index.distances import get_distance
from visret.features.normalization import normalize
from visret.evaluation._recipe import Recipe, read_recipe
from visret.index._rerank import Reranker, parse_rerank
from visret.index._search import ArrayCollection



# ---- normalisations ---------------------------------------------------------------------------
def test_normalisations_by_hand():
    x = np.array([[1.0, 3.0, 0.0], [0.0, 0.0, 0.0], [-4.0, 0.0, 0.0]])
    np.testing.assert_allclose(normalize(x, "l1"), [[0.25, 0.75, 0], [0, 0, 0], [-1, 0, 0]])
    np.testing.assert_allclose(normalize(x, "l2"), [[1 / np.sqrt(10), 3 / np.sqrt(10), 0], [0, 0, 0], [-1, 0, 0]], rtol=1e-6)
    np.testing.assert_allclose(normalize(x, "hellinger"), [[0.5, np.sqrt(0.75), 0], [0, 0, 0], [-1, 0, 0]], rtol=1e-6)
    powered = normalize(np.array([[4.0, 9.0]]), "power:0.5")  # [2, 3] / sqrt(13)
    np.testing.assert_allclose(powered, [[2 / np.sqrt(13), 3 / np.sqrt(13)]], rtol=1e-6)
    np.testing.assert_array_equal(normalize(x, "none"), x.astype(np.float32))
    for bad in ("l3", "power:2", "power:x", 5):
        with pytest.raises(ValueError, match="norm must be one of"):
            normalize(x, bad)


# ---- distances --------------------------------------------------------------------------------
HISTOGRAMS = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [0.0, 0.1, 0.9], [0.4, 0.4, 0.2]])


def test_histogram_intersection_by_hand():
    distance = get_distance("intersection")
    collection = ArrayCollection(distance.prepare(HISTOGRAMS), distance)
    distances, ids = collection.search(distance.prepare(HISTOGRAMS[:1]), 4)
    # 1 - sum(min(q, x)): itself 0; [0.4,0.4,0.2] -> 1-0.8; [0.2,0.3,0.5] -> 1-0.5; [0,.1,.9] -> 1-0.1
    assert ids[0].tolist() == [0, 3, 1, 2]
    np.testing.assert_allclose(distances[0], [0.0, 0.2, 0.5, 0.9], atol=1e-6)
    unnormalised = ArrayCollection(distance.prepare(HISTOGRAMS * 7), distance)  # L1-normalised before storing
    np.testing.assert_allclose(unnormalised.search(distance.prepare(HISTOGRAMS[:1] * 3), 4)[0], distances, atol=1e-6)


def test_chi_square_by_hand_through_its_feature_map():
    distance = get_distance("chi2")
    stored = distance.prepare(HISTOGRAMS)
    assert stored.shape == (4, 15)  # 2 * steps - 1 = 5 values per bin
    distances, ids = ArrayCollection(stored, distance).search(stored[:1], 4)
    exact = [sum((a - b) ** 2 / (a + b) for a, b in zip(HISTOGRAMS[0], row) if a + b > 0) for row in HISTOGRAMS]
    # 0; [.4,.4,.2]: .01/.9*2 + .04/.2 = 0.2222; [.2,.3,.5]: .09/.7 + .04/.8 + .25/.5 = 0.6786; [0,.1,.9]: .5 + .16/.6 + .9 = 1.6667
    np.testing.assert_allclose(sorted(exact), [0.0, 0.2222, 0.6786, 1.6667], atol=1e-4)
    assert ids[0].tolist() == list(np.argsort(exact))
    np.testing.assert_allclose(distances[0], np.sort(exact), atol=0.05)  # the map approximates the kernel


@pytest.mark.parametrize("metric", ["intersection", "chi2"])
def test_histogram_distances_need_non_negative_features(metric, digits, tmp_path):
    with build_index(digits / "test", "color-hist", tmp_path / metric, metric=metric, workers=1) as index:
        image = sorted((digits / "test" / "3").iterdir())[0]
        assert index.query(image, k=1).neighbors[0].distance == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(VisretError, match=f"distance {metric} needs non-negative features"):
        build_index(digits / "test", "post", tmp_path / f"{metric}-neg", metric=metric, workers=1,
                    params={"extractor": "pixels", "steps": ["standardize"]})


# ---- re-ranking -------------------------------------------------------------------------------
Q = np.array([[1.0, 0.0]])
E = np.array([[0.6, 0.8], [0.8, -0.6], [0.0, 1.0], [-1.0, 0.0]])  # cosines to Q: 0.6, 0.8, 0, -1


def _collection(metric="cosine", vectors=E):
    return ArrayCollection(get_distance(metric).prepare(vectors), get_distance(metric))


def test_no_reranking_is_the_plain_search():
    d, i = Reranker("none").search(_collection(), Q, 4)
    assert i[0].tolist() == [1, 0, 2, 3]
    np.testing.assert_allclose(d[0], [0.2, 0.4, 1.0, 2.0], atol=1e-6)


def test_average_query_expansion_by_hand():
    # q' = (q + e1) / 2 = [0.9, -0.3]; cosines 0.9487 (e1), 0.3162 (e0), -0.3162 (e2), -0.9487 (e3)
    d, i = Reranker("aqe:k=1").search(_collection(), Q, 4)
    assert i[0].tolist() == [1, 0, 2, 3]
    np.testing.assert_allclose(d[0], [0.051317, 0.683772, 1.316228, 1.948683], atol=1e-5)
    d, i = Reranker("aqe:k=1").search(_collection("l2"), Q, 4)  # Euclidean distances to q' itself
    np.testing.assert_allclose(d[0], [0.316228, 1.140175, 1.581139, 1.923538], atol=1e-5)


def test_alpha_query_expansion_by_hand():
    # weights 0.8 (e1) and 0.6 (e0): q' = (q + 0.8 e1 + 0.6 e0) / 2.4 = [2, 0] / 2.4, the direction of q
    d, i = Reranker("alpha-qe:k=2,alpha=1").search(_collection(), Q, 4)
    assert i[0].tolist() == [1, 0, 2, 3]
    np.testing.assert_allclose(d[0], [0.2, 0.4, 1.0, 2.0], atol=1e-5)


def test_database_side_augmentation_by_hand():
    # nearest other entry: e0 -> e2, e1 -> e0, e2 -> e0, e3 -> e2; e' = (e + its neighbour) / 2:
    # e0' = e2' = [.3, .9] (cos .3162), e1' = [.7, .1] (cos .9899), e3' = [-.5, .5] (cos -.7071)
    d, i = Reranker("dba:k=1").search(_collection(), Q, 4)
    assert i[0].tolist() == [1, 0, 2, 3]  # e0 and e2 tie: the earlier rank stays first
    np.testing.assert_allclose(d[0], [0.010051, 0.683772, 0.683772, 1.707107], atol=1e-5)


def test_leave_one_out_keeps_the_query_out_of_results_and_neighbourhoods():
    with_query = np.vstack([E, Q])  # the query is entry 4: nearer to e1 than e0 is
    for spec, expected in [("dba:k=1", [0.010051, 0.683772, 0.683772, 1.707107]), ("aqe:k=1", [0.051317, 0.683772, 1.316228, 1.948683])]:
        d, i = Reranker(spec).search(_collection(vectors=with_query), Q, 4, exclude=np.array([4]))
        assert 4 not in i[0].tolist()
        np.testing.assert_allclose(d[0], expected, atol=1e-5)


def _k_reciprocal_reference(points: np.ndarray, k1: int, k2: int, lam: float) -> np.ndarray:
    """Zhong et al. 2017, written out plainly: distances from point 0 to the others."""
    n = len(points)
    dist = np.array([[np.linalg.norm(a - b) for b in points] for a in points])
    dist = dist / dist.max(axis=1, keepdims=True)
    rank = [list(np.argsort(row, kind="stable")) for row in dist]

    def r(i, k):
        return [j for j in rank[i][: k + 1] if i in rank[j][: k + 1]]

    v = np.zeros((n, n))
    for i in range(n):
        members = set(r(i, k1))
        for c in list(members):
            theirs = r(c, int(round(k1 / 2)))
            if len(set(theirs) & members) > 2 / 3 * len(theirs):
                members |= set(theirs)
        members = sorted(members)
        w = np.exp(-dist[i, members])
        v[i, members] = w / w.sum()
    v = np.array([v[rank[i][:k2]].mean(axis=0) for i in range(n)])
    out = []
    for j in range(1, n):
        shared = np.minimum(v[0], v[j]).sum()
        out.append((1 - lam) * (1 - shared / (2 - shared)) + lam * dist[0, j])
    return np.array(out)


def test_k_reciprocal_reranking_follows_the_paper():
    rng = np.random.default_rng(3)
    cluster = rng.normal([0, 0], 0.3, (6, 2))  # the query's own cluster
    other = rng.normal([2.2, 0], 0.3, (6, 2))  # a denser cluster near the query
    entries = np.vstack([cluster[1:], other])
    query = cluster[:1]
    d, i = Reranker("k-reciprocal:k1=4,k2=2,lambda=0.3").search(_collection("l2", entries), query, len(entries))
    expected = _k_reciprocal_reference(np.vstack([query, entries]), 4, 2, 0.3)
    np.testing.assert_allclose(d[0], np.sort(expected), atol=1e-6)
    assert i[0].tolist() == np.argsort(expected, kind="stable").tolist()
    d, i = Reranker("k-reciprocal:k1=4,k2=2,lambda=1").search(_collection("l2", entries), query, len(entries))
    plain = np.linalg.norm(entries - query, axis=1)
    assert i[0].tolist() == np.argsort(plain).tolist()  # lambda 1: the original order


@pytest.mark.parametrize("spec", ["aqe:k=3", "alpha-qe:k=5", "dba:k=2", "k-reciprocal:k1=5,k2=2", "dba:k=2+alpha-qe:k=3"])
def test_reranking_never_lets_a_removed_entry_back_in(digits, tmp_path, spec):
    path = tmp_path / "ix"
    build_index(digits / "train", "pixels", path, workers=1, factory="HNSW16").close()
    remove_images([digits / "train" / "3"], path)
    with open_index(path) as index:
        assert index.tombstones > 0
        removed = {row[0] for row in index.rows("tombstones")}
        for image in sorted((digits / "train" / "3").iterdir())[:5]:
            found = {n.id for n in index.query(image, k=30, rerank=spec).neighbors}
            assert not found & removed and len(found) == 30


def test_bad_rerank_specs_are_one_line():
    for spec, message in [("foo", "unknown re-ranking 'foo'"), ("aqe:q=3", "bad option 'q=3'"), ("aqe:k=0", "k must be at least 1"),
                          ("k-reciprocal:lambda=2", "lambda must be between 0 and 1"), ("dba+dba", "dba can be applied once")]:
        with pytest.raises(VisretError, match=message):
            parse_rerank(spec)
    assert parse_rerank("alpha-qe:k=4,depth=50")[1] == 50


def test_query_expansion_improves_retrieval_on_real_digits(digits):
    extractor = visret.get_extractor("post", extractor={"name": "hog", "params": {"size": 32, "pixels_per_cell": 4}}, steps=["l2"])
    from visret.images._folders import scan_folder
    from visret.embedding._extraction import extract_records

    def embed(folder):
        records = scan_folder(folder)
        return extract_records(extractor, records, workers=1).features, [r.label for r in records]

    X, y = embed(digits / "train")
    Xq, yq = embed(digits / "test")
    plain = evaluate_features(X, y, Xq, yq, metric="cosine")
    expanded = evaluate_features(X, y, Xq, yq, metric="cosine", rerank="alpha-qe:k=3")
    assert expanded.rerank == "alpha-qe:k=3" and expanded.map > plain.map


# ---- supervised post-processing ---------------------------------------------------------------
def noise_folder(root: Path, classes: int = 4, per_class: int = 12, seed: int = 0) -> Path:
    """Pure noise with arbitrary labels: no feature can tell the classes apart."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(root / f"c{c}" / f"{i}.png")
    return root


LDA = {"extractor": {"name": "pixels", "params": {"size": 12}}, "steps": ["standardize", "lda:0.01", "l2"]}


def test_leave_one_out_of_a_supervised_index_never_fits_on_its_queries(tmp_path):
    data = noise_folder(tmp_path / "noise")
    with build_index(data, "post", tmp_path / "ix", params=LDA, workers=1) as index:
        ids, labels = index.labelled_ids()
        leaky = evaluate_features(index.vectors(ids), labels)  # the index's own vectors: fitted on every query
        honest = evaluate_knn(index=index)
    assert leaky.accuracy > 0.9  # LDA fitted on 48 noise images in 144 dimensions separates their labels
    assert honest.accuracy < 0.5 and honest.supervised and "without the queries, in 5 folds" in honest.protocol  # chance: 0.25


def test_supervised_steps_learn_from_labels_and_beat_the_plain_features(digits):
    from visret.evaluation._comparison import compare

    hog = {"name": "hog", "params": {"size": 32, "pixels_per_cell": 8}}  # 324-d
    result = compare(digits / "train", [hog, {"name": "post", "params": {"extractor": hog, "steps": ["standardize", "lda", "l2"]}},
                                        {"name": "post", "params": {"extractor": hog, "steps": ["standardize", "learned-whiten:20", "l2"]}}],
                     protocol="kfold", folds=3, workers=1)
    plain, lda, whitened = result.reports.values()
    assert not plain.supervised and lda.supervised and whitened.supervised
    assert lda.map > plain.map + 0.05 and whitened.map > plain.map + 0.05
    rows = {row["extractor"]: row for row in result.rows()}
    assert [row["supervised"] for row in rows.values()] == [False, True, True]


def test_a_supervised_step_on_unlabelled_images_is_one_line(tmp_path, cli):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(6):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (12, 12), dtype=np.uint8)).save(flat / f"{i}.png")
    result = cli("index", flat, "-e", "post", "-p", 'extractor={"name":"pixels","params":{"size":12}}', "-p", "steps=lda", "--index", tmp_path / "ix")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: cannot fit extractor 'post': step lda learns from labels: index a labelled folder (one sub-folder per class)"


# ---- ranking depth, progress, recipes ------------------------------------------------------------
def test_a_ranking_cut_at_depth_reports_map_at_depth(digits_index):
    full = evaluate_knn(index=digits_index, at=(10,))
    seen = []
    cut = evaluate_knn(index=digits_index, at=(10,), depth=10, progress=lambda done, total: seen.append((done, total)))
    assert cut.depth == 10 and cut.ranking == "top-10" and full.ranking == "full"
    assert cut.map == pytest.approx(full.map_at[10]) and cut.accuracy == full.accuracy
    assert seen[-1] == (150, 150) and seen[0] == (0, 150)
    assert "top-10 ranking" in cut.to_markdown()


def test_a_recipe_round_trips_into_an_index(digits, tmp_path, cli):
    recipe = Recipe({"name": "color-hist", "params": {"bins": [4, 4, 4]}}, metric="cosine", rerank="aqe:k=2", scores={"validation_map": 0.5})
    path = recipe.save(tmp_path / "recipe.json")
    assert read_recipe(path) == recipe
    built = cli("index", digits / "test", "--recipe", path, "--index", tmp_path / "ix", "--workers", "1")
    assert built.exit_code == 0, built.stderr
    with open_index(tmp_path / "ix") as index:
        assert index.manifest["extractor"]["params"]["bins"] == [4, 4, 4]
        assert index.metric == "cosine" and index.rerank == "aqe:k=2"
    with build_index(digits / "test", index=tmp_path / "api", workers=1, **read_recipe(path).index_options()) as index:
        assert index.rerank == "aqe:k=2"
    both = cli("index", digits / "test", "--recipe", path, "-e", "hog", "--index", tmp_path / "ix2")
    assert both.exit_code == 1 and "pass none of --extractor" in both.stderr
    (tmp_path / "bad.json").write_text(json.dumps({"extractor": {"name": "nope"}}))
    bad = cli("index", digits / "test", "--recipe", tmp_path / "bad.json", "--index", tmp_path / "ix3")
    assert bad.exit_code == 1 and "unknown extractor 'nope'" in bad.stderr


@pytest.mark.parametrize("metric", ["l2", "cosine", "l1"])
def test_a_full_ranking_matches_a_reference_sort_with_ties_by_id(metric):
    """Ranking the whole collection (leave-one-out's default) takes another path than a short
    list: the same distances, ordered by distance then id, over shards whose ids are not in row order."""
    from visret.index._search import ExactSearch

    rng = np.random.default_rng(4)
    vectors = rng.integers(0, 3, (60, 4)).astype(np.float32) + 0.5  # few distinct values: many ties
    distance = get_distance(metric)
    stored = distance.prepare(vectors)
    ids = rng.permutation(1000)[:60].astype(np.int64)
    search = ExactSearch([stored[:25], stored[25:]], ids, distance)
    queries = stored[:7]
    full_d, full_i = search.search(queries, 60)
    short_d, short_i = search.search(queries, 5)
    assert np.allclose(full_d[:, :5], short_d, atol=1e-5)
    reference = distance.readable(faiss.pairwise_distances(queries, stored, distance.faiss_metric))
    row_of = {i: r for r, i in enumerate(ids.tolist())}
    for q in range(len(queries)):
        assert sorted(full_i[q].tolist()) == sorted(ids.tolist())
        assert np.all(np.diff(full_d[q]) >= 0)
        assert np.allclose(full_d[q], reference[q][[row_of[i] for i in full_i[q].tolist()]], atol=1e-5)
        if metric != "cosine":  # exact arithmetic on these values: ties are exact, and go by id
            assert np.array_equal(full_i[q], ids[np.lexsort((ids, reference[q]))])
