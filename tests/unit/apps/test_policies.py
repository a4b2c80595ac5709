"""Bandit policies: the conformance suite for each, closed forms by hand, the ridge and Newton solves, learning."""

from __future__ import annotations

import doctest
import importlib
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats

from matinee.apps.artwork import LoggedFeedback, Policy
from matinee.apps.artwork.features import joint_features, n_joint_features
from matinee.apps.artwork.policies import (
    BernoulliTS,
    EpsilonGreedy,
    LinearTS,
    LinUCB,
    LogisticTS,
    Softmax,
    UniformRandom,
)
from matinee.apps.artwork.policies import thompson as thompson_module
from matinee.apps.sim import ArtworkEnvironment
from matinee.core.artifacts.store import ArtifactStore
from matinee.core.storage.blobs import LocalBlobStore
from matinee.errors import ParameterError
from matinee.testing import check_policy, policy_checks, sample_feedback

POLICIES: dict[str, Callable[[], Policy]] = {
    "UniformRandom": UniformRandom,
    "EpsilonGreedy": lambda: EpsilonGreedy(epsilon=0.2),
    "Softmax": lambda: Softmax(temperature=0.5),
    "LinUCB-shared": lambda: LinUCB(alpha=0.5),
    "LinUCB-disjoint": lambda: LinUCB(alpha=0.5, mode="disjoint"),
    "LinearTS": lambda: LinearTS(v=0.3, n_samples=400),
    "LogisticTS": lambda: LogisticTS(n_samples=400),
    "BernoulliTS": lambda: BernoulliTS(n_samples=400),
}


