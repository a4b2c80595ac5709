"""Recommender models: the shared conformance suite for each, hand-computed cases, ``implicit`` parity, real data."""

from __future__ import annotations

import doctest
import importlib
import io
import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from matinee.apps.recs import Interactions, RecommenderBase
from matinee.apps.recs.models import ALS, BPR, EASE, ItemKNN, MostPopular, RP3beta
from matinee.apps.recs.models import ease as ease_module
from matinee.errors import ParameterError
from matinee.testing import check_recommender, recommender_checks, sample_interactions
from matinee.testing.recommenders import (
    check_fit_does_not_mutate_input,
    check_init_stores_only_hyperparameters,
)

MOVIELENS = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ml-latest-small"

MODELS: dict[str, Callable[[], RecommenderBase]] = {
    "MostPopular": MostPopular,
    "ItemKNN": lambda: ItemKNN(neighbors=10, shrink=2.0),
    "ItemKNN-dot": lambda: ItemKNN(neighbors=5, normalize=False),
    "RP3beta": lambda: RP3beta(alpha=0.8, beta=0.3, neighbors=10),
    "EASE": lambda: EASE(l2=10.0),
    "ALS": lambda: ALS(factors=8, iterations=5, random_state=0),
    "BPR": lambda: BPR(factors=8, iterations=20, random_state=0),
}


def frame_of(dense: np.ndarray, users: list[Any] | None = None, items: list[Any] | None = None) -> Interactions:
    """Interactions holding ``dense`` (users x items weights; zeros are no interaction)."""
    rows, cols = np.nonzero(dense)
    user_ids = users if users is not None else list(range(dense.shape[0]))
    item_ids = items if items is not None else list(range(dense.shape[1]))
    return Interactions.from_frame(pd.DataFrame({
        "user_id": [user_ids[r] for r in rows],
        "item_id": [item_ids[c] for c in cols],
        "weight": dense[rows, cols].astype(float),
    }), weight_col="weight", time_col=None)


# -- conformance -------------------------------------------------------------------------------------


@pytest.mark.parametrize("check", recommender_checks(), ids=lambda check: check.__name__)
@pytest.mark.parametrize("make_model", MODELS.values(), ids=MODELS.keys())
def test_conformance(make_model, check):
    check(make_model)


@pytest.mark.parametrize("make_model", MODELS.values(), ids=MODELS.keys())
def test_one_member_at_a_time_matches_the_batch(make_model):
    """A served request asks for one member (a fast path); the answer is that member's row of a batch."""
    data = sample_interactions(seed=3)
    model = make_model().fit(data)
    users = list(data.user_ids[:12])
    batch = model.recommend(users, 5, exclude_seen=True)
    for row, user in enumerate(users):
        one = model.recommend([user], 5, exclude_seen=True)
        assert np.asarray(one.items)[0].tolist() == np.asarray(batch.items)[row].tolist(), user
        np.testing.assert_allclose(np.asarray(one.scores)[0], np.asarray(batch.scores)[row], rtol=1e-6)


@pytest.mark.parametrize("model", [MostPopular, ItemKNN, RP3beta, EASE, ALS, BPR])
def test_every_model_with_its_defaults_passes_the_whole_suite(model):
    check_recommender(model)


def test_the_suite_catches_init_that_does_more_than_store():
    class Caching(MostPopular):
        def __init__(self) -> None:
            self.cache: dict[str, int] = {}

    with pytest.raises(AssertionError, match=r"Caching: __init__ stored \['cache'\]"):
        check_init_stores_only_hyperparameters(Caching)


def test_the_suite_catches_fit_that_mutates_its_input():
    class Doubling(MostPopular):
        def _fit(self, matrix):
            matrix.data *= 2

    with pytest.raises(AssertionError, match="Doubling: fit changed its input"):
        check_fit_does_not_mutate_input(Doubling)


def test_the_suite_catches_a_model_that_ignores_exclude_seen():
    class Forgetful(MostPopular):
        def recommend_index(self, users, k, *, exclude_seen=True, candidates=None):
            return super().recommend_index(users, k, exclude_seen=False, candidates=candidates)

    with pytest.raises(AssertionError, match="Forgetful"):
        check_recommender(Forgetful)


