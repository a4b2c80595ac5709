"""Reward models: closed-form ridge and Newton logistic against direct solutions, cross-fitting, bad inputs."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from scipy.optimize import minimize

from matinee.apps.artwork import LoggedFeedback
from matinee.apps.artwork import reward_models as module_under_test
from matinee.apps.artwork.reward_models import LogisticRewardModel, RewardModel, RidgeRewardModel
from matinee.errors import ParameterError

N, A, D, K = 600, 3, 2, 2


def make_log(seed=0, per_round_features=False, binary=True):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, D))
    action = rng.integers(0, A, N)
    feats = rng.normal(size=(N, A, K)) if per_round_features else rng.normal(size=(A, K))
    p = 0.2 + 0.15 * action + 0.1 * np.tanh(x[:, 0])
    reward = (rng.random(N) < p).astype(float) if binary else p + rng.normal(0, 0.1, N)
    return LoggedFeedback(context=x, action=action, reward=reward, propensity=np.full(N, 1 / A), n_actions=A,
                          action_features=feats, position=rng.integers(0, 2, N))


def test_models_satisfy_the_protocol():
    assert isinstance(RidgeRewardModel(), RewardModel)
    assert isinstance(LogisticRewardModel(), RewardModel)


def test_ridge_per_action_equals_a_direct_solve_on_the_other_folds():
    log = make_log(binary=False)
    model = RidgeRewardModel(alpha=0.7, n_folds=3, by_position=False)
    q = model.fit_predict(log)
    u = np.c_[np.ones(N), log.context]
    for k in range(3):
        train, test = model.folds_ != k, model.folds_ == k
        rbar = log.reward[train].mean()
        for a in range(A):
            rows = train & (log.action == a)
            theta = np.linalg.solve(u[rows].T @ u[rows] + 0.7 * np.eye(D + 1), u[rows].T @ (log.reward[rows] - rbar))
            np.testing.assert_allclose(q[test, a], rbar + u[test] @ theta, atol=1e-10)


@pytest.mark.parametrize("per_round", [False, True], ids=["shared features", "per-round features"])
def test_ridge_shared_equals_a_direct_solve(per_round):
    log = make_log(per_round_features=per_round, binary=False)
    model = RidgeRewardModel(alpha=0.3, n_folds=2, features="shared", by_position=True)
    q = model.fit_predict(log)
    u = np.c_[np.ones(N), log.context]
    feats = log.features_of()
    fv = np.concatenate([np.ones((N, A, 1)), feats], axis=2)
    phi = (u[:, None, :, None] * fv[:, :, None, :]).reshape(N, A, -1)  # (n, A, p)
    z = phi[np.arange(N), log.action]
    for k in range(2):
        train = model.folds_ != k
        rbar = log.reward[train].mean()
        for pos in range(2):
            rows = train & (log.position == pos)
            theta = np.linalg.solve(z[rows].T @ z[rows] + 0.3 * np.eye(z.shape[1]),
                                    z[rows].T @ (log.reward[rows] - rbar))
            test = (model.folds_ == k) & (log.position == pos)
            np.testing.assert_allclose(q[test], rbar + phi[test] @ theta, atol=1e-10)


def test_logistic_equals_a_direct_minimisation():
    log = make_log()
    model = LogisticRewardModel(alpha=0.5, n_folds=2, by_position=False, tol=1e-12)
    q = model.fit_predict(log)
    u = np.c_[np.ones(N), log.context]
    train, test = model.folds_ != 0, model.folds_ == 0
    rbar = log.reward[train].mean()
    offset = np.log(rbar / (1 - rbar))
    for a in range(A):
        rows = train & (log.action == a)
        z, y = u[rows], log.reward[rows]

        def loss(t, z=z, y=y):
            eta = offset + z @ t
            return np.sum(np.logaddexp(0, eta) - y * eta) + 0.25 * t @ t

        def grad(t, z=z, y=y):
            return z.T @ (1 / (1 + np.exp(-(offset + z @ t))) - y) + 0.5 * t

        theta = minimize(loss, np.zeros(D + 1), jac=grad, method="BFGS", options={"gtol": 1e-12}).x
        np.testing.assert_allclose(q[test, a], 1 / (1 + np.exp(-(offset + u[test] @ theta))), atol=1e-7)


@pytest.mark.parametrize("model", [RidgeRewardModel(), LogisticRewardModel()], ids=repr)
def test_cross_fitting_keeps_a_rounds_reward_out_of_its_prediction(model):
    log = make_log()
    q = model.fit_predict(log)
    flipped = log.reward.copy()
    flipped[0] = 1 - flipped[0]
    other = LoggedFeedback(context=log.context, action=log.action, reward=flipped, propensity=log.propensity,
                           n_actions=A, position=log.position)
    q2 = type(model)(**model.get_params()).fit_predict(other)
    np.testing.assert_allclose(q2[0], q[0], atol=1e-12)  # round 0's prediction ignores round 0
    assert not np.allclose(q2[1:], q[1:])  # other folds' predictions do use it


def test_one_fold_fits_in_sample():
    log = make_log(binary=False)
    q = RidgeRewardModel(n_folds=1, alpha=1e-9, by_position=False).fit_predict(log)
    u = np.c_[np.ones(N), log.context]
    rows = log.action == 0
    theta = np.linalg.lstsq(u[rows], log.reward[rows], rcond=None)[0]
    np.testing.assert_allclose(q[rows, 0], u[rows] @ theta, atol=1e-6)


def test_sample_weight_counts_like_copies_within_a_fold():
    log = make_log(binary=False)
    model = RidgeRewardModel(n_folds=1)
    weight = np.ones(N)
    weight[:10] = 3
    duplicated = log.subset(np.r_[np.arange(N), np.repeat(np.arange(10), 2)])
    np.testing.assert_allclose(model.fit_predict(log, sample_weight=weight)[:N],
                               model.fit_predict(duplicated)[:N], atol=1e-10)


def test_unseen_action_predicts_the_mean_reward():
    log = make_log(binary=False)
    log = LoggedFeedback(context=log.context, action=np.minimum(log.action, 1), reward=log.reward,
                         propensity=log.propensity, n_actions=A)
    model = RidgeRewardModel(n_folds=2)
    q = model.fit_predict(log)
    for k in range(2):
        np.testing.assert_allclose(q[model.folds_ == k, 2], log.reward[model.folds_ != k].mean())


def test_logistic_predictions_are_probabilities():
    q = LogisticRewardModel().fit_predict(make_log())
    assert q.shape == (N, A) and (q > 0).all() and (q < 1).all()


BAD = [
    (RidgeRewardModel(alpha=0), {}, "alpha"),
    (RidgeRewardModel(alpha=-1.0), {}, "alpha"),
    (RidgeRewardModel(n_folds=0), {}, "n_folds"),
    (RidgeRewardModel(n_folds=2.5), {}, "n_folds"),
    (RidgeRewardModel(n_folds=N + 1), {}, "n_folds"),
    (RidgeRewardModel(features="deep"), {}, "features"),
    (RidgeRewardModel(), {"sample_weight": np.ones(3)}, "sample_weight"),
    (RidgeRewardModel(), {"sample_weight": -np.ones(N)}, "sample_weight"),
    (LogisticRewardModel(), {"sample_weight": np.full(N, np.nan)}, "sample_weight"),
]


@pytest.mark.parametrize("model, kwargs, parameter", BAD, ids=lambda v: repr(v)[:40])
def test_bad_hyperparameters_and_weights(model, kwargs, parameter):
    with pytest.raises(ParameterError) as info:
        model.fit_predict(make_log(), **kwargs)
    assert info.value.parameter == parameter


def test_shared_features_need_action_features():
    log = make_log()
    bare = LoggedFeedback(context=log.context, action=log.action, reward=log.reward, propensity=log.propensity,
                          n_actions=A)
    with pytest.raises(ParameterError, match="action_features") as info:
        RidgeRewardModel(features="shared").fit_predict(bare)
    assert info.value.parameter == "features"


def test_logistic_needs_rewards_in_unit_interval():
    with pytest.raises(ParameterError, match=r"\[0, 1\]") as info:
        LogisticRewardModel().fit_predict(make_log(binary=False))
    assert info.value.parameter == "reward"


def test_feedback_must_be_logged_feedback():
    with pytest.raises(ParameterError) as info:
        RidgeRewardModel().fit_predict({"reward": [1]})
    assert info.value.parameter == "feedback"


def test_params_and_repr():
    assert LogisticRewardModel(alpha=2.0).get_params()["alpha"] == 2.0
    assert repr(RidgeRewardModel()).startswith("RidgeRewardModel(alpha=1.0, n_folds=5")


def test_docstring_examples_run():
    assert doctest.testmod(module_under_test, optionflags=doctest.ELLIPSIS).failed == 0
