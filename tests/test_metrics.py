import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ume.evaluate.metrics import METRIC_KEYS, chance, mean_metrics, query_metrics, rank

P = ["d1", "d9", "d2", "d3"]
L = ["d1", "d2", "d3"]


def test_spec_test_vector_graded():
    m = query_metrics(P, L, [2, 1, 1])
    expected = {"hit@5": 1, "precision@5": 0.6, "recall@5": 1.0, "f1@5": 0.75, "map@5": 0.8056, "mrr@5": 1,
                "ndcg_linear@5": 0.9360, "ndcg_exponential@5": 0.9515, "precision@1": 1, "recall@1": 0.3333,
                "f1@1": 0.5, "ndcg_linear@1": 1.0, "precision@10": 0.3, "f1@10": 0.4615}
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, abs=5e-5), key


def test_spec_test_vector_binary():
    m = query_metrics(P, L)
    assert m["ndcg_linear@5"] == pytest.approx(0.9060, abs=5e-5)
    assert m["ndcg_exponential@5"] == m["ndcg_linear@5"]


def test_graded_alignment_is_by_id_not_by_set_order():
    """The reference's bug pairs set(labels) with grades in list order; ours keys grades by id."""
    a = query_metrics(["x", "y"], ["y", "x"], [1, 3])
    b = query_metrics(["x", "y"], ["x", "y"], [3, 1])
    assert a == b
    assert a["ndcg_linear@5"] == pytest.approx(1.0)
    worse = query_metrics(["y", "x"], ["x", "y"], [3, 1])["ndcg_linear@5"]
    assert worse == pytest.approx((1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3)))


def test_duplicate_pairs_take_max_and_non_positive_grades_are_irrelevant():
    m = query_metrics(["a", "b"], ["a", "a", "b"], [1, 2, 0])
    assert m["recall@1"] == 1.0  # only "a" is relevant (b has grade 0)
    assert m["ndcg_linear@1"] == 1.0


def test_edge_cases():
    empty = query_metrics(["a", "b"], [])
    assert empty["hit@1"] == 0 and empty["recall@5"] == 1.0 and empty["ndcg_linear@5"] == 0.0
    assert empty["map@5"] == 0.0 and empty["f1@5"] == pytest.approx(0.0)
    short = query_metrics(["yes", "no"], ["no"])  # ActivityNetQA: 2 candidates, precision still / k
    assert short["precision@5"] == pytest.approx(0.2) and short["mrr@5"] == 0.5 and short["hit@1"] == 0


def test_rank_is_stable_on_ties():
    assert rank(np.array([0.5, 0.9, 0.5, 0.9]), ["a", "b", "c", "d"]) == ["b", "d", "a", "c"]


NEAR = 0.5 + 1e-9  # closer than SCORE_DECIMALS: float noise
TIED = np.array([0.5, NEAR, 0.9, 0.5, 0.9, 0.5, 0.1, NEAR, 0.5, 0.9, 0.5, 0.5], dtype=np.float32)
LETTERS = list("abcdefghijkl")


def test_ume_ties_round_near_ties_and_keep_list_order():
    for scores in (TIED, TIED.astype(np.float64)):
        assert rank(scores, LETTERS) == ["c", "e", "j", "a", "b", "d", "f", "h", "i", "k", "l", "g"]
        assert rank(scores, LETTERS, ties="ume") == rank(scores, LETTERS)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reference_ties_are_numpys_default_argsort_on_raw_scores(dtype):
    scores = TIED.astype(dtype)
    assert rank(scores, LETTERS, ties="reference") == [LETTERS[i] for i in np.argsort(-scores)]
    scores = np.array([0.5, NEAR, 0.9, 0.5], dtype=np.float64)  # a near-tie is ordered by its noise
    assert rank(scores, list("abcd"), ties="reference")[:2] == ["c", "b"]
    assert rank(scores, list("abcd")) == ["c", "a", "b", "d"]


