"""The simulated streaming service: determinism, schema, behaviour, ground truth and the artwork bandit."""

from __future__ import annotations

import doctest
import importlib
import pickle

import numpy as np
import pandas as pd
import pytest

from matinee.apps.recs import Interactions
from matinee.apps.sim import (
    GENRES,
    PRESETS,
    VARIANT_FEATURES,
    ArtworkEnvironment,
    Impressions,
    SimConfig,
    StreamingService,
)
from matinee.errors import ParameterError


@pytest.fixture(scope="module")
def small() -> StreamingService:
    return StreamingService("small", seed=11)


@pytest.fixture(scope="module")
def small_plays(small: StreamingService) -> pd.DataFrame:
    return small.interactions()


@pytest.fixture(scope="module")
def env() -> ArtworkEnvironment:
    return ArtworkEnvironment(n_context_features=20, n_variants=10, n_variant_features=5, seed=5)


# -- determinism ----------------------------------------------------------------------------------
def _frame_bytes(frame: pd.DataFrame) -> list[bytes]:
    out = []
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            out.append(np.asarray(column.cat.codes).tobytes())
        elif pd.api.types.is_numeric_dtype(column.dtype):
            out.append(column.to_numpy().tobytes())
        else:  # text and lists
            out.append(repr(column.tolist()).encode())
    return out


def test_same_seed_and_config_give_identical_output_byte_for_byte():
    one, two = StreamingService("tiny", seed=4), StreamingService(SimConfig.preset("tiny", seed=4))
    for method in ("interactions", "titles", "members", "artwork"):
        assert _frame_bytes(getattr(one, method)()) == _frame_bytes(getattr(two, method)()), method
    assert one.true_preference(range(50)).tobytes() == two.true_preference(range(50)).tobytes()
    assert one.member_features().tobytes() == two.member_features().tobytes()


def test_different_seeds_give_different_services():
    one, two = StreamingService("tiny", seed=1), StreamingService("tiny", seed=2)
    assert not one.interactions().equals(two.interactions())
    assert one.titles()["title"].tolist() != two.titles()["title"].tolist()
    assert not np.array_equal(one.true_preference([0]), two.true_preference([0]))


def test_titles_do_not_depend_on_the_number_of_members():
    base = StreamingService("tiny", seed=3)
    more = StreamingService("tiny", seed=3, n_members=80)
    assert base.titles().equals(more.titles())
    assert base.artwork().equals(more.artwork())


def test_the_artwork_environment_is_seeded():
    a, b = ArtworkEnvironment(seed=2, size="tiny"), ArtworkEnvironment(seed=2, size="tiny")
    for _ in range(2):  # successive batches continue one stream
        x, y = a.sample(500), b.sample(500)
        assert np.array_equal(x.member_ids, y.member_ids) and np.array_equal(x.title_ids, y.title_ids)
        assert np.array_equal(a.reward(x, np.zeros(500, int)), b.reward(y, np.zeros(500, int)))
    other = ArtworkEnvironment(seed=3, size="tiny").sample(500)
    assert not np.array_equal(other.member_ids, a.sample(500).member_ids)


# -- schema -----------------------------------------------------------------------------------------
def test_interactions_follow_the_interaction_schema(small_plays):
    frame = small_plays
    assert list(frame.columns) == ["user_id", "item_id", "timestamp", "event", "weight"]
    assert [str(t) for t in frame.dtypes] == ["int64", "int64", "int64", "category", "float32"]
    assert list(frame["event"].cat.categories) == ["play", "complete"]
    assert frame["timestamp"].is_monotonic_increasing
    weights = frame["weight"].to_numpy()
    assert ((weights > 0) & (weights <= 1)).all()
    assert ((frame["event"] == "complete").to_numpy() == (weights == 1.0)).all()
    assert 0.3 < (frame["event"] == "complete").mean() < 0.9


def test_interactions_load_into_the_recs_data_contract(small, small_plays):
    data = Interactions.from_frame(small_plays, weight_col="weight", item_metadata=small.titles())
    assert len(data) == len(small_plays)
    assert data.n_users <= small.n_members and data.n_items <= small.n_titles
    assert data.item_metadata is not None
    assert {"title", "genres", "release_timestamp"} <= set(data.item_metadata.columns)