@pytest.mark.parametrize("module", ["popularity", "knn", "graph", "ease", "factorization"])
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(f"matinee.apps.recs.models.{module}"))
    assert result.attempted and not result.failed


def test_conformance_docstring_examples_run():
    for name in ("matinee.testing", "matinee.testing.recommenders"):
        result = doctest.testmod(importlib.import_module(name))
        assert result.attempted and not result.failed


# -- bad hyperparameters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "parameter", "value", "message"),
    [
        (ItemKNN, "neighbors", 0, "ItemKNN: neighbors must be a whole number >= 1, not 0"),
        (ItemKNN, "neighbors", 2.5, "neighbors must be a whole number"),
        (ItemKNN, "shrink", -1, "ItemKNN: shrink must be a finite number >= 0, not -1"),
        (ItemKNN, "normalize", "yes", "normalize must be True or False"),
        (RP3beta, "alpha", 0, "RP3beta: alpha must be a finite number > 0, not 0"),
        (RP3beta, "beta", -0.5, "beta must be a finite number >= 0"),
        (RP3beta, "neighbors", True, "neighbors must be a whole number"),
        (EASE, "l2", 0, "EASE: l2 must be a finite number > 0, not 0"),
        (EASE, "l2", math.nan, "l2 must be a finite number > 0"),
        (EASE, "max_items", -3, "max_items must be a whole number >= 1"),
        (ALS, "factors", 0, "ALS: factors must be a whole number >= 1"),
        (ALS, "regularization", -0.1, "regularization must be a finite number >= 0"),
        (ALS, "alpha", 0.0, "alpha must be a finite number > 0"),
        (ALS, "iterations", 0, "iterations must be a whole number >= 1"),
        (ALS, "random_state", -1, "random_state must be None, a whole number >= 0 or a numpy Generator"),
        (ALS, "random_state", 1.5, "random_state must be None"),
        (ALS, "num_threads", -1, "num_threads must be a whole number >= 0"),
        (BPR, "learning_rate", 0, "BPR: learning_rate must be a finite number > 0"),
        (BPR, "factors", "8", "factors must be a whole number"),
    ],
)
def test_bad_hyperparameters_are_named_at_fit(model, parameter, value, message):
    unfitted = model(**{parameter: value})  # __init__ only stores
    with pytest.raises(ParameterError, match=message) as raised:
        unfitted.fit(sample_interactions())
    assert raised.value.parameter == parameter
    assert not unfitted.is_fitted


# -- MostPopular -------------------------------------------------------------------------------------


def test_most_popular_counts_users_not_weights_and_breaks_ties_by_id_order():
    log = pd.DataFrame({
        "user_id": ["a", "b", "c", "a", "b", "c", "d", "a"],
        "item_id": ["x", "x", "x", "z", "z", "y", "y", "w"],
        "weight": [1, 1, 1, 1, 1, 9, 1, 1],
    })
    model = MostPopular().fit(Interactions.from_frame(log, weight_col="weight", time_col=None))
    everyone = model.recommend(["nobody"], k=4)
    assert everyone.items.tolist() == [["x", "y", "z", "w"]]  # y and z tie on 2 users: y sorts first
    assert everyone.scores.tolist() == [[3.0, 2.0, 2.0, 1.0]]
    assert model.recommend(["nobody"], k=2).items.tolist() == [["x", "y"]]  # the cut falls inside the tie
    assert model.recommend(["d"], k=3).items.tolist() == [["x", "z", "w"]]
    assert model.recommend(["a"], k=3).items.tolist() == [["y", None, None]]


# -- ItemKNN, computed by hand -----------------------------------------------------------------------

# users a..d x items 10..13:     i0  i1  i2  i3
HAND = np.array([[1, 1, 0, 0],  # a
                 [1, 1, 1, 0],  # b
                 [0, 1, 1, 1],  # c
                 [0, 0, 1, 1]])  # d
# column norms sqrt(2), sqrt(3), sqrt(3), sqrt(2); dot products i0.i1 = 2, i0.i2 = 1, i1.i2 = 2, i1.i3 = 1,
# i2.i3 = 2, i0.i3 = 0; with shrink 1 the cosine is dot / (|x||y| + 1):
R6 = 1 / (math.sqrt(6) + 1)
S01, S02, S12, S13, S23 = 2 * R6, R6, 2 / 4, R6, 2 * R6


