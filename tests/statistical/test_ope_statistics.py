"""Seeded statistical tests of the off-policy estimators against a simulator with a known truth.

The problem: contexts uniform on [0, 1]^3, four actions whose click probability
is linear in the context (so the default per-action ridge reward model is well
specified), rewards drawn as clicks. Two logging set-ups:

- ``softmax``: a context-dependent softmax logging policy (weights up to about
  10) evaluated against a softmax of the true click rates;
- ``uniform``: uniformly random logging evaluated against a deterministic
  policy (where Replay applies too).

The true value of the evaluation policy is its expected click rate over the
context distribution, computed on two million contexts. Each of 20 seeds draws a
log of 3,000 rounds; every estimator gives a 90% bootstrap interval (500
resamples, the reward model refitted in each). Checked: every estimator's
interval covers the truth in at least 17 of the 20 runs, and DR's mean absolute
error is below IPS's.
"""

from __future__ import annotations

import numpy as np
import pytest

from matinee.apps.artwork import LoggedFeedback
from matinee.apps.artwork.ope import DM, DR, IPS, SNDR, SNIPS, Replay, SwitchDR

N_CONTEXT, N_ACTIONS, N_ROUNDS, SEEDS, LEVEL, N_BOOTSTRAP = 3, 4, 3000, range(20), 0.9, 500
_PARAMS = np.random.default_rng(12345)
BASE = _PARAMS.uniform(0.2, 0.5, N_ACTIONS)
SLOPE = _PARAMS.uniform(-0.2, 0.35, (N_CONTEXT, N_ACTIONS))
LOGGING = _PARAMS.normal(0, 1.5, (N_CONTEXT, N_ACTIONS))


def click_rate(x):
    return np.clip(BASE + x @ SLOPE, 0.02, 0.98)


def softmax(scores):
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def logging_policy(x, setup):
    return np.full((len(x), N_ACTIONS), 1 / N_ACTIONS) if setup == "uniform" else softmax(x @ LOGGING)


def evaluation_policy(x, setup):
    if setup == "uniform":  # deterministic: the best action by a slightly wrong score
        return np.eye(N_ACTIONS)[np.argmax(click_rate(x) + 0.1 * np.sin(7 * x[:, :1]), axis=1)]
    return softmax(8 * click_rate(x))


def true_value(setup):
    x = np.random.default_rng(999).random((2_000_000, N_CONTEXT))
    return float((evaluation_policy(x, setup) * click_rate(x)).sum(axis=1).mean())


def simulate(seed, setup):
    rng = np.random.default_rng(seed)
    x = rng.random((N_ROUNDS, N_CONTEXT))
    pb = logging_policy(x, setup)
    action = (pb.cumsum(axis=1) > rng.random((N_ROUNDS, 1))).argmax(axis=1)
    rows = np.arange(N_ROUNDS)
    reward = (rng.random(N_ROUNDS) < click_rate(x)[rows, action]).astype(float)
    log = LoggedFeedback(context=x, action=action, reward=reward, propensity=pb[rows, action],
                         n_actions=N_ACTIONS)
    return log, evaluation_policy(x, setup)


def estimators(setup):
    found = [IPS(), SNIPS(), DM(), DR(), SNDR(), SwitchDR(tau=3.0)]
    return found + [Replay()] if setup == "uniform" else found


@pytest.fixture(scope="module", params=["softmax", "uniform"])
def runs(request):
    """Per estimator: (value, low, high) for each seed, and the truth."""
    setup = request.param
    results = {e.name: [] for e in estimators(setup)}
    for seed in SEEDS:
        log, pi_e = simulate(seed, setup)
        for estimator in estimators(setup):
            est = estimator.estimate(log, pi_e, n_bootstrap=N_BOOTSTRAP, level=LEVEL, random_state=seed)
            results[est.estimator].append((est.value, est.low, est.high))
    return setup, true_value(setup), {k: np.array(v) for k, v in results.items()}


def test_every_interval_covers_the_truth_in_at_least_85_percent_of_runs(runs):
    setup, truth, results = runs
    coverage = {name: float(np.mean((r[:, 1] <= truth) & (truth <= r[:, 2]))) for name, r in results.items()}
    assert len(coverage) == (7 if setup == "uniform" else 6)
    assert min(coverage.values()) >= 0.85, coverage


def test_dr_is_more_accurate_than_ips_on_average(runs):
    _, truth, results = runs
    error = {name: float(np.mean(np.abs(r[:, 0] - truth))) for name, r in results.items()}
    assert error["dr"] < error["ips"], error


def test_every_estimator_is_close_to_the_truth_on_average(runs):
    # Mean error over seeds well inside a typical interval's half-width: no estimator is badly biased.
    _, truth, results = runs
    for name, r in results.items():
        half_width = np.mean(r[:, 2] - r[:, 1]) / 2
        assert abs(np.mean(r[:, 0]) - truth) < half_width / 2, name