def test_the_titles_frame_describes_the_catalogue(small):
    titles = small.titles()
    assert list(titles.columns) == ["item_id", "title", "genres", "release_timestamp", "popularity", "n_variants"]
    assert titles["item_id"].tolist() == list(range(small.n_titles))
    assert titles["title"].is_unique and titles["title"].str.match(r".+ \(\d{4}\)$").all()
    counts = titles["genres"].map(len)
    assert counts.between(1, 3).all() and set(counts) == {1, 2, 3}
    assert all(set(g) <= set(GENRES) and len(set(g)) == len(g) for g in titles["genres"])
    assert titles["popularity"].sum() == pytest.approx(1.0)
    launch = titles["release_timestamp"] < small.config.start
    assert launch.mean() == pytest.approx(small.config.launch_share, abs=0.01)
    assert (titles["release_timestamp"] < small.config.end).all()


def test_members_frame_and_features(small):
    members = small.members()
    assert list(members.columns) == ["user_id", "activity", "favourite_genre"]
    assert set(members["favourite_genre"]) <= set(GENRES)
    features = small.member_features([0, 5])
    assert features.shape == (2, small.config.n_context_features)
    assert np.array_equal(features, small.member_features()[[0, 5]])


# -- behaviour ----------------------------------------------------------------------------------------
def test_no_title_is_played_before_its_release(small, small_plays):
    release = small.titles()["release_timestamp"].to_numpy()
    assert (small_plays["timestamp"].to_numpy() >= release[small_plays["item_id"].to_numpy()]).all()
    assert small_plays["timestamp"].min() >= small.config.start