def test_reference_rows_equal_the_reference_matrix_argsort():
    """Global tasks: the reference sorts the whole score matrix (axis=1); row by row gives the same order."""
    scores = np.random.default_rng(0).integers(0, 4, size=(20, 300)).astype(np.float32) / 4  # many ties
    names = [f"c{i}" for i in range(300)]
    full = np.argsort(-scores, axis=1)
    assert all(rank(row, names, ties="reference") == [names[i] for i in full[q]] for q, row in enumerate(scores))


def test_rank_rejects_unknown_tie_modes():
    with pytest.raises(ValueError, match="ties"):
        rank(np.array([1.0]), ["a"], ties="random")  # type: ignore[arg-type]


def test_mean_metrics_has_the_26_reference_keys():
    m = mean_metrics([query_metrics(P, L), query_metrics(["z"], ["q"])])
    assert len(m) == 26 and set(METRIC_KEYS) <= set(m) and m["num_pred"] == 2 == m["num_data"]
    assert m["hit@1"] == 0.5


names = st.lists(st.sampled_from([f"d{i}" for i in range(12)]), min_size=1, max_size=12, unique=True)


@given(pred=names, labels=st.lists(st.sampled_from([f"d{i}" for i in range(12)]), min_size=1, max_size=5))
def test_metric_properties(pred, labels):
    m = query_metrics(pred, labels)
    for key in METRIC_KEYS:
        assert 0.0 <= m[key] <= 1.0 + 1e-9, key
    for name in ("hit", "recall", "mrr"):  # cumulative metrics never fall as k grows (NDCG can)
        assert m[f"{name}@1"] <= m[f"{name}@5"] + 1e-12 <= m[f"{name}@10"] + 2e-12
    assert m["hit@1"] == (1.0 if pred[0] in set(labels) else 0.0)
    assert m["mrr@10"] == pytest.approx(next((1 / i for i, d in enumerate(pred[:10], 1) if d in set(labels)), 0.0))


@given(pred=names, grades=st.lists(st.integers(0, 3), min_size=12, max_size=12))
def test_perfect_ranking_scores_one(pred, grades):
    labels = [f"d{i}" for i in range(12)]
    relevant = {lab: g for lab, g in zip(labels, grades, strict=True) if g > 0}
    if not relevant:
        return
    ideal = sorted(relevant, key=lambda d: -relevant[d]) + [d for d in labels if d not in relevant]
    m = query_metrics(ideal, labels, grades)
    assert m["ndcg_linear@10"] == pytest.approx(1.0) and m["ndcg_exponential@5"] == pytest.approx(1.0)
    shuffled = query_metrics(pred + [d for d in labels if d not in pred], labels, grades)
    assert shuffled["ndcg_linear@10"] <= 1.0 + 1e-9


@pytest.mark.parametrize(("cands", "labels", "grades"), [
    (list("abcde"), ["c"], None),
    (list("abcdef"), ["a", "f"], None),
    (list("abc"), ["b"], None),  # fewer candidates than k = 5
    (list("abcdef"), ["b", "d", "e", "b"], [3, 1, 0, 2]),  # graded, a 0 grade, a duplicate
])
@pytest.mark.parametrize("metric", ["hit@1", "hit@5", "ndcg_linear@5", "ndcg_exponential@5"])
def test_chance_is_the_mean_over_every_ordering(cands, labels, grades, metric):
    """The closed form equals the metric averaged over all n! rankings (exhaustive, not sampled)."""
    scores = [query_metrics(list(p), labels, grades)[metric] for p in itertools.permutations(cands)]
    assert chance(metric, cands, labels, grades) == pytest.approx(float(np.mean(scores)), abs=1e-12)


def test_chance_rejects_metrics_without_a_closed_form():
    with pytest.raises(ValueError, match="map@5"):
        chance("map@5", list("abc"), ["a"])
