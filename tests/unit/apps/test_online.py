"""The online simulation loop: delayed, batched feedback; what it measures; reproducibility; bad inputs."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import matinee.apps.artwork.online as online
from matinee.apps.artwork import Choice, LoggedFeedback, Policy
from matinee.apps.artwork.online import SimulationResult, concat, simulate
from matinee.apps.artwork.policies import EpsilonGreedy, LinUCB, LogisticTS, UniformRandom
from matinee.apps.sim import ArtworkEnvironment
from matinee.errors import ParameterError


@pytest.fixture(scope="module")
def env() -> ArtworkEnvironment:
    return ArtworkEnvironment(n_context_features=6, n_variants=4, n_variant_features=3, seed=3)


class Recorder(Policy):
    """Plays action 0 with propensity 1 and records the order of its calls."""

    deterministic = True

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []
        self.decided = 0

    def choose(self, context, action_features=None, candidates=None) -> Choice:
        self.events.append(("choose", len(context)))
        self.decided += len(context)
        return Choice(np.zeros(len(context), np.int64), np.ones(len(context)))

    def _update(self, feedback: LoggedFeedback) -> None:
        self.events.append(("update", int(feedback.timestamp[0])))


class ZeroPropensity(Recorder):
    def choose(self, context, action_features=None, candidates=None) -> Choice:
        return Choice(np.zeros(len(context), np.int64), np.zeros(len(context)))


def test_docstring_examples_run():
    assert doctest.testmod(online, optionflags=doctest.ELLIPSIS).failed == 0


@pytest.mark.parametrize("delay", [0, 1, 3])
def test_feedback_reaches_update_only_after_its_batch_and_the_delay(env, delay):
    policy = Recorder()
    simulate(policy, env, rounds=1_050, batch_size=200, delay_batches=delay, seed=0)
    chooses = [i for i, (kind, _) in enumerate(policy.events) if kind == "choose"]
    updates = [(i, start) for i, (kind, start) in enumerate(policy.events) if kind == "update"]
    assert [size for kind, size in policy.events if kind == "choose"] == [200] * 5 + [50]
    assert [start for _, start in updates] == [0, 200, 400, 600, 800, 1000]  # every batch, in order, once
    for batch, (position, _) in enumerate(updates):
        decided_before = sum(1 for c in chooses if c < position)
        # batch b's feedback arrives once batches b .. b + delay are decided (or at the end)
        assert decided_before == min(batch + 1 + delay, 6)


def test_per_round_and_per_batch_measurements_match_the_environment(env):
    result = simulate(EpsilonGreedy(epsilon=0.2, random_state=1), env, rounds=2_500, batch_size=1_000, seed=4)
    log = result.feedback
    assert isinstance(result, SimulationResult) and result.rounds == 2_500 and len(log) == 2_500
    rows = np.arange(len(log))
    np.testing.assert_allclose(result.expected_reward, log.expected_reward[rows, log.action])
    np.testing.assert_allclose(result.oracle_reward, log.expected_reward.max(axis=1))
    np.testing.assert_array_equal(result.reward, log.reward)
    np.testing.assert_array_equal(result.propensity, log.propensity)
    assert (result.oracle_reward >= result.expected_reward).all()
    frame = result.frame
    assert list(frame.columns) == list(online.COLUMNS)
    assert frame["rounds"].tolist() == [1_000, 1_000, 500] and frame["end"].tolist() == [1_000, 2_000, 2_500]
    assert frame["cumulative_reward"].iloc[-1] == pytest.approx(result.cumulative_reward)
    assert frame["cumulative_regret"].iloc[-1] == pytest.approx(result.cumulative_regret)
    assert frame["regret"].iloc[2] == pytest.approx((result.oracle_reward - result.expected_reward)[2_000:].mean())
    assert result.share_of_oracle() == pytest.approx(result.expected_reward.sum() / result.oracle_reward.sum())
    assert result.share_of_oracle(last=500) == pytest.approx(frame["share_of_oracle"].iloc[2])
    assert result.share_of_oracle(first=1_000) == pytest.approx(frame["share_of_oracle"].iloc[0])
    summary = result.summary(last=1_000)
    assert summary["policy"] == "EpsilonGreedy" and summary["window"] == 1_000
    assert result.decisions_per_second > 0 and result.policy_seconds <= result.seconds


def test_exploration_is_the_chance_of_departing_from_the_greedy_choice(env):
    uniform = simulate(UniformRandom(random_state=0), env, rounds=2_000, batch_size=500, seed=0)
    assert uniform.exploration_rate() == pytest.approx(1 - 1 / 4)
    linucb = simulate(LinUCB(alpha=0.5, random_state=0), env, rounds=2_000, batch_size=500, seed=0)
    np.testing.assert_allclose(linucb.exploration, 1 - linucb.propensity)  # deterministic: only ties explore
    greedy = simulate(EpsilonGreedy(epsilon=0.2, random_state=0), env, rounds=3_000, batch_size=500, seed=0,
                      exploration_sample=None)
    assert greedy.exploration_rate(last=2_000) == pytest.approx(0.2 * 3 / 4, abs=1e-9)
    sampled = simulate(EpsilonGreedy(epsilon=0.2, random_state=0), env, rounds=1_000, batch_size=500, seed=0,
                       exploration_sample=10)
    assert np.isnan(sampled.exploration).sum() == 1_000 - 20
    none = simulate(EpsilonGreedy(epsilon=0.2, random_state=0), env, rounds=1_000, batch_size=500, seed=0,
                    exploration_sample=0)
    assert np.isnan(none.exploration_rate()) and none.frame["exploration_rate"].isna().all()


def test_a_seed_gives_every_policy_the_same_rounds(env):
    a = simulate(UniformRandom(random_state=0), env, rounds=1_500, batch_size=500, seed=9)
    b = simulate(LinUCB(random_state=0), env, rounds=1_500, batch_size=500, seed=9)
    c = simulate(UniformRandom(random_state=0), env, rounds=1_500, batch_size=500, seed=10)
    np.testing.assert_array_equal(a.feedback.context, b.feedback.context)
    np.testing.assert_array_equal(a.oracle_reward, b.oracle_reward)
    assert not np.array_equal(a.feedback.context, c.feedback.context)
    again = simulate(UniformRandom(random_state=0), env, rounds=1_500, batch_size=500, seed=9)
    np.testing.assert_array_equal(a.reward, again.reward)


def test_without_a_seed_the_environments_own_stream_continues():
    first = ArtworkEnvironment(n_context_features=4, n_variants=3, n_variant_features=2, seed=1)
    second = ArtworkEnvironment(n_context_features=4, n_variants=3, n_variant_features=2, seed=1)
    run = simulate(UniformRandom(random_state=0), first, rounds=300, batch_size=100)
    np.testing.assert_array_equal(run.feedback.context[:100], second.sample(100).context)
    assert not np.array_equal(first.sample(100).context, run.feedback.context[:100])


def test_contextual_policies_learn_to_near_the_oracle(env):
    shares = {}
    for policy in (UniformRandom(random_state=0), LinUCB(alpha=0.5, random_state=0), LogisticTS(random_state=0)):
        result = simulate(policy, env, rounds=20_000, batch_size=1_000, seed=5, keep_log=False)
        shares[type(policy).__name__] = result.share_of_oracle(last=5_000)
        assert result.feedback is None
    assert shares["UniformRandom"] < 0.85
    assert shares["LinUCB"] > 0.97 and shares["LogisticTS"] > 0.96
    assert shares["LinUCB"] > shares["UniformRandom"] + 0.1


def test_delayed_feedback_learns_more_slowly(env):
    prompt = simulate(LinUCB(alpha=0.5, random_state=0), env, rounds=6_000, batch_size=500, seed=2, keep_log=False)
    late = simulate(LinUCB(alpha=0.5, random_state=0), env, rounds=6_000, batch_size=500, delay_batches=4, seed=2,
                    keep_log=False)
    assert late.cumulative_regret > prompt.cumulative_regret


def test_the_log_is_a_valid_uniform_log_for_off_policy_evaluation(env):
    from matinee.apps.artwork.ope import IPS

    result = simulate(UniformRandom(random_state=0), env, rounds=3_000, batch_size=1_000, seed=0)
    log = result.feedback
    assert log.policy == "UniformRandom" and np.allclose(log.propensity, 1 / 4)
    assert log.action_features.shape == (3_000, 4, 3) and log.expected_reward.shape == (3_000, 4)
    pi = np.full((3_000, 4), 0.25)
    assert IPS().value(log, pi) == pytest.approx(log.reward.mean())


def test_the_loop_costs_little_next_to_the_policy(env):
    result = simulate(UniformRandom(random_state=0), env, rounds=100_000, batch_size=1_000, seed=0, keep_log=False)
    # environment, bookkeeping and a trivial policy: 100 batches take about a second; this catches a
    # loop that went quadratic, not a slow machine (the speed is in benchmarks/artwork)
    assert result.policy_seconds <= result.seconds < 30.0


def test_concat_joins_batches_and_refuses_mismatched_logs():
    part = LoggedFeedback(context=np.zeros((2, 3)), action=[0, 1], reward=[1, 0], propensity=[0.5, 0.5],
                          n_actions=2, action_features=np.eye(2))
    joined = concat([part, part])
    assert len(joined) == 4 and joined.action_features.shape == (2, 2)
    other = LoggedFeedback(context=np.zeros((2, 3)), action=[0, 1], reward=[1, 0], propensity=[0.5, 0.5],
                           n_actions=3)
    with pytest.raises(ParameterError, match="share n_actions"):
        concat([part, other])
    with pytest.raises(ParameterError, match="at least one log"):
        concat([])


@pytest.mark.parametrize(
    ("kwargs", "parameter", "message"),
    [
        ({"policy": "LinUCB"}, "policy", "must be a matinee Policy"),
        ({"environment": object()}, "environment", "must be an ArtworkEnvironment"),
        ({"rounds": 0}, "rounds", "rounds must be a whole number >= 1"),
        ({"rounds": 10.5}, "rounds", "rounds must be a whole number"),
        ({"batch_size": 0}, "batch_size", "batch_size must be a whole number >= 1"),
        ({"delay_batches": -1}, "delay_batches", "delay_batches must be a whole number >= 0"),
        ({"delay_batches": True}, "delay_batches", "delay_batches must be a whole number"),
        ({"exploration_sample": -2}, "exploration_sample", "exploration_sample must be None or"),
        ({"seed": -1}, "seed", "seed must be None or a whole number"),
        ({"policy": ZeroPropensity()}, "policy", "propensity outside"),
    ],
)
def test_bad_arguments_name_the_parameter(env, kwargs, parameter, message):
    args = {"policy": UniformRandom(), "environment": env, "rounds": 100, **kwargs}
    with pytest.raises(ParameterError, match=message) as info:
        simulate(**args)
    assert info.value.fields["parameter"] == parameter


@pytest.mark.parametrize(
    ("window", "message"),
    [({"last": 0}, "last must be a whole number of rounds in 1..100"),
     ({"first": 101}, "first must be"),
     ({"first": 10, "last": 10}, "not both")],
)
def test_bad_windows_are_refused(env, window, message):
    result = simulate(UniformRandom(random_state=0), env, rounds=100, batch_size=50, seed=0)
    with pytest.raises(ParameterError, match=message):
        result.share_of_oracle(**window)