def test_popularity_is_long_tailed(small, small_plays):
    plays = np.sort(np.bincount(small_plays["item_id"], minlength=small.n_titles))[::-1]
    assert plays[: small.n_titles // 10].sum() / plays.sum() > 0.3  # three times a uniform share
    activity = np.sort(small_plays["user_id"].value_counts().to_numpy())[::-1]
    assert activity[: small.n_members // 10].sum() / activity.sum() > 0.25


def test_new_titles_get_a_burst_of_plays_after_release(small, small_plays):
    release = small.titles()["release_timestamp"].to_numpy()[small_plays["item_id"].to_numpy()]
    window = small.config.recency_days * 86_400
    time_left = (small.config.end - release).astype(float)
    chosen = (release >= small.config.start) & (time_left >= 3 * window)  # titles released during the period
    age = small_plays["timestamp"].to_numpy()[chosen] - release[chosen]
    # The share of their plays in the first window after release, against the share of their time it covers.
    assert (age < window).mean() > 1.5 * (window / time_left[chosen]).mean()


def test_replays_are_rare_but_happen(small_plays):
    repeated = small_plays.duplicated(["user_id", "item_id"]).mean()
    assert 0 < repeated < 0.05


def test_every_title_has_three_to_ten_artwork_variants(small):
    titles = small.titles()
    assert titles["n_variants"].between(3, 10).all()
    assert set(titles["n_variants"]) == set(range(3, 11))
    art = small.artwork()
    assert list(art.columns) == ["item_id", "variant", *VARIANT_FEATURES]
    assert art.groupby("item_id").size().tolist() == titles["n_variants"].tolist()
    assert art.groupby("item_id")["variant"].max().tolist() == (titles["n_variants"] - 1).tolist()
    values = art[list(VARIANT_FEATURES)].to_numpy()
    assert ((values > -0.5) & (values < 0.5)).all()


# -- ground truth --------------------------------------------------------------------------------------
def _mean_true_affinity(truth: np.ndarray, ranking: np.ndarray) -> float:
    return float(np.take_along_axis(truth, ranking, axis=1).mean())


def test_ideal_ranking_beats_popularity_which_beats_random(small, small_plays):
    users = np.arange(small.n_members)
    truth = small.true_preference(users)
    ideal = small.ideal_ranking(users, k=10)
    popular = small_plays["item_id"].value_counts().index[:10].to_numpy()
    popularity = np.broadcast_to(popular, (len(users), 10))
    rng = np.random.default_rng(0)
    random = np.argsort(rng.random((len(users), small.n_titles)), axis=1)[:, :10]
    ideal_v, pop_v, rand_v = (_mean_true_affinity(truth, r) for r in (ideal, popularity, random))
    assert ideal_v > pop_v + 1.0  # in logits: a large margin
    assert pop_v > rand_v + 1.0


def test_members_play_what_they_truly_prefer(small, small_plays):
    truth = small.true_preference(np.arange(small.n_members))
    played = truth[small_plays["user_id"].to_numpy(), small_plays["item_id"].to_numpy()]
    assert played.mean() > truth.mean() + 1.0


def test_true_preference_and_ideal_ranking_agree(small):
    users = np.array([3, 1, 4])
    items = np.array([10, 20, 30, 40, 50])
    truth = small.true_preference(users, items)
    assert truth.shape == (3, 5) and truth.dtype == np.float32
    assert np.array_equal(truth, small.true_preference(users)[:, items])
    ranking = small.ideal_ranking(users, k=5, item_ids=items)
    assert np.array_equal(ranking, items[np.argsort(-truth, axis=1, kind="stable")])
    assert small.ideal_ranking(users, k=1000).shape == (3, small.n_titles)


def test_true_preference_at_a_time_hides_unreleased_titles(small):
    release = small.titles()["release_timestamp"].to_numpy()
    at = small.config.start + 30 * 86_400
    truth = small.true_preference([0, 1], at=at)
    assert np.isneginf(truth[:, release > at]).all()
    assert np.isfinite(truth[:, release <= at]).all()
    just_released = (release <= at) & (release > at - 86_400)
    static = small.true_preference([0, 1])
    assert (truth[:, just_released] > static[:, just_released]).all()  # the recency boost
    top = small.ideal_ranking([0, 1], k=20, at=at)
    assert (release[top] <= at).all()


# -- artwork environment ---------------------------------------------------------------------------
def test_the_environment_samples_batches_of_the_right_shapes(env):
    batch = env.sample(2_000)
    assert isinstance(batch, Impressions) and len(batch) == 2_000
    assert batch.context.shape == (2_000, 20)
    assert batch.variant_features.shape == (2_000, 10, 5)
    assert batch.mask is None and (batch.n_variants == 10).all()
    assert batch.member_ids.dtype == np.int64 and batch.title_ids.dtype == np.int64
    p = env.play_probability(batch)
    assert p.shape == (2_000, 10) and ((p > 0) & (p < 1)).all()
    assert env.variant_feature_names == VARIANT_FEATURES
    assert len(env.context_feature_names) == env.n_context_features == 20


def test_each_titles_own_variants_come_with_a_mask():
    env = ArtworkEnvironment(n_variants=None, size="tiny", seed=1)
    batch = env.sample(3_000)
    assert batch.mask is not None and batch.mask.shape == (3_000, 10)
    assert set(batch.n_variants.tolist()) <= set(range(3, 11))
    assert (batch.variant_features[~batch.mask] == 0).all()
    p = env.play_probability(batch)
    assert (p[~batch.mask] == 0).all() and ((p[batch.mask] > 0) & (p[batch.mask] < 1)).all()
    best, _ = env.oracle(batch)
    assert batch.mask[np.arange(len(batch)), best].all()
    fixed, _ = env.best_fixed_variants(batch)
    assert batch.mask[np.arange(len(batch)), fixed].all()


def test_the_environment_shares_the_services_artwork():
    service = StreamingService("tiny", seed=8)
    env = service.artwork_environment(n_variants=None)
    batch = env.impressions([0, 1], [5, 6])
    art = service.artwork([5])
    assert np.allclose(batch.variant_features[0, : len(art)], art[list(VARIANT_FEATURES)].to_numpy())
    assert np.array_equal(batch.context, service.member_features([0, 1]))


def test_the_environment_built_alone_equals_the_one_built_from_its_service():
    alone = ArtworkEnvironment(seed=3, size="tiny").sample(300)
    via = StreamingService("tiny", seed=3).artwork_environment().sample(300)
    for name in ("member_ids", "title_ids", "context", "variant_features", "noise"):
        assert np.array_equal(getattr(alone, name), getattr(via, name)), name


def test_more_variants_than_the_catalogue_default_widen_the_pool():
    env = ArtworkEnvironment(n_variants=12, n_context_features=4, n_variant_features=3, size="tiny")
    batch = env.sample(100)
    assert batch.context.shape == (100, 4) and batch.variant_features.shape == (100, 12, 3)
    assert env.variant_feature_names == VARIANT_FEATURES[:3]


def test_services_and_environments_pickle(env):
    service = StreamingService("tiny", seed=2)
    plays = service.interactions()
    assert pickle.loads(pickle.dumps(service)).interactions().equals(plays)
    copy = pickle.loads(pickle.dumps(env))
    assert np.array_equal(copy.sample(50).member_ids, env.sample(50).member_ids)


def test_rewards_are_bernoulli_draws_of_the_true_probability(env):
    batch = env.sample(100_000)
    actions = np.random.default_rng(3).integers(0, 10, len(batch))
    p = env.play_probability(batch, actions)
    rewards = env.reward(batch, actions)
    assert set(np.unique(rewards).tolist()) == {0.0, 1.0}
    assert rewards.mean() == pytest.approx(p.mean(), abs=0.005)
    assert np.array_equal(rewards, env.reward(batch, actions))  # outcomes are fixed by the batch


def test_the_oracle_beats_the_best_context_free_choice_by_a_clear_margin(env):
    batch = env.sample(50_000)
    best, oracle = env.oracle(batch)
    assert np.allclose(oracle, env.play_probability(batch).max(axis=1))
    assert np.allclose(env.regret(batch, best), 0.0)
    _, fixed = env.best_fixed_variants(batch)
    uniform = env.play_probability(batch).mean()
    assert fixed.mean() < 0.8 * oracle.mean()
    assert uniform < fixed.mean()
    assert (env.regret(batch, np.zeros(len(batch), np.int64)) >= 0).all()


def _interactions(context: np.ndarray, variants: np.ndarray) -> np.ndarray:
    """The policy features: the variant's features and their products with the context."""
    outer = context[:, :, None] * variants[:, None, :]
    return np.concatenate([np.ones((len(context), 1)), variants, outer.reshape(len(context), -1)], axis=1)


def _greedy_value(env: ArtworkEnvironment, batch: Impressions, coef: np.ndarray) -> float:
    scores = np.stack([_interactions(batch.context, batch.variant_features[:, v]) @ coef
                       for v in range(env.n_variants)], axis=1)
    return float(env.play_probability(batch, scores.argmax(axis=1)).mean())


def test_a_fit_on_uniformly_logged_data_learns_a_policy_near_the_oracle(env):
    logged = env.sample(30_000)
    actions = np.random.default_rng(7).integers(0, env.n_variants, len(logged))
    rewards = env.reward(logged, actions)
    x = _interactions(logged.context, logged.variant_features[np.arange(len(logged)), actions])
    least_squares = np.linalg.lstsq(x, rewards, rcond=None)[0]
    logistic = np.zeros(x.shape[1])
    for _ in range(8):  # Newton steps of a lightly ridged logistic regression
        p = 1.0 / (1.0 + np.exp(-x @ logistic))
        hessian = (x * (p * (1 - p))[:, None]).T @ x + 1e-3 * np.eye(x.shape[1])
        logistic += np.linalg.solve(hessian, x.T @ (rewards - p) - 1e-3 * logistic)

    test = env.sample(50_000)
    _, oracle = env.oracle(test)
    random = env.play_probability(test).mean()
    for coef in (least_squares, logistic):
        value = _greedy_value(env, test, coef)
        assert value > 0.97 * oracle.mean()
        assert value - random > 0.9 * (oracle.mean() - random)


@pytest.mark.parametrize(
    "overrides",
    [
        {"n_members": 1, "n_titles": 1, "genres": ("only",), "n_factors": 1, "min_variants": 1, "max_variants": 1,
         "page_size": 2, "plays_per_session": 1.0},
        {"sessions_per_member": 0.001},
        {"n_members": 3, "n_titles": 2, "launch_share": 0.01, "days": 1, "recency_days": 1.0},
        {"taste_scale": 0.0, "recency_boost": 0.0, "activity_sigma": 0.0, "popularity_exponent": 0.0},
    ],
)
def test_extreme_configs_still_generate(overrides):
    service = StreamingService("tiny", **overrides)
    plays = service.interactions()
    assert list(plays.columns) == ["user_id", "item_id", "timestamp", "event", "weight"]
    assert len(service.titles()) == service.n_titles
    assert service.ideal_ranking([0], k=3).shape == (1, min(3, service.n_titles))
    env = service.artwork_environment(n_variants=None)
    assert env.play_probability(env.sample(5)).shape == (5, service.config.max_variants)


# -- configuration and validation ------------------------------------------------------------------
def test_presets_run_from_tiny_to_large():
    assert list(PRESETS) == ["tiny", "small", "medium", "large"]
    sizes = [(c.n_members, c.n_titles) for c in PRESETS.values()]
    assert sizes == sorted(sizes) and sizes[0] == (50, 40) and sizes[-1] == (100_000, 20_000)
    assert SimConfig.preset("medium", seed=9) == PRESETS["medium"].replace(seed=9)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: SimConfig(n_members=0), ParameterError, "SimConfig.n_members must be a whole number >= 1, not 0"),
        (lambda: SimConfig(n_titles=2.5), ParameterError, "SimConfig.n_titles must be a whole number"),
        (lambda: SimConfig(seed=-1), ParameterError, "SimConfig.seed must be a whole number >= 0"),
        (lambda: SimConfig(n_factors=True), ParameterError, "SimConfig.n_factors"),
        (lambda: SimConfig(days=0), ParameterError, "SimConfig.days must be a whole number between 1 and 36500"),
        (lambda: SimConfig(genres=()), ParameterError, "SimConfig.genres must be a non-empty tuple"),
        (lambda: SimConfig(genres=["drama"]), ParameterError, "SimConfig.genres must be a non-empty tuple"),
        (lambda: SimConfig(genres=("drama", "drama")), ParameterError, "SimConfig.genres names 'drama' twice"),
        (lambda: SimConfig(launch_share=0.0), ParameterError, "SimConfig.launch_share must be a number > 0"),
        (lambda: SimConfig(launch_share=1.5), ParameterError, "SimConfig.launch_share"),
        (lambda: SimConfig(replay_rate=float("nan")), ParameterError, "SimConfig.replay_rate"),
        (lambda: SimConfig(taste_scale="big"), ParameterError, "SimConfig.taste_scale"),
        (lambda: SimConfig(artwork_base_rate=0.0), ParameterError, "SimConfig.artwork_base_rate"),
        (lambda: SimConfig(min_variants=5, max_variants=4), ParameterError,
         "SimConfig.min_variants (5) must not exceed max_variants (4)"),
        (lambda: SimConfig(days=365, recency_days=0.5), ParameterError, "SimConfig.recency_days must be at least"),
        (lambda: SimConfig(page_size=4, plays_per_session=3.0), ParameterError,
         "SimConfig.plays_per_session must be at most page_size / 2"),
        (lambda: SimConfig.preset("huge"), ParameterError, "unknown preset 'huge'"),
        (lambda: SimConfig.preset("tiny", n_movies=3), ParameterError, "SimConfig has no field 'n_movies'"),
        (lambda: StreamingService(3), ParameterError, "config must be a SimConfig or a preset name"),
        (lambda: StreamingService("tiny", n_members=-5), ParameterError, "SimConfig.n_members"),
    ],
)
def test_bad_configs_are_rejected_naming_the_field(build, error, message):
    with pytest.raises(error, match=_escaped(message)) as info:
        build()
    named = message.split(".")[1].split()[0] if message.startswith("SimConfig.") else None
    if named:
        assert info.value.parameter == named


