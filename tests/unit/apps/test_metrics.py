"""Ranking metrics: hand-computed cases, properties, bad inputs, and agreement with ranx."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from matinee.apps.recs import metrics as module_under_test
from matinee.apps.recs.metrics import (
    catalogue_coverage,
    hit_rate_at_k,
    hits,
    map_at_k,
    mean_popularity,
    mrr,
    ndcg_at_k,
    novelty,
    precision_at_k,
    recall_at_k,
)
from matinee.errors import ParameterError

RANKING = {
    "ndcg": ndcg_at_k,
    "recall": recall_at_k,
    "precision": precision_at_k,
    "map": map_at_k,
    "mrr": mrr,
    "hit_rate": hit_rate_at_k,
}

L2, L3, L4 = math.log2(2), math.log2(3), math.log2(4)


def relevance(rows: list[list[int]], n_items: int = 6) -> sp.csr_matrix:
    dense = np.zeros((len(rows), n_items))
    for u, items in enumerate(rows):
        dense[u, items] = 1
    return sp.csr_matrix(dense)


# One user per case: recommended list, relevant items, k, and every metric worked out by hand.
CASES = [
    pytest.param([1, 3, 2], [1, 2], None,
                 {"ndcg": (1 / L2 + 1 / L4) / (1 / L2 + 1 / L3), "recall": 1.0, "precision": 2 / 3,
                  "map": (1 + 2 / 3) / 2, "mrr": 1.0, "hit_rate": 1.0}, id="hits at 1 and 3"),
    pytest.param([1, 3, 2], [1, 2], 2,
                 {"ndcg": (1 / L2) / (1 / L2 + 1 / L3), "recall": 0.5, "precision": 0.5,
                  "map": 1 / 2, "mrr": 1.0, "hit_rate": 1.0}, id="cut at k=2"),
    pytest.param([0, 4, 5, 2], [2], None,
                 {"ndcg": (1 / math.log2(5)) / 1, "recall": 1.0, "precision": 0.25,
                  "map": 1 / 4, "mrr": 0.25, "hit_rate": 1.0}, id="one hit at 4"),
    pytest.param([0, 1], [2, 3, 4, 5], None,
                 {"ndcg": 0.0, "recall": 0.0, "precision": 0.0, "map": 0.0, "mrr": 0.0,
                  "hit_rate": 0.0}, id="no hit"),
    pytest.param([5, 4, 3], [3, 4, 5, 0, 1], None,
                 {"ndcg": 1.0, "recall": 3 / 5, "precision": 1.0, "map": 1.0, "mrr": 1.0,
                  "hit_rate": 1.0}, id="perfect, more relevant than k"),
    pytest.param([0, 2, 4, 1], [1, 2, 3], None,
                 {"ndcg": (1 / L3 + 1 / math.log2(5)) / (1 / L2 + 1 / L3 + 1 / L4), "recall": 2 / 3,
                  "precision": 0.5, "map": (1 / 2 + 2 / 4) / 3, "mrr": 0.5, "hit_rate": 1.0},
                 id="hits at 2 and 4"),
    pytest.param([3, -1, -1], [3, 1], None,
                 {"ndcg": 1 / (1 + 1 / L3), "recall": 0.5, "precision": 1 / 3, "map": 1 / 2,
                  "mrr": 1.0, "hit_rate": 1.0}, id="padding counts as a miss"),
    pytest.param([-1, -1], [0], None,
                 {"ndcg": 0.0, "recall": 0.0, "precision": 0.0, "map": 0.0, "mrr": 0.0,
                  "hit_rate": 0.0}, id="all padding"),
    pytest.param([0, 1, 2], [], None,
                 {"ndcg": 0.0, "recall": 0.0, "precision": 0.0, "map": 0.0, "mrr": 0.0,
                  "hit_rate": 0.0}, id="nothing relevant"),
]


@pytest.mark.parametrize(("recommended", "relevant", "k", "expected"), CASES)
def test_hand_computed_cases(recommended, relevant, k, expected):
    rec = np.array([recommended])
    rel = relevance([relevant])
    for name, metric in RANKING.items():
        assert metric(rec, rel, k) == pytest.approx([expected[name]], abs=1e-12), name


def test_rows_are_users_and_are_scored_independently():
    cases = [c for c in CASES if len(c.values[0]) == 3 and c.values[2] is None]
    rec = np.array([c.values[0] for c in cases])
    rel = relevance([c.values[1] for c in cases])
    assert len(cases) >= 4
    for name, metric in RANKING.items():
        expected = [c.values[3][name] for c in cases]
        assert metric(rec, rel) == pytest.approx(expected, abs=1e-12), name


def test_relevance_is_binary_and_ignores_stored_zeros():
    rel = sp.csr_matrix((np.array([5.0, 0.0, 2.0]), (np.array([0, 0, 0]), np.array([1, 2, 3]))), shape=(1, 6))
    assert recall_at_k(np.array([[1, 2, 3]]), rel).tolist() == [1.0]
    assert ndcg_at_k(np.array([[2, 1, 3]]), rel) == pytest.approx([(1 / L3 + 1 / L4) / (1 + 1 / L3)])
    hit, n_relevant = hits(np.array([[1, 2, 3]]), rel)
    assert hit.tolist() == [[True, False, True]] and n_relevant.tolist() == [2]


def test_any_sparse_format_is_accepted():
    rel = relevance([[1, 2]])
    for form in (rel.tocoo(), rel.tocsc(), sp.lil_matrix(rel)):
        assert ndcg_at_k(np.array([[1, 3, 2]]), form) == pytest.approx(ndcg_at_k(np.array([[1, 3, 2]]), rel))


def test_empty_relevance_matrix():
    rel = sp.csr_matrix((2, 6))
    assert ndcg_at_k(np.array([[0, 1], [2, 3]]), rel).tolist() == [0.0, 0.0]


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_perfect_lists_score_one(data):
    n_items = data.draw(st.integers(1, 30))
    relevant = data.draw(st.lists(st.integers(0, n_items - 1), min_size=1, unique=True))
    k = data.draw(st.integers(1, n_items))
    others = [i for i in range(n_items) if i not in relevant]
    rec = np.array([(relevant + others)[:k]])
    rel = relevance([relevant], n_items)
    assert ndcg_at_k(rec, rel)[0] == pytest.approx(1.0)
    assert map_at_k(rec, rel)[0] == pytest.approx(1.0)
    assert recall_at_k(rec, rel)[0] == pytest.approx(min(k, len(relevant)) / len(relevant))
    assert precision_at_k(rec, rel)[0] == pytest.approx(min(k, len(relevant)) / k)
    assert mrr(rec, rel)[0] == 1.0


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_values_lie_in_unit_interval_and_grow_with_k(data):
    n_items = data.draw(st.integers(2, 25))
    seed = data.draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    rec = np.stack([rng.permutation(n_items) for _ in range(5)])
    rel = sp.csr_matrix(rng.random((5, n_items)) < 0.3)
    for name, metric in RANKING.items():
        for k in range(1, n_items + 1):
            values = metric(rec, rel, k)
            assert ((values >= 0) & (values <= 1 + 1e-12)).all(), name
    for metric in (recall_at_k, hit_rate_at_k, mrr):
        growing = np.stack([metric(rec, rel, k) for k in range(1, n_items + 1)])
        assert (np.diff(growing, axis=0) >= -1e-12).all()


def test_catalogue_coverage_mean_popularity_and_novelty():
    rec = np.array([[0, 1, 2], [1, 3, -1], [-1, -1, -1]])
    assert catalogue_coverage(rec, n_items=8) == 4 / 8
    assert catalogue_coverage(rec, n_items=8, k=1) == 2 / 8
    popularity = np.array([8, 4, 2, 0, 1, 1, 1, 1])
    assert mean_popularity(rec, popularity)[:2].tolist() == [14 / 3, 2.0]
    assert math.isnan(mean_popularity(rec, popularity)[2])
    # shares 8/8, 4/8, 2/8 -> 0, 1, 2 bits; item 3 (never seen) counts as 1/8 -> 3 bits
    values = novelty(rec, popularity, n_users=8)
    assert values[:2].tolist() == [1.0, 2.0] and math.isnan(values[2])
    assert novelty(rec, popularity, n_users=8, k=1)[:2].tolist() == [0.0, 1.0]


BAD = [
    (lambda: ndcg_at_k(np.array([0, 1]), relevance([[0]])), "2-d integer array", "recommended"),
    (lambda: ndcg_at_k(np.array([[0.5, 1.0]]), relevance([[0]])), "2-d integer array", "recommended"),
    (lambda: ndcg_at_k(np.array([[0, 1]]), np.ones((1, 6))), "scipy sparse", "relevant"),
    (lambda: ndcg_at_k(np.array([[0, 1], [1, 2]]), relevance([[0]])), "2 rows but relevant has 1", "recommended"),
    (lambda: ndcg_at_k(np.array([[0, 6]]), relevance([[0]])), "outside 0..5", "recommended"),
    (lambda: ndcg_at_k(np.array([[0, -2]]), relevance([[0]])), "outside 0..5", "recommended"),
    (lambda: ndcg_at_k(np.array([[0, 1], [2, 2]]), relevance([[0], [1]])), "repeats an item in row 1",
     "recommended"),
    (lambda: recall_at_k(np.array([[0, 1]]), relevance([[0]]), k=0), "k must be a positive", "k"),
    (lambda: recall_at_k(np.array([[0, 1]]), relevance([[0]]), k=True), "k must be a positive", "k"),
    (lambda: catalogue_coverage(np.array([[0, 1]]), n_items=0), "n_items must be", "n_items"),
    (lambda: catalogue_coverage(np.array([[0, 9]]), n_items=5), "outside 0..4", "recommended"),
    (lambda: mean_popularity(np.array([[0, 1]]), np.array([1, -1])), "non-negative", "popularity"),
    (lambda: mean_popularity(np.array([[0, 2]]), np.array([1, 1])), "outside 0..1", "recommended"),
    (lambda: novelty(np.array([[0, 1]]), np.array([1, 2]), n_users=0), "n_users must be", "n_users"),
    (lambda: novelty(np.array([[0, 1]]), np.array([1, 5]), n_users=4), "exceeds n_users", "popularity"),
]


@pytest.mark.parametrize(("call", "message", "parameter"), BAD)
def test_bad_inputs_name_the_argument(call, message, parameter):
    with pytest.raises(ParameterError, match=message) as info:
        call()
    assert info.value.parameter == parameter


# -- agreement with an independent implementation ------------------------------------------
def random_case(seed: int, n_users: int = 300, n_items: int = 60, width: int = 25):
    """Random relevance (1..20 items per user) and random lists, some of them padded."""
    rng = np.random.default_rng(seed)
    relevant = [rng.choice(n_items, size=rng.integers(1, 21), replace=False) for _ in range(n_users)]
    rec = np.full((n_users, width), -1, np.int64)
    for u in range(n_users):
        length = width if rng.random() < 0.8 else int(rng.integers(1, width))
        # bias the lists towards relevant items so that hits are common
        pool = np.concatenate([relevant[u], rng.permutation(n_items)])
        rec[u, :length] = list(dict.fromkeys(pool[rng.permutation(len(pool))].tolist()))[:length]
    rows = np.repeat(np.arange(n_users), [len(r) for r in relevant])
    rel = sp.csr_matrix((np.ones(len(rows)), (rows, np.concatenate(relevant))), shape=(n_users, n_items))
    return rec, rel, relevant


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 3, 10, 25])
def test_agrees_with_ranx(seed, k):
    ranx = pytest.importorskip("ranx", reason="ranx is the reference implementation (pip install ranx)")
    rec, rel, relevant = random_case(seed)
    # ranx reports queries in sorted id order: zero-padded ids keep it the row order
    qrels = ranx.Qrels({f"u{u:05d}": {f"i{i}": 1 for i in items} for u, items in enumerate(relevant)})
    run = ranx.Run({f"u{u:05d}": {f"i{i}": float(len(row) - r) for r, i in enumerate(row) if i >= 0}
                    for u, row in enumerate(rec.tolist())})
    names = {"ndcg": f"ndcg@{k}", "recall": f"recall@{k}", "precision": f"precision@{k}",
             "map": f"map@{k}", "mrr": f"mrr@{k}", "hit_rate": f"hit_rate@{k}"}
    theirs = ranx.evaluate(qrels, run, list(names.values()), return_mean=False, make_comparable=True)
    n_relevant = np.array([len(r) for r in relevant])
    for name, metric in RANKING.items():
        expected = np.asarray(theirs[names[name]], dtype=np.float64)
        if name == "map":
            # ranx divides average precision by all relevant items; the top-k convention
            # here divides by the most a list of k can hold, min(k, R).
            expected = expected * n_relevant / np.minimum(k, n_relevant)
        np.testing.assert_allclose(metric(rec, rel, k), expected, rtol=0, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("seed", [3, 4])
def test_agrees_with_a_plain_loop(seed):
    """The definitions written out per user, as in a textbook."""
    rec, rel, relevant = random_case(seed, n_users=80)
    for k in (1, 5, 25):
        for u in range(len(relevant)):
            row = rec[u, :k].tolist()
            rel_set = set(relevant[u].tolist())
            gains = [1.0 if i in rel_set else 0.0 for i in row]
            dcg = sum(g / math.log2(r + 2) for r, g in enumerate(gains))
            idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(rel_set))))
            n_hits = sum(gains)
            ap = sum(sum(gains[: r + 1]) / (r + 1) for r, g in enumerate(gains) if g) / min(k, len(rel_set))
            rr = next((1 / (r + 1) for r, g in enumerate(gains) if g), 0.0)
            expected = {"ndcg": dcg / idcg, "recall": n_hits / len(rel_set), "precision": n_hits / k,
                        "map": ap, "mrr": rr, "hit_rate": float(n_hits > 0)}
            for name, metric in RANKING.items():
                assert metric(rec[u:u + 1], rel[u], k)[0] == pytest.approx(expected[name], abs=1e-12)


def test_docstring_examples_run():
    result = doctest.testmod(module_under_test, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