@pytest.mark.parametrize("check", policy_checks(), ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", list(POLICIES))
def test_every_policy_passes_the_conformance_suite(name, check):
    check(POLICIES[name])


def test_check_policy_runs_every_check_and_catches_a_broken_policy():
    check_policy(UniformRandom)

    class Greedy(UniformRandom):
        """Claims to randomise but puts all mass on the first candidate."""

        def _probabilities(self, context, action_features, candidates):
            uniform = super()._probabilities(context, action_features, candidates)
            probs = np.zeros(uniform.shape)
            probs[np.arange(len(probs)), (uniform > 0).argmax(axis=1)] = 1.0
            return probs

    with pytest.raises(AssertionError, match="Greedy"):
        check_policy(Greedy)


# -- closed forms ---------------------------------------------------------------------------------------


def _log(actions, rewards, n_actions, context=None, features=None) -> LoggedFeedback:
    actions = np.asarray(actions)
    context = np.zeros((len(actions), 2)) if context is None else context
    return LoggedFeedback(context=context, action=actions, reward=rewards, propensity=np.full(len(actions), 0.5),
                          n_actions=n_actions, action_features=features)


def test_uniform_random_splits_evenly_over_the_candidates():
    policy = UniformRandom(random_state=0)
    probs = policy.probabilities(np.zeros((2, 1)), candidates=[[True, True, False], [False, True, False]])
    np.testing.assert_array_equal(probs, [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.5, 1.0])
def test_epsilon_greedy_gives_one_minus_epsilon_plus_epsilon_over_k_to_the_greedy_action(epsilon):
    policy = EpsilonGreedy(epsilon=epsilon, l2=1.0, random_state=0)
    policy.update(_log([0, 1, 2, 3, 2], [1, 0, 1, 0, 1], n_actions=4))  # action 2 has the best mean, 2 / 3
    mask = np.array([[True, True, True, True], [True, True, False, True], [False, True, False, True]])
    probs = policy.probabilities(np.zeros((3, 2)), candidates=mask)
    np.testing.assert_allclose(probs[0], [epsilon / 4, epsilon / 4, 1 - epsilon + epsilon / 4, epsilon / 4])
    # without action 2, action 0 (mean 1/2) is greedy among three candidates
    np.testing.assert_allclose(probs[1], [1 - epsilon + epsilon / 3, epsilon / 3, 0, epsilon / 3])
    # actions 1 and 3 tie at 0: the greedy mass is split between them
    np.testing.assert_allclose(probs[2], [0, 0.5, 0, 0.5])
    np.testing.assert_allclose(policy.coef_, [1 / 2, 0 / 2, 2 / 3, 0 / 2])  # sum / (count + l2)


def test_epsilon_greedy_with_action_features_is_greedy_on_a_ridge_model_of_the_joint_features():
    log = sample_feedback(200)
    policy = EpsilonGreedy(epsilon=0.3, l2=2.0, random_state=0).update(log)
    assert log.action_features is not None
    x = joint_features(log.context, log.action_features[np.arange(len(log)), log.action][:, None])[:, 0]
    coef = np.linalg.solve(2.0 * np.eye(x.shape[1]) + x.T @ x, x.T @ log.reward)
    np.testing.assert_allclose(policy.coef_, coef, atol=1e-10)
    scores = np.where(log.candidates, joint_features(log.context, log.action_features) @ coef, -np.inf)
    k = log.candidates.sum(axis=1)
    expected = np.where(log.candidates, 0.3 / k[:, None], 0.0)
    expected[np.arange(len(log)), scores.argmax(axis=1)] += 0.7
    np.testing.assert_allclose(policy.probabilities(log.context, log.action_features, log.candidates), expected)


def test_softmax_is_exp_over_the_sum_of_exp():
    policy = Softmax(temperature=0.2, l2=1.0, random_state=0)
    policy.update(_log([0, 1, 1, 2], [1, 1, 0, 0], n_actions=3))
    means = np.array([1 / 2, 1 / 3, 0.0])
    mask = np.array([[True, True, True], [True, False, True]])
    probs = policy.probabilities(np.zeros((2, 2)), candidates=mask)
    np.testing.assert_allclose(probs[0], np.exp(means / 0.2) / np.exp(means / 0.2).sum())
    two = np.exp(means[[0, 2]] / 0.2) / np.exp(means[[0, 2]] / 0.2).sum()
    np.testing.assert_allclose(probs[1], [two[0], 0.0, two[1]])


def test_softmax_never_gives_a_candidate_probability_zero():
    policy = Softmax(temperature=1e-6, random_state=0).update(_log([0, 1], [1, 0], n_actions=2))
    probs = policy.probabilities(np.zeros((1, 2)))
    assert probs[0, 1] > 0 and probs[0, 0] == pytest.approx(1.0)


# -- LinUCB ---------------------------------------------------------------------------------------------


def test_linucb_shared_is_a_ridge_regression_on_the_joint_features():
    log = sample_feedback(300)
    policy = LinUCB(alpha=0.7, l2=1.5, random_state=0)
    policy.update(log.subset(slice(0, 100))).update(log.subset(slice(100, None)))  # incremental = all at once
    assert log.action_features is not None
    x = joint_features(log.context, log.action_features[np.arange(len(log)), log.action][:, None])[:, 0]
    precision = 1.5 * np.eye(x.shape[1]) + x.T @ x
    np.testing.assert_allclose(policy.precision_, precision, atol=1e-10)
    np.testing.assert_allclose(policy.coef_, np.linalg.solve(precision, x.T @ log.reward), atol=1e-10)
    every = joint_features(log.context, log.action_features)
    width = np.sqrt(np.einsum("nap,pq,naq->na", every, np.linalg.inv(precision), every))
    bounds = every @ np.linalg.solve(precision, x.T @ log.reward) + 0.7 * width
    np.testing.assert_allclose(policy.upper_bounds(log.context, log.action_features), bounds, atol=1e-10)
    masked = policy.upper_bounds(log.context, log.action_features, log.candidates)
    assert np.isneginf(masked[~log.candidates]).all()
    probs = policy.probabilities(log.context, log.action_features, log.candidates)
    assert (probs.argmax(axis=1) == np.where(log.candidates, bounds, -np.inf).argmax(axis=1)).all()
    assert set(np.unique(probs)) <= {0.0, 1.0}


def test_linucb_disjoint_fits_one_ridge_regression_of_the_context_per_action():
    log = sample_feedback(300)
    policy = LinUCB(alpha=0.3, mode="disjoint", l2=0.5, random_state=0).update(log)
    xs = np.column_stack([np.ones(len(log)), log.context])
    bounds = np.empty((len(log), log.n_actions))
    for a in range(log.n_actions):
        rows = log.action == a
        precision = 0.5 * np.eye(4) + xs[rows].T @ xs[rows]
        coef = np.linalg.solve(precision, xs[rows].T @ log.reward[rows])
        np.testing.assert_allclose(policy.coef_[a], coef, atol=1e-10)
        np.testing.assert_allclose(policy.precision_[a], precision, atol=1e-10)
        bounds[:, a] = xs @ coef + 0.3 * np.sqrt(np.einsum("np,pq,nq->n", xs, np.linalg.inv(precision), xs))
    np.testing.assert_allclose(policy.upper_bounds(log.context, log.action_features), bounds, atol=1e-10)


def test_linucb_without_action_features_learns_one_hot_joint_features():
    log = sample_feedback(100)
    policy = LinUCB(random_state=0).update(LoggedFeedback(context=log.context, action=log.action, reward=log.reward,
                                                          propensity=log.propensity, n_actions=log.n_actions))
    assert policy.coef_.shape == (n_joint_features(3, 4),)
    assert policy.probabilities(log.context).shape == (100, 4)
    with pytest.raises(ParameterError, match="first used with no action features") as error:
        policy.probabilities(log.context, log.action_features)
    assert error.value.parameter == "action_features"


def test_linucb_breaks_ties_uniformly_with_propensity_one_over_the_ties():
    policy = LinUCB(mode="disjoint", random_state=3)
    context = np.ones((6000, 2))
    mask = np.tile([True, True, False, True], (6000, 1))
    probs = policy.probabilities(context, candidates=mask)
    np.testing.assert_allclose(probs, np.tile([1 / 3, 1 / 3, 0, 1 / 3], (6000, 1)))
    choice = policy.choose(context, candidates=mask)
    np.testing.assert_allclose(choice.propensities, 1 / 3)
    freq = np.bincount(choice.actions, minlength=4) / 6000
    np.testing.assert_allclose(freq, [1 / 3, 1 / 3, 0, 1 / 3], atol=0.03)
    assert LinUCB.deterministic and not LinearTS.deterministic


def test_linucb_cannot_switch_mode_after_learning():
    policy = LinUCB(mode="disjoint").update(sample_feedback(20))
    policy.set_params(mode="shared")
    with pytest.raises(ParameterError, match="cannot switch") as error:
        policy.probabilities(np.zeros((1, 3)), candidates=np.ones((1, 4), bool))
    assert error.value.parameter == "mode"


# -- Thompson sampling ----------------------------------------------------------------------------------


def test_linear_ts_posterior_is_the_ridge_regression():
    log = sample_feedback(200)
    policy = LinearTS(v=0.5, l2=2.0, random_state=0).update(log.subset(slice(0, 50))).update(log.subset(slice(50, None)))
    assert log.action_features is not None
    x = joint_features(log.context, log.action_features[np.arange(len(log)), log.action][:, None])[:, 0]
    precision = 2.0 * np.eye(x.shape[1]) + x.T @ x
    np.testing.assert_allclose(policy.coef_, np.linalg.solve(precision, x.T @ log.reward), atol=1e-10)
    np.testing.assert_allclose(policy.chol_ @ policy.chol_.T, precision, atol=1e-9)


def _two_actions(n: int, seed: int) -> LoggedFeedback:
    rng = np.random.default_rng(seed)
    features = np.array([[0.3, -0.2], [0.1, 0.4]])
    action = rng.integers(0, 2, n)
    reward = (rng.random(n) < np.where(action == 0, 0.55, 0.45)).astype(float)
    return LoggedFeedback(context=rng.normal(size=(n, 2)), action=action, reward=reward, propensity=np.full(n, 0.5),
                          n_actions=2, action_features=features)


def test_linear_ts_monte_carlo_matches_the_exact_gaussian_probability():
    log = _two_actions(60, seed=1)
    policy = LinearTS(v=0.4, n_samples=4000, random_state=0).update(log)
    context = np.random.default_rng(2).normal(size=(25, 2))
    design = joint_features(context, log.action_features)
    means = design @ policy.coef_
    diff = design[:, 0] - design[:, 1]
    sd = 0.4 * np.sqrt(np.einsum("np,pq,nq->n", diff, np.linalg.inv(policy.precision_), diff))
    exact = stats.norm.cdf((means[:, 0] - means[:, 1]) / sd)
    estimate = policy.probabilities(context, log.action_features)[:, 0]
    assert ((exact > 0.1) & (exact < 0.9)).sum() >= 10  # a test of the estimate, not of the floor
    np.testing.assert_allclose(estimate, exact, atol=4 * np.sqrt(0.25 / 4000))


def _newton(x, y, prior_mean, prior_precision):
    w = prior_mean.copy()
    for _ in range(50):
        p = 1 / (1 + np.exp(-x @ w))
        hessian = prior_precision + x.T @ (x * (p * (1 - p))[:, None])
        w = w - np.linalg.solve(hessian, prior_precision @ (w - prior_mean) + x.T @ (p - y))
    p = 1 / (1 + np.exp(-x @ w))
    return w, prior_precision + x.T @ (x * (p * (1 - p))[:, None])


def test_logistic_ts_posterior_is_the_laplace_approximation_of_each_batch_in_turn():
    log = sample_feedback(300)
    policy = LogisticTS(l2=2.0, random_state=0)
    assert log.action_features is not None
    x = joint_features(log.context, log.action_features[np.arange(len(log)), log.action][:, None])[:, 0]
    mean, precision = np.zeros(x.shape[1]), 2.0 * np.eye(x.shape[1])
    for rows in (slice(0, 120), slice(120, None)):
        policy.update(log.subset(rows))
        mean, precision = _newton(x[rows], log.reward[rows], mean, precision)
        np.testing.assert_allclose(policy.coef_, mean, atol=1e-8)
        np.testing.assert_allclose(policy.precision_, precision, atol=1e-8)


def test_logistic_ts_first_update_is_the_l2_penalised_logistic_regression():
    log = _two_actions(400, seed=3)
    policy = LogisticTS(l2=1.0, random_state=0).update(log)
    x = joint_features(log.context, log.action_features[log.action][:, None])[:, 0]
    w = np.zeros(x.shape[1])
    loss = lambda w: np.logaddexp(0, x @ w).sum() - log.reward @ (x @ w) + 0.5 * w @ w  # noqa: E731
    gradient = x.T @ (1 / (1 + np.exp(-x @ policy.coef_)) - log.reward) + policy.coef_
    assert np.abs(gradient).max() < 1e-8
    assert loss(policy.coef_) < loss(w)


def test_bernoulli_ts_counts_and_its_monte_carlo_matches_the_exact_beta_probability():
    policy = BernoulliTS(alpha=1.0, beta=2.0, n_samples=4000, random_state=0)
    policy.update(_log([0, 0, 0, 1, 1, 2], [1, 1, 0, 1, 0, 0], n_actions=3))
    np.testing.assert_array_equal(policy.alpha_, [3, 2, 1])
    np.testing.assert_array_equal(policy.beta_, [3, 3, 3])
    probs = policy.probabilities(np.zeros((1, 2)), candidates=[[True, True, False]])[0]
    exact = integrate.quad(lambda t: stats.beta.pdf(t, 3, 3) * stats.beta.cdf(t, 2, 3), 0, 1)[0]
    assert probs[0] == pytest.approx(exact, abs=4 * np.sqrt(0.25 / 4000))
    assert probs[2] == 0.0


@pytest.mark.parametrize("make", [lambda: LinearTS(v=0.05, n_samples=100), lambda: LogisticTS(n_samples=100),
                                  lambda: BernoulliTS(n_samples=100)], ids=["LinearTS", "LogisticTS", "BernoulliTS"])
def test_thompson_propensities_are_floored_never_zero_and_reproducible(make):
    log = _two_actions(3000, seed=4)
    policy = make().set_params(random_state=0).update(log)
    context = np.random.default_rng(5).normal(size=(50, 2))
    probs = policy.probabilities(context, log.action_features)
    floor = 0.5 / 100 / (1 + 0.5 / 100)  # half a win, after renormalising
    assert probs.min() >= floor - 1e-15 and np.isclose(probs, floor).any()  # some candidates won no draw
    np.testing.assert_array_equal(probs, policy.probabilities(context, log.action_features))
    np.testing.assert_array_equal(probs[7], policy.probabilities(context[7:8], log.action_features)[0])
    choice = policy.choose(context, log.action_features)
    np.testing.assert_allclose(choice.propensities, probs[np.arange(50), choice.actions], rtol=1e-12)


def test_pruning_dominated_actions_does_not_change_the_estimate_beyond_monte_carlo_error(monkeypatch):
    env = ArtworkEnvironment(n_context_features=4, n_variants=6, n_variant_features=3, seed=1)
    policy = LinearTS(v=0.2, n_samples=2000, random_state=0)
    _learn(env, policy, rounds=4000, batch=500)
    impressions = env.sample(300)
    pruned = policy.probabilities(impressions.context, impressions.variant_features)
    monkeypatch.setattr(thompson_module, "PRUNE_SIGMAS", np.inf)
    full = policy.probabilities(impressions.context, impressions.variant_features)
    np.testing.assert_allclose(pruned, full, atol=5 * np.sqrt(0.25 / 2000))


# -- validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "parameter", "message"),
    [
        (EpsilonGreedy(epsilon=1.5), "epsilon", "EpsilonGreedy.epsilon must be a finite number >= 0 and <= 1"),
        (EpsilonGreedy(epsilon=float("nan")), "epsilon", "finite"),
        (EpsilonGreedy(l2=0.0), "l2", "EpsilonGreedy.l2 must be a finite number > 0"),
        (Softmax(temperature=0), "temperature", "Softmax.temperature must be a finite number > 0"),
        (LinUCB(alpha=-1), "alpha", "LinUCB.alpha must be a finite number >= 0"),
        (LinUCB(mode="both"), "mode", "LinUCB.mode must be one of 'shared', 'disjoint', not 'both'"),
        (LinearTS(v=True), "v", "LinearTS.v must be a finite number > 0, not True"),
        (LinearTS(n_samples=0), "n_samples", "LinearTS.n_samples must be a whole number >= 1"),
        (LogisticTS(max_iter=2.5), "max_iter", "LogisticTS.max_iter must be a whole number >= 1"),
        (BernoulliTS(alpha=0), "alpha", "BernoulliTS.alpha must be a finite number > 0"),
        (BernoulliTS(beta="1"), "beta", "BernoulliTS.beta must be a finite number > 0"),
        (UniformRandom(n_actions=0), "n_actions", "UniformRandom.n_actions must be a whole number >= 1"),
        (UniformRandom(random_state=-1), "random_state", "UniformRandom.random_state must be None"),
    ],
)
def test_bad_hyperparameters_are_named_on_first_use(policy, parameter, message):
    with pytest.raises(ParameterError, match=message.replace("(", r"\(")) as error:
        policy.choose(np.zeros((2, 3)), candidates=np.ones((2, 4), bool))
    assert error.value.parameter == parameter