def _escaped(text: str) -> str:
    import re

    return re.escape(text)


@pytest.fixture(scope="module")
def tiny() -> StreamingService:
    return StreamingService("tiny")


@pytest.mark.parametrize(
    ("call", "parameter", "message"),
    [
        (lambda s: s.true_preference([50]), "user_ids", "user_ids holds 50, outside 0..49"),
        (lambda s: s.true_preference([-1]), "user_ids", "user_ids holds -1"),
        (lambda s: s.true_preference(["ann"]), "user_ids", "user_ids must be a 1-d sequence of whole numbers"),
        (lambda s: s.true_preference([0], [40]), "item_ids", "item_ids holds 40, outside 0..39"),
        (lambda s: s.true_preference([0], at=float("inf")), "at", "at must be a time in seconds"),
        (lambda s: s.ideal_ranking([0], k=0), "k", "k must be a whole number >= 1, not 0"),
        (lambda s: s.member_features([99]), "user_ids", "user_ids holds 99"),
        (lambda s: s.artwork([1.5]), "item_ids", "item_ids must be a 1-d sequence"),
        (lambda s: s.artwork_environment(n_variants=1), "n_variants", "n_variants must be None or a whole number"),
        (lambda s: s.artwork_environment(n_variants=11), "n_variants", "between 2 and 10, not 11"),
        (lambda s: s.artwork_environment(seed=-2), "seed", "seed must be a whole number >= 0"),
    ],
)
def test_bad_arguments_are_rejected_naming_the_parameter(tiny, call, parameter, message):
    with pytest.raises(ParameterError, match=_escaped(message)) as info:
        call(tiny)
    assert info.value.parameter == parameter