def hand_data() -> Interactions:
    return frame_of(HAND, users=["a", "b", "c", "d"], items=[10, 11, 12, 13])


def test_item_knn_similarities_with_shrinkage_by_hand():
    model = ItemKNN(neighbors=3, shrink=1.0).fit(hand_data())
    expected = [[0, S01, S02, 0], [S01, 0, S12, S13], [S02, S12, 0, S23], [0, S13, S23, 0]]
    np.testing.assert_allclose(model.similarity_.toarray(), expected, rtol=1e-6)
    recs = model.recommend(["d"], k=2)  # d has 12 and 13: 11 scores s12 + s13, 10 scores s02 + s03
    assert recs.items.tolist() == [[11, 10]]
    np.testing.assert_allclose(recs.scores, [[S12 + S13, S02]], rtol=1e-6)


def test_item_knn_keeps_only_each_items_nearest_neighbours():
    model = ItemKNN(neighbors=2, shrink=1.0).fit(hand_data())
    # 10 keeps 11, 12; 11 keeps 10, 12; 12 keeps 13, 11; 13 keeps 12, 11
    expected = [[0, S01, S02, 0], [S01, 0, S12, 0], [0, S12, 0, S23], [0, S13, S23, 0]]
    np.testing.assert_allclose(model.similarity_.toarray(), expected, rtol=1e-6)
    # a score for j sums j's neighbours among the user's items
    d = model.recommend(["d"], k=2)
    assert d.items.tolist() == [[11, 10]]
    np.testing.assert_allclose(d.scores, [[S12, S02]], rtol=1e-6)
    a = model.recommend(["a"], k=2)
    assert a.items.tolist() == [[12, 13]]
    np.testing.assert_allclose(a.scores, [[S12, S13]], rtol=1e-6)
    assert model.similar_items([12], k=2).items.tolist() == [[13, 11]]


def test_item_knn_without_shrinkage_or_normalisation():
    plain = ItemKNN(neighbors=3, shrink=0.0).fit(hand_data())
    assert plain.similarity_[1, 2] == pytest.approx(2 / 3)
    dot = ItemKNN(neighbors=3, normalize=False).fit(hand_data())
    np.testing.assert_allclose(dot.similarity_.toarray(), [[0, 2, 1, 0], [2, 0, 2, 1], [1, 2, 0, 2], [0, 1, 2, 0]])
    np.testing.assert_allclose(dot.recommend(["d"], k=2).scores, [[3.0, 1.0]])


def test_item_knn_breaks_ties_at_the_cut_by_lower_index():
    # items 1, 2 and 3 are all equally similar to item 0
    dense = np.array([[1, 1, 1, 1], [1, 0, 0, 0]])
    model = ItemKNN(neighbors=2, shrink=0.0).fit(frame_of(dense))
    assert model.similarity_[0].indices.tolist() == [1, 2]


# -- EASE against its formula ------------------------------------------------------------------------


def ease_formula(x: np.ndarray, l2: float) -> np.ndarray:
    p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    return np.eye(x.shape[1]) - p @ np.diag(1 / np.diag(p))