def _used() -> LinearTS:
    return LinearTS(random_state=0).update(sample_feedback(50))


@pytest.mark.parametrize(
    ("call", "parameter", "message"),
    [
        (lambda: UniformRandom().probabilities(np.zeros((2, 3))), "n_actions", "cannot tell how many actions"),
        (lambda: UniformRandom(n_actions=3).probabilities(np.zeros((1, 2)), np.zeros((4, 2))), "action_features",
         "action_features has 4 actions, but n_actions=3"),
        (lambda: _used().probabilities(np.zeros((1, 5)), np.zeros((4, 2))), "context", "context has 5 features"),
        (lambda: _used().probabilities(np.zeros((1, 3)), np.zeros((5, 2))), "action_features", "has 4"),
        (lambda: _used().probabilities(np.zeros((1, 3)), np.zeros((4, 3))), "action_features",
         "first used with 2 action features; these rounds have 3"),
        (lambda: _used().probabilities(np.zeros((1, 3)), candidates=np.ones((1, 4))), "action_features",
         "these rounds have none"),
        (lambda: _used().probabilities(np.zeros((1, 3)), np.zeros((2, 4, 2))), "action_features", r"\(1, n_actions, k\)"),
        (lambda: _used().probabilities(np.zeros(3), np.zeros((4, 2))), "context", r"shape \(n, d\)"),
        (lambda: _used().choose(np.zeros((2, 3)), np.zeros((4, 2)), [[1, 1, 1, 1], [0, 0, 0, 0]]), "candidates",
         "round 1 has no candidate"),
        (lambda: _used().choose(np.zeros((2, 3)), np.zeros((4, 2)), [[1, 2, 1, 1]] * 2), "candidates", "boolean"),
        (lambda: _used().update("log"), "feedback", "update takes LoggedFeedback, not str"),
        (lambda: _used().update(sample_feedback(10, n_actions=5)), "n_actions", "n_actions has 5 actions"),
        (lambda: LogisticTS().update(_log([0, 1], [1, 2], n_actions=2)), "reward", "rewards in \\[0, 1\\]"),
        (lambda: BernoulliTS().update(_log([0, 1], [-1, 0], n_actions=2)), "reward", "round 0 has -1.0"),
    ],
)
def test_bad_inputs_are_named(call, parameter, message):
    with pytest.raises(ParameterError, match=message) as error:
        call()
    assert error.value.parameter == parameter


