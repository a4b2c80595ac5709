"""Off-policy estimators: hand-computed cases, clipping, diagnostics, positions, bootstrap, bad inputs."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from matinee.apps.artwork import LoggedFeedback
from matinee.apps.artwork import ope as ope_package
from matinee.apps.artwork.ope import (
    DM,
    DR,
    IPS,
    SNDR,
    SNIPS,
    Estimate,
    Replay,
    SwitchDR,
    _base,
    estimators,
    evaluate,
)
from matinee.apps.artwork.reward_models import RidgeRewardModel
from matinee.errors import ParameterError

# A four-round log by hand: two actions, propensities 0.5 / 0.25 / 0.5 / 0.75.
ACTION = np.array([0, 1, 0, 1])
REWARD = np.array([1.0, 0.0, 0.0, 1.0])
PROPENSITY = np.array([0.5, 0.25, 0.5, 0.75])
PI_E = np.array([[0.8, 0.2], [0.6, 0.4], [0.1, 0.9], [0.5, 0.5]])
Q_HAT = np.array([[0.7, 0.2], [0.5, 0.4], [0.3, 0.6], [0.1, 0.9]])
# Weights pi_e(a_i) / propensity_i
W = np.array([0.8 / 0.5, 0.4 / 0.25, 0.1 / 0.5, 0.5 / 0.75])
DM_ROUNDS = (PI_E * Q_HAT).sum(axis=1)
Q_LOGGED = Q_HAT[np.arange(4), ACTION]


def small_log(**overrides):
    fields = dict(context=np.zeros((4, 1)), action=ACTION, reward=REWARD, propensity=PROPENSITY, n_actions=2)
    fields.update(overrides)
    return LoggedFeedback(**fields)


HAND = [
    pytest.param(IPS(), np.mean(W * REWARD), id="ips"),
    pytest.param(IPS(clip=1.0), np.mean(np.minimum(W, 1.0) * REWARD), id="ips clipped"),
    pytest.param(SNIPS(), np.sum(W * REWARD) / np.sum(W), id="snips"),
    pytest.param(SNIPS(clip=1.0), np.sum(np.minimum(W, 1) * REWARD) / np.sum(np.minimum(W, 1)), id="snips clipped"),
    pytest.param(DM(), DM_ROUNDS.mean(), id="dm"),
    pytest.param(DR(), np.mean(DM_ROUNDS + W * (REWARD - Q_LOGGED)), id="dr"),
    pytest.param(DR(clip=1.0), np.mean(DM_ROUNDS + np.minimum(W, 1) * (REWARD - Q_LOGGED)), id="dr clipped"),
    pytest.param(SNDR(), DM_ROUNDS.mean() + np.sum(W * (REWARD - Q_LOGGED)) / np.sum(W), id="sndr"),
    pytest.param(SwitchDR(tau=1.0), np.mean(DM_ROUNDS + (W <= 1.0) * W * (REWARD - Q_LOGGED)), id="switch-dr"),
    pytest.param(SwitchDR(), np.mean(DM_ROUNDS + W * (REWARD - Q_LOGGED)), id="switch-dr tau=inf is dr"),
    pytest.param(SwitchDR(tau=0.0), DM_ROUNDS.mean(), id="switch-dr tau=0 is dm"),
]


@pytest.mark.parametrize("estimator, expected", HAND)
def test_hand_computed_values(estimator, expected):
    result = estimator.estimate(small_log(), PI_E, Q_HAT, n_bootstrap=0)
    assert result.value == pytest.approx(expected, abs=1e-12)
    assert result.contributions.mean() == pytest.approx(expected, abs=1e-12)
    assert np.isnan(result.low) and np.isnan(result.high) and result.n_bootstrap == 0


def test_hand_computed_numbers_spelled_out():
    # IPS: (1.6 * 1 + 1.6 * 0 + 0.2 * 0 + 0.6667 * 1) / 4
    assert IPS().value(small_log(), PI_E) == pytest.approx((1.6 + 2 / 3) / 4)
    # clipped at 1: (1 + 0 + 0 + 0.6667) / 4
    assert IPS(clip=1.0).value(small_log(), PI_E) == pytest.approx((1 + 2 / 3) / 4)
    # DM: (0.6 + 0.46 + 0.57 + 0.5) / 4
    assert DM().value(small_log(), PI_E, Q_HAT) == pytest.approx((0.6 + 0.46 + 0.57 + 0.5) / 4)


def test_replay_keeps_rounds_where_the_policy_would_have_chosen_the_logged_action():
    log = small_log(propensity=np.full(4, 0.5))
    # argmax per round: 0, 0, 1, 0 (ties go to the lowest index); logged 0, 1, 0, 1: only round 0 matches
    result = Replay().estimate(log, PI_E, n_bootstrap=0)
    matched = np.array([1, 0, 0, 0], dtype=float)
    assert result.value == pytest.approx((matched * REWARD).sum() / matched.sum())
    assert result.ess == pytest.approx(matched.sum())  # Kish ESS of match / propensity = number of matches
    assert result.max_weight == pytest.approx(2.0)


def test_replay_with_a_deterministic_policy_is_the_mean_reward_of_matching_rounds():
    log = small_log(propensity=np.full(4, 0.5))
    pi = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])  # matches rounds 0, 1, 3
    assert Replay().value(log, pi) == pytest.approx((1 + 0 + 1) / 3)
    assert Replay(policy_action="sample").value(log, pi) == pytest.approx((1 + 0 + 1) / 3)


def test_replay_sample_draws_from_pi_e():
    rng = np.random.default_rng(0)
    n = 20000
    action = rng.integers(0, 2, n)
    log = LoggedFeedback(context=np.zeros((n, 1)), action=action, reward=(action == 1).astype(float),
                         propensity=np.full(n, 0.5), n_actions=2)
    pi = np.tile([0.3, 0.7], (n, 1))
    sampled = Replay(policy_action="sample").estimate(log, pi, n_bootstrap=0, random_state=1).value
    assert sampled == pytest.approx(0.7, abs=0.02)  # the stochastic policy's value
    assert Replay().value(log, pi) == 1.0  # argmax: always action 1


def test_replay_without_matches_is_nan():
    log = small_log(propensity=np.full(4, 0.5), action=np.zeros(4, dtype=int))
    assert np.isnan(Replay().value(log, np.tile([0.0, 1.0], (4, 1))))


def test_replay_rejects_non_uniform_logs_unless_told():
    with pytest.raises(ParameterError, match="uniformly random") as info:
        Replay().value(small_log(), PI_E)
    assert info.value.parameter == "feedback"
    assert Replay(require_uniform=False).value(small_log(), PI_E) == pytest.approx(1.0)


def test_replay_uniform_check_counts_candidates():
    candidates = np.array([[True, True, False]] * 4)
    log = LoggedFeedback(context=np.zeros((4, 1)), action=[0, 1, 0, 1], reward=REWARD,
                         propensity=np.full(4, 0.5), n_actions=3, candidates=candidates)
    pi = np.tile([1.0, 0.0, 0.0], (4, 1))
    assert Replay().value(log, pi) == pytest.approx(0.5)


def test_weight_diagnostics_by_hand():
    result = IPS(weight_threshold=1.5).estimate(small_log(), PI_E, n_bootstrap=0)
    assert result.ess == pytest.approx(W.sum() ** 2 / (W**2).sum())
    assert result.max_weight == pytest.approx(1.6)
    assert result.mean_weight == pytest.approx(W.mean())
    assert result.share_above_threshold == pytest.approx(0.5)  # 1.6 and 1.6 exceed 1.5
    assert result.weight_threshold == 1.5


def test_diagnostics_describe_the_weights_the_estimator_uses():
    clipped = IPS(clip=1.0).estimate(small_log(), PI_E, n_bootstrap=0)
    assert clipped.max_weight == 1.0
    switched = SwitchDR(tau=1.0).estimate(small_log(), PI_E, Q_HAT, n_bootstrap=0)
    assert switched.max_weight == pytest.approx(2 / 3)
    dm = DM().estimate(small_log(), PI_E, Q_HAT, n_bootstrap=0)
    assert dm.max_weight == pytest.approx(1.6)  # DM reports the raw weights


def test_equal_policies_give_weights_of_one_and_full_ess():
    log = small_log()
    pi = np.zeros((4, 2))
    pi[np.arange(4), ACTION] = PROPENSITY
    pi[np.arange(4), 1 - ACTION] = 1 - PROPENSITY
    result = IPS().estimate(log, pi, n_bootstrap=0)
    assert result.ess == pytest.approx(4.0)
    assert result.mean_weight == pytest.approx(1.0)
    assert result.value == pytest.approx(REWARD.mean())


def test_positions_select_each_rounds_own_slice():
    position = np.array([0, 1, 1, 0])
    log = small_log(position=position)
    pi3 = np.stack([PI_E, PI_E[::-1]], axis=2)  # position 1 sees the rows reversed
    q3 = np.stack([Q_HAT, Q_HAT[::-1]], axis=2)
    at_position = np.where(position[:, None] == 0, PI_E, PI_E[::-1])
    q_at_position = np.where(position[:, None] == 0, Q_HAT, Q_HAT[::-1])
    for estimator in (IPS(), SNIPS(), DM(), DR(), SNDR(), SwitchDR(tau=1.0)):
        assert estimator.value(log, pi3, q3) == pytest.approx(estimator.value(log, at_position, q_at_position))


def test_single_position_axis_without_positions():
    assert IPS().value(small_log(), PI_E[:, :, None]) == pytest.approx(IPS().value(small_log(), PI_E))


# -- bad inputs: (estimator, arguments, message, parameter) ----------------------------------------
def _args(**kw):
    base = {"feedback": small_log(), "pi_e": PI_E, "reward_model": Q_HAT}
    base.update(kw)
    return base


BAD = [
    pytest.param(IPS(), _args(pi_e=np.array([[0.5, 0.4]] * 4)), "rows must sum to 1; round 0", "pi_e", id="rows"),
    pytest.param(IPS(), _args(pi_e=PI_E[:3]), r"shape \(4, 2\)", "pi_e", id="short"),
    pytest.param(IPS(), _args(pi_e=np.ones((4, 3)) / 3), r"shape \(4, 2\)", "pi_e", id="actions"),
    pytest.param(IPS(), _args(pi_e=np.ones(4)), r"shape \(4, 2\)", "pi_e", id="1-d"),
    pytest.param(IPS(), _args(pi_e=np.array([[1.5, -0.5]] * 4)), "negative", "pi_e", id="negative"),
    pytest.param(IPS(), _args(pi_e=np.array([[np.nan, 1.0]] * 4)), "NaN", "pi_e", id="nan"),
    pytest.param(IPS(), _args(pi_e=np.array([[np.inf, 0.0]] * 4)), "NaN or infinite", "pi_e", id="inf"),
    pytest.param(IPS(), _args(pi_e="abc"), "array of numbers", "pi_e", id="text"),
    pytest.param(IPS(), _args(pi_e=np.ones((4, 2, 2)) / 2), "feedback.position is not set", "pi_e",
                 id="positions without position"),
    pytest.param(IPS(), _args(feedback=small_log(position=np.array([0, 1, 2, 0])), pi_e=np.ones((4, 2, 2)) / 2),
                 r"whole numbers in \[0, 2\)", "pi_e", id="position beyond pi_e"),
    pytest.param(IPS(), _args(pi_e=np.ones((3, 2, 1)) / 2), r"n_positions", "pi_e", id="3-d mismatched"),
    pytest.param(IPS(), _args(feedback={"action": ACTION}), "LoggedFeedback", "feedback", id="dict"),
    pytest.param(DR(), _args(reward_model=Q_HAT[:2]), r"shape \(4, 2\)", "reward_model", id="q_hat short"),
    pytest.param(DR(), _args(reward_model=np.full((4, 2), np.inf)), "NaN or infinite", "reward_model",
                 id="q_hat inf"),
    pytest.param(IPS(clip=0.0), _args(), "clip must be a number > 0", "clip", id="clip 0"),
    pytest.param(DR(clip=-1), _args(), "clip", "clip", id="clip negative"),
    pytest.param(IPS(clip="big"), _args(), "clip", "clip", id="clip text"),
    pytest.param(SwitchDR(tau=-1.0), _args(), "tau must be a number >= 0", "tau", id="tau negative"),
    pytest.param(SwitchDR(tau=float("nan")), _args(), "tau", "tau", id="tau nan"),
    pytest.param(IPS(weight_threshold=-1), _args(), "weight_threshold", "weight_threshold", id="threshold"),
    pytest.param(Replay(policy_action="best"), _args(feedback=small_log(propensity=np.full(4, 0.5))),
                 "policy_action", "policy_action", id="replay action"),
]


@pytest.mark.parametrize("estimator, arguments, message, parameter", BAD)
def test_bad_inputs_name_the_argument(estimator, arguments, message, parameter):
    with pytest.raises(ParameterError, match=message) as info:
        estimator.estimate(**arguments, n_bootstrap=0)
    assert info.value.parameter == parameter


def test_mass_on_non_candidates_is_rejected():
    candidates = np.array([[True, True, False]] * 4)
    log = LoggedFeedback(context=np.zeros((4, 1)), action=ACTION, reward=REWARD, propensity=PROPENSITY,
                         n_actions=3, candidates=candidates)
    with pytest.raises(ParameterError, match="not a candidate at round 0") as info:
        IPS().value(log, np.full((4, 3), 1 / 3))
    assert info.value.parameter == "pi_e"


def test_mismatched_lengths_in_the_log_are_rejected_by_the_contract():
    with pytest.raises(ParameterError) as info:
        small_log(reward=REWARD[:3])
    assert info.value.parameter == "reward"


@pytest.mark.parametrize("kwargs, parameter", [
    ({"n_bootstrap": -1}, "n_bootstrap"), ({"n_bootstrap": 1.5}, "n_bootstrap"), ({"n_bootstrap": True}, "n_bootstrap"),
    ({"level": 1.0}, "level"), ({"level": 0}, "level"), ({"level": "90%"}, "level"),
])
def test_bad_bootstrap_arguments(kwargs, parameter):
    with pytest.raises(ParameterError) as info:
        IPS().estimate(small_log(), PI_E, **kwargs)
    assert info.value.parameter == parameter


# -- bootstrap ------------------------------------------------------------------------------------
def random_log(n=2000, n_actions=3, seed=0, uniform=False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    pb = np.full((n, n_actions), 1 / n_actions) if uniform else rng.dirichlet(np.full(n_actions, 5.0), n)
    a = (pb.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    r = (rng.random(n) < 0.2 + 0.2 * a / n_actions + 0.1 * (x[:, 0] > 0)).astype(float)
    pi = rng.dirichlet(np.ones(n_actions), n)
    return LoggedFeedback(context=x, action=a, reward=r, propensity=pb[np.arange(n), a], n_actions=n_actions), pi


def test_bootstrap_counts_are_resamples_of_n_rounds():
    chunks = [c.copy() for c in _base.bootstrap_counts(50, 7, np.random.default_rng(0))]
    counts = np.vstack(chunks)
    assert counts.shape == (7, 50)
    assert (counts.sum(axis=1) == 50).all() and (counts >= 0).all()


def test_bootstrap_is_reproducible_and_brackets_the_estimate():
    log, pi = random_log()
    for estimator in (IPS(), SNIPS(), DM(), DR(), SNDR(), SwitchDR(tau=2.0)):
        first = estimator.estimate(log, pi, n_bootstrap=200, level=0.9, random_state=3)
        again = estimator.estimate(log, pi, n_bootstrap=200, level=0.9, random_state=3)
        assert (first.low, first.high) == (again.low, again.high)
        assert first.low < first.value < first.high
        assert first.n_bootstrap == 200 and first.level == 0.9


def test_a_higher_level_gives_a_wider_interval():
    log, pi = random_log()
    narrow = IPS().estimate(log, pi, n_bootstrap=500, level=0.5, random_state=0)
    wide = IPS().estimate(log, pi, n_bootstrap=500, level=0.99, random_state=0)
    assert wide.low < narrow.low < narrow.high < wide.high


def test_ips_bootstrap_matches_resampling_copies():
    log, pi = random_log(n=300)
    rng = np.random.default_rng(5)
    counts = np.vstack([c.copy() for c in _base.bootstrap_counts(len(log), 100, rng)])
    values = []
    for c in counts:
        idx = np.repeat(np.arange(len(log)), c.astype(int))
        values.append(IPS().value(log.subset(idx), pi[idx]))
    low, high = np.percentile(values, [5, 95])
    result = IPS().estimate(log, pi, n_bootstrap=100, level=0.9, random_state=5)
    assert (result.low, result.high) == pytest.approx((low, high), abs=1e-12)


class _SlowRidge:
    """The ridge model behind only ``fit_predict``: forces the resample-by-resample refit."""

    def __init__(self):
        self.model = RidgeRewardModel(n_folds=3)

    def fit_predict(self, feedback, sample_weight=None):
        return self.model.fit_predict(feedback, sample_weight=sample_weight)


@pytest.mark.parametrize("estimator", [DM(), DR(), SNDR(), SwitchDR(tau=2.0), DR(clip=2.0)], ids=str)
def test_batched_refit_equals_refitting_each_resample(estimator):
    log, pi = random_log(n=400)
    fast = estimator.estimate(log, pi, RidgeRewardModel(n_folds=3), n_bootstrap=30, random_state=1)
    slow = estimator.estimate(log, pi, _SlowRidge(), n_bootstrap=30, random_state=1)
    assert fast.refit and slow.refit
    assert fast.value == pytest.approx(slow.value, abs=1e-12)
    assert (fast.low, fast.high) == pytest.approx((slow.low, slow.high), abs=1e-10)


def test_fixed_predictions_do_not_refit_and_give_narrower_dm_intervals():
    log, pi = random_log(n=1000)
    model = RidgeRewardModel()
    q_hat = model.fit_predict(log)
    fixed = DM().estimate(log, pi, q_hat, n_bootstrap=300, random_state=0)
    refit = DM().estimate(log, pi, model, n_bootstrap=300, random_state=0)
    assert not fixed.refit and refit.refit
    assert fixed.value == pytest.approx(refit.value)
    assert fixed.high - fixed.low < refit.high - refit.low


def test_default_reward_model_is_cross_fitted_ridge():
    log, pi = random_log(n=500)
    assert DR().value(log, pi) == pytest.approx(DR().value(log, pi, RidgeRewardModel()))


def test_estimate_fields():
    log, pi = random_log(n=500)
    result = DR().estimate(log, pi, n_bootstrap=50, random_state=0)
    assert isinstance(result, Estimate)
    assert result.interval == (result.low, result.high)
    assert result.covers(result.value) and not result.covers(result.high + 1)
    row = result.to_dict()
    assert row["estimator"] == "dr" and row["n_rounds"] == 500 and "contributions" not in row
    assert "dr:" in repr(result)
    assert result.contributions.shape == (500,)


# -- evaluate -------------------------------------------------------------------------------------
def test_evaluate_runs_every_default_estimator_on_the_same_resamples():
    log, pi = random_log(n=600)
    results = evaluate(log, pi, n_bootstrap=100, random_state=2)
    assert sorted(results) == ["dm", "dr", "ips", "sndr", "snips", "switch-dr"]
    alone = IPS().estimate(log, pi, n_bootstrap=100, random_state=2)
    assert (results["ips"].low, results["ips"].high) == (alone.low, alone.high)
    assert results["dr"].value == pytest.approx(DR().value(log, pi))


def test_evaluate_names_repeats_and_rejects_non_estimators():
    log, pi = random_log(n=200, uniform=True)
    results = evaluate(log, pi, [IPS(), IPS(clip=2.0), Replay()], n_bootstrap=0)
    assert sorted(results) == ["ips", "ips#2", "replay"]
    with pytest.raises(ParameterError) as info:
        evaluate(log, pi, [IPS, "dr"])
    assert info.value.parameter == "estimators"


def test_repr_and_params():
    assert repr(SwitchDR(tau=3.0)) == "SwitchDR(weight_threshold=10.0, tau=3.0)"
    assert IPS(clip=2.0).get_params() == {"weight_threshold": 10.0, "clip": 2.0}


@pytest.mark.parametrize("module", [ope_package, estimators], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_evaluate_without_a_seed_still_shares_resamples():
    log, pi = random_log(n=300)
    results = evaluate(log, pi, [IPS(), IPS()], n_bootstrap=50)
    assert (results["ips"].low, results["ips"].high) == (results["ips#2"].low, results["ips#2"].high)