@pytest.mark.parametrize(
    ("n_users", "n_items", "float64_max_dim"),
    [(40, 10, 8192), (12, 14, 8192), (7, 14, 8192), (6, 30, 8192), (40, 10, 4), (3, 30, 4)],
    ids=["primal", "primal-near", "dual-near", "dual", "primal-float32", "dual-large"],
)
def test_ease_equals_the_closed_form(n_users, n_items, float64_max_dim, monkeypatch):
    monkeypatch.setattr(ease_module, "FLOAT64_MAX_DIM", float64_max_dim)  # small: the large-catalogue routes
    rng = np.random.default_rng(n_users)
    dense = (rng.random((n_users, n_items)) < 0.4) * rng.integers(1, 4, (n_users, n_items))
    dense[0, :] = 1  # every item has an interaction
    model = EASE(l2=2.5).fit(frame_of(dense))
    expected = ease_formula(dense.astype(np.float64), 2.5)
    np.testing.assert_allclose(model.weights_, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    scores = model.recommend(list(range(n_users)), k=n_items, exclude_seen=False)
    ranked = np.take_along_axis(dense @ expected, np.argsort(-(dense @ expected), axis=1, kind="stable"), axis=1)
    np.testing.assert_allclose(scores.scores, ranked, rtol=1e-4, atol=1e-4)


def test_ease_leaves_items_without_training_interactions_out():
    rng = np.random.default_rng(5)
    dense = (rng.random((20, 8)) < 0.5).astype(float)
    dense[:, 3] = 0
    dense[0, 3] = 1
    full = frame_of(dense)
    train = full.subset(full.items != 3)  # item 3 stays in the id map with no interaction
    model = EASE(l2=1.0).fit(train)
    assert model.active_items_.tolist() == [0, 1, 2, 4, 5, 6, 7]
    kept = np.delete(dense, 3, axis=1)
    np.testing.assert_allclose(model.weights_, ease_formula(kept, 1.0), rtol=1e-4, atol=1e-6)
    everything = model.recommend([1], k=8, exclude_seen=False)
    assert everything.scores[0][everything.items[0].tolist().index(3)] == 0.0
    assert not model.similar_items([3], k=3).scores.any()


def test_ease_declines_a_catalogue_above_max_items():
    with pytest.raises(ParameterError, match=r"EASE: 24 items have training interactions, more than "
                                             r"max_items=20 .* raise max_items, or use ItemKNN") as raised:
        EASE(max_items=20).fit(sample_interactions())
    assert raised.value.parameter == "max_items"
    assert EASE(max_items=24).fit(sample_interactions()).weights_.shape == (24, 24)


# -- RP3beta against a plain numpy derivation --------------------------------------------------------


def rp3beta_numpy(x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        user_to_item = np.nan_to_num(x / x.sum(axis=1, keepdims=True)) ** alpha
        item_to_user = np.nan_to_num(x.T / x.T.sum(axis=1, keepdims=True)) ** alpha
        popularity = (x > 0).sum(axis=0).astype(float)
        damping = np.where(popularity > 0, popularity, 1.0) ** -beta
    walk = item_to_user @ user_to_item * damping[None, :]
    np.fill_diagonal(walk, 0.0)
    return walk


@pytest.mark.parametrize(("alpha", "beta"), [(1.0, 0.0), (0.7, 0.3), (0.5, 0.8)])
def test_rp3beta_equals_the_random_walk(alpha, beta):
    rng = np.random.default_rng(11)
    dense = (rng.random((25, 12)) < 0.35) * rng.integers(1, 4, (25, 12))
    dense[0, :] = 1
    model = RP3beta(alpha=alpha, beta=beta, neighbors=12).fit(frame_of(dense))
    expected = rp3beta_numpy(dense.astype(float), alpha, beta)
    np.testing.assert_allclose(model.weights_.toarray(), expected, rtol=1e-5, atol=1e-7)
    scores = model.recommend(list(range(25)), k=12, exclude_seen=False).scores
    np.testing.assert_allclose(scores, -np.sort(-(dense @ expected), axis=1), rtol=1e-5, atol=1e-6)


def test_rp3beta_keeps_each_items_strongest_targets():
    rng = np.random.default_rng(12)
    dense = (rng.random((30, 15)) < 0.3) * rng.integers(1, 4, (30, 15))
    dense[0, :] = 1
    pruned = RP3beta(alpha=0.9, beta=0.4, neighbors=4).fit(frame_of(dense)).weights_.toarray()
    full = rp3beta_numpy(dense.astype(float), 0.9, 0.4)
    for row, kept in zip(full, pruned, strict=True):
        strongest = np.lexsort((np.arange(len(row)), -row))[:4]
        np.testing.assert_allclose(kept[strongest], row[strongest], rtol=1e-5)
        assert np.count_nonzero(kept) == 4


# -- ALS and BPR are implicit's ----------------------------------------------------------------------


def parity_data() -> Interactions:
    rng = np.random.default_rng(3)
    dense = (rng.random((60, 40)) < 0.15) * rng.integers(1, 5, (60, 40))
    dense[:, 0] = 1
    return frame_of(dense)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("num_threads", [1, 0])
def test_als_equals_implicit_called_directly(num_threads):
    from implicit.cpu.als import AlternatingLeastSquares

    data = parity_data()
    settings = dict(factors=12, regularization=0.3, alpha=3.0, iterations=6, random_state=42,
                    num_threads=num_threads)
    ours = ALS(**settings).fit(data)
    theirs = AlternatingLeastSquares(**settings)
    theirs.fit(data.matrix, show_progress=False)
    if num_threads == 1:  # bit for bit
        np.testing.assert_array_equal(ours.user_factors_, theirs.user_factors)
        np.testing.assert_array_equal(ours.item_factors_, theirs.item_factors)
    else:  # only BLAS's thread count differs (implicit's own solves are per row)
        np.testing.assert_allclose(ours.user_factors_, theirs.user_factors, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ours.item_factors_, theirs.item_factors, rtol=1e-5, atol=1e-6)
    users = np.arange(data.n_users)
    ids, scores = theirs.recommend(users, data.matrix, N=5, filter_already_liked_items=True)
    our_ids, our_scores = ours.recommend_index(users, 5)
    np.testing.assert_allclose(our_scores, scores, rtol=1e-4, atol=1e-5)
    assert (our_ids == ids).mean() > 0.99  # equal but for near-ties


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_bpr_equals_implicit_called_directly():
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    data = parity_data()
    settings = dict(factors=10, learning_rate=0.05, regularization=0.02, iterations=15, random_state=9,
                    num_threads=1)
    ours = BPR(**settings).fit(data)
    theirs = BayesianPersonalizedRanking(**settings)
    theirs.fit(data.matrix.copy(), show_progress=False)
    np.testing.assert_array_equal(ours.user_factors_, theirs.user_factors)
    np.testing.assert_array_equal(ours.item_factors_, theirs.item_factors)
    assert ours.item_factors_.shape == (data.n_items, 11)  # the bias column


@pytest.mark.parametrize("model", [ALS(factors=4, iterations=2, random_state=0), BPR(factors=4, random_state=0)])
def test_factor_models_pickle_without_implicit(model):
    model.fit(sample_interactions())
    modules: set[str] = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            modules.add(module.split(".")[0])
            return super().find_class(module, name)

    Recorder(io.BytesIO(pickle.dumps(model))).load()
    assert "implicit" not in modules
    assert modules <= {"matinee", "numpy", "scipy", "builtins", "copyreg", "_codecs", "collections"}


# -- real data: every model beats popularity ---------------------------------------------------------


def holdout(data: Interactions, fraction: float, seed: int) -> tuple[Interactions, Interactions]:
    """Each user with 5 or more positives gives a random ``fraction`` of them (at least one) to test."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(data), bool)
    order = np.argsort(data.users, kind="stable")
    starts = np.searchsorted(data.users[order], np.arange(data.n_users + 1))
    for begin, end in zip(starts[:-1], starts[1:], strict=True):
        if end - begin >= 5:
            test[rng.choice(order[begin:end], max(1, round(fraction * (end - begin))), replace=False)] = True
    return data.subset(~test), data.subset(test)


def hit_rate(model: RecommenderBase, test: Interactions, k: int) -> float:
    truth = test.matrix
    users = np.flatnonzero(np.diff(truth.indptr))
    top, _ = model.recommend_index(users, k)
    return float(np.mean([np.isin(row, truth[u].indices).any() for u, row in zip(users, top, strict=True)]))


@pytest.mark.skipif(not MOVIELENS.is_dir(), reason=f"MovieLens ml-latest-small not found at {MOVIELENS}")
def test_every_model_beats_popularity_on_movielens():
    ratings = pd.read_csv(MOVIELENS / "ratings.csv").rename(columns={"userId": "user_id", "movieId": "item_id"})
    data = Interactions.from_frame(ratings, rating_col="rating", min_rating=4.0)
    train, test = holdout(data, 0.2, seed=0)
    baseline = hit_rate(MostPopular().fit(train), test, 10)
    assert 0.2 < baseline < 0.6
    for model in (EASE(), ItemKNN(), RP3beta(), ALS(random_state=0)):
        score = hit_rate(model.fit(train), test, 10)
        assert score > 1.25 * baseline, f"{model!r}: HitRate@10 {score:.3f}, MostPopular {baseline:.3f}"


def test_a_lone_user_id_is_refused_with_the_fix() -> None:
    from matinee.apps.recs.models import MostPopular
    from matinee.testing.recommenders import sample_interactions

    model = MostPopular().fit(sample_interactions())
    with pytest.raises(ParameterError, match=r"users must be a list of ids.*pass a list"):
        model.recommend("u1")