def test_init_only_stores_hyperparameters_and_learns_shapes_lazily():
    policy = LinearTS(v=0.2, n_actions=4)
    assert vars(policy) == {"v": 0.2, "l2": 1.0, "n_samples": 1000, "n_actions": 4, "random_state": None}
    policy.probabilities(np.zeros((1, 3)), candidates=np.ones((1, 4), bool))
    assert (policy.n_actions_, policy.n_context_features_, policy.n_action_features_) == (4, 3, None)
    assert policy.coef_.shape == (n_joint_features(3, 4),)
    clone = pickle.loads(pickle.dumps(policy))
    assert clone.get_params() == policy.get_params()


# -- joint features -------------------------------------------------------------------------------------


def test_joint_features_are_intercept_action_features_and_context_major_products():
    x = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]])
    z = np.arange(2 * 4 * 2, dtype=float).reshape(2, 4, 2)
    out = joint_features(x, z)
    assert out.shape == (2, 4, n_joint_features(3, 2)) == (2, 4, 9)
    for i in range(2):
        for a in range(4):
            expected = [1.0, *z[i, a], *[x[i, j] * z[i, a, m] for j in range(3) for m in range(2)]]
            np.testing.assert_array_equal(out[i, a], expected)
    np.testing.assert_array_equal(joint_features(x, z[0]), joint_features(x, np.stack([z[0], z[0]])))
    np.testing.assert_array_equal(joint_features(x, z, intercept=False), out[..., 1:])