@pytest.mark.parametrize(
    ("call", "parameter", "message"),
    [
        (lambda e, b: e.sample(0), "n", "n must be a whole number >= 1, not 0"),
        (lambda e, b: e.play_probability(b, np.full(len(b), 10)), "actions", "actions must lie in 0..9"),
        (lambda e, b: e.reward(b, np.zeros(3, int)), "actions", "actions must be 4 whole numbers"),
        (lambda e, b: e.reward(b, np.zeros(len(b))), "actions", "actions must be 4 whole numbers"),
        (lambda e, b: e.impressions([0, 1], [0]), "title_ids", "title_ids has 1 entries, member_ids has 2"),
        (lambda e, b: e.impressions([0], [500]), "title_ids", "title_ids holds 500"),
        (lambda e, b: ArtworkEnvironment(size="huge"), "size", "unknown size 'huge'"),
        (lambda e, b: ArtworkEnvironment(n_variants=100), "n_variants", "between 2 and 64, not 100"),
        (lambda e, b: ArtworkEnvironment(n_context_features=0), "n_context_features",
         "SimConfig.n_context_features must be a whole number"),
        (lambda e, b: ArtworkEnvironment.from_service("small"), "service", "from_service takes a StreamingService"),
    ],
)
def test_bad_environment_arguments_are_rejected(call, parameter, message):
    env = ArtworkEnvironment(size="small", seed=0)
    batch = env.sample(4)
    with pytest.raises(ParameterError, match=_escaped(message)) as info:
        call(env, batch)
    assert info.value.parameter == parameter


def test_masked_variants_cannot_be_chosen():
    env = ArtworkEnvironment(n_variants=None, size="tiny", seed=0)
    batch = env.sample(200)
    missing = int(np.flatnonzero(~batch.mask.all(axis=1))[0])
    actions = np.zeros(len(batch), np.int64)
    actions[missing] = env.n_variants - 1
    with pytest.raises(ParameterError, match="a variant the title does not have") as info:
        env.reward(batch, actions)
    assert info.value.parameter == "actions"


def test_impressions_check_their_shapes(env):
    batch = env.sample(3)
    with pytest.raises(ParameterError, match="Impressions.noise has 2 rows") as info:
        Impressions(batch.member_ids, batch.title_ids, batch.context, batch.variant_features, None, batch.noise[:2])
    assert info.value.parameter == "noise"


@pytest.mark.parametrize("module", ["matinee.apps.sim", "matinee.apps.sim.config", "matinee.apps.sim.service",
                                    "matinee.apps.sim.artwork"])
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