@pytest.mark.parametrize(
    ("context", "features", "parameter"),
    [
        (np.zeros(3), np.zeros((4, 2)), "context"),
        (np.zeros((2, 3)), np.zeros(4), "action_features"),
        (np.zeros((2, 3)), np.zeros((3, 4, 2)), "action_features"),
        (np.full((2, 3), np.nan), np.zeros((4, 2)), "context"),
        (np.zeros((2, 3)), np.full((4, 2), np.inf), "action_features"),
    ],
)
def test_joint_features_reject_bad_shapes_and_values(context, features, parameter):
    with pytest.raises(ParameterError) as error:
        joint_features(context, features)
    assert error.value.parameter == parameter


# -- learning on the simulator (seeded) -----------------------------------------------------------------


def _learn(env: ArtworkEnvironment, policy: Policy, rounds: int, batch: int = 1000,
           last: int | None = None) -> tuple[float, float]:
    """Play ``rounds`` rounds with updates every ``batch``; expected reward and oracle's over the ``last`` ones."""
    got, best = [], []
    for _ in range(rounds // batch):
        impressions = env.sample(batch)
        choice = policy.choose(impressions.context, impressions.variant_features, impressions.mask)
        got.append(env.play_probability(impressions, choice.actions))
        best.append(env.oracle(impressions)[1])
        policy.update(LoggedFeedback(context=impressions.context, action=choice.actions,
                                     reward=env.reward(impressions, choice.actions), propensity=choice.propensities,
                                     n_actions=env.n_variants, action_features=impressions.variant_features))
    tail = slice(-(last or rounds), None)
    return float(np.concatenate(got)[tail].sum()), float(np.concatenate(best)[tail].sum())


@pytest.fixture(scope="module")
def shares() -> dict[str, float]:
    """Share of the oracle's expected reward over the last 10k of 30k rounds, per policy (same impressions)."""
    makers: dict[str, Callable[[], Policy]] = {
        "UniformRandom": lambda: UniformRandom(random_state=0),
        "BernoulliTS": lambda: BernoulliTS(n_samples=300, random_state=0),
        "LinUCB": lambda: LinUCB(alpha=0.5, random_state=0),
        "LinearTS": lambda: LinearTS(v=0.1, n_samples=300, random_state=0),
        "LogisticTS": lambda: LogisticTS(n_samples=300, random_state=0),
    }
    out = {}
    for name, make in makers.items():
        env = ArtworkEnvironment(n_context_features=20, n_variants=10, n_variant_features=5, seed=3)
        got, best = _learn(env, make(), rounds=30_000, last=10_000)
        out[name] = got / best
    return out


@pytest.mark.parametrize("name", ["LinUCB", "LinearTS", "LogisticTS"])
def test_contextual_policies_learn_most_of_the_gap_the_context_free_ones_leave(shares, name):
    naive = max(shares["UniformRandom"], shares["BernoulliTS"])
    assert shares["UniformRandom"] < 0.7  # the context matters: a context-free policy is far from the oracle
    assert shares[name] - naive > 0.8 * (1.0 - naive)
    assert shares[name] > 0.95


def _trained_on(env: ArtworkEnvironment, policy: Policy, rounds: int) -> Policy:
    _learn(env, policy, rounds=rounds, batch=500)
    return policy


@pytest.mark.parametrize(
    "make",
    [lambda: EpsilonGreedy(epsilon=0.3), lambda: Softmax(temperature=0.05), lambda: LinearTS(v=0.3, n_samples=2000),
     lambda: LogisticTS(n_samples=2000), lambda: BernoulliTS(n_samples=2000)],
    ids=["EpsilonGreedy", "Softmax", "LinearTS", "LogisticTS", "BernoulliTS"],
)
def test_choices_follow_the_probabilities_on_the_simulator(make):
    env = ArtworkEnvironment(n_context_features=5, n_variants=4, n_variant_features=3, seed=2)
    policy = _trained_on(env, make().set_params(random_state=0), rounds=1000)
    impressions = env.sample(200)
    probs = policy.probabilities(impressions.context, impressions.variant_features)
    rows = np.argsort(-(probs * (1 - probs)).max(axis=1))[:4]  # the most uncertain rounds
    assert (probs[rows] * (1 - probs[rows])).max() > 0.05
    repeats = 4000
    context = np.repeat(impressions.context[rows], repeats, axis=0)
    features = np.repeat(impressions.variant_features[rows], repeats, axis=0)
    actions = policy.choose(context, features).actions.reshape(len(rows), repeats)
    freq = np.stack([np.bincount(a, minlength=4) for a in actions]) / repeats
    sampling = 4 * np.sqrt(probs[rows] * (1 - probs[rows]) / repeats) + 1e-3
    monte_carlo = 0.0 if policy.exact_propensities else 4 * np.sqrt(probs[rows] * (1 - probs[rows]) / 2000)
    assert (np.abs(freq - probs[rows]) <= sampling + monte_carlo).all()


# -- docs -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module",
    ["matinee.apps.artwork.features", "matinee.apps.artwork.policies", "matinee.apps.artwork.policies.simple",
     "matinee.apps.artwork.policies.linucb", "matinee.apps.artwork.policies.thompson", "matinee.testing.policies"],
)
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize("name", list(POLICIES))
def test_a_policy_stored_as_an_artifact_carries_on_where_it_stopped(name, tmp_path: Path):
    store = ArtifactStore(LocalBlobStore(tmp_path / "blobs"))
    policy = POLICIES[name]().set_params(random_state=1).update(sample_feedback(80))
    loaded = store.load(store.save(policy))
    log = sample_feedback(30, seed=9)
    rounds = (log.context, log.action_features, log.candidates)
    first, second = policy.choose(*rounds), loaded.choose(*rounds)
    np.testing.assert_array_equal(first.actions, second.actions)
    np.testing.assert_array_equal(first.propensities, second.propensities)
    policy.update(log)
    loaded.update(log)
    np.testing.assert_array_equal(policy.probabilities(*rounds), loaded.probabilities(*rounds))
