"""The online simulation loop: a policy serves the artwork simulator, learning from delayed, batched feedback.

:func:`simulate` plays a :class:`~matinee.apps.artwork.policy.Policy` against an
:class:`~matinee.apps.sim.ArtworkEnvironment` the way a deployed policy runs:

1. it decides a batch of ``batch_size`` impressions with ``choose``, logging
   each chosen variant and its propensity;
2. the members play or not (the environment's seeded outcomes);
3. that batch's feedback reaches ``update`` only once ``delay_batches`` more
   batches have been decided, so with the default ``delay_batches=0`` the
   policy learns after every batch and otherwise decides on a model that
   lags behind the log. Feedback still pending when the rounds run out is
   delivered at the end, so the policy returned has learned from every round.

Every round records the observed reward, its expectation (the true play
probability of the variant shown), the oracle's expected reward (the best
variant's play probability), their difference (the expected regret), the
propensity, and the *exploration* of the decision: the probability that the
policy departs from its greedy choice, its most probable action,
``1 - max_a pi(a | x)``. Epsilon-greedy explores ``epsilon (K - 1) / K`` of
the time, uniform random ``1 - 1 / K``, Thompson sampling as often as a
posterior draw disagrees with the posterior's favourite; a deterministic policy
(LinUCB, greedy) explores only where it splits a tie, since it explores by
optimism, not chance. Its mean over rounds is the exploration rate: the
expected share of decisions that are not greedy. It is read from the
propensity for deterministic policies and otherwise from
:meth:`~matinee.apps.artwork.policy.Policy.probabilities` on up to
``exploration_sample`` rounds of each batch, so that policies whose
distribution is a Monte Carlo estimate stay cheap to simulate.

Everything is vectorized per batch, so the loop costs little next to the
policy: the time spent in ``choose`` and ``update`` is measured apart from it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from matinee.apps.artwork.data import LoggedFeedback
from matinee.apps.artwork.policy import Policy
from matinee.errors import ParameterError
from matinee.progress import progress

if TYPE_CHECKING:
    from matinee.apps.sim.artwork import ArtworkEnvironment, Impressions

__all__ = ["SimulationResult", "batches", "concat", "simulate"]

#: Columns of :attr:`SimulationResult.frame`, one row per batch.
COLUMNS = ("policy", "batch", "start", "end", "rounds", "reward", "expected_reward", "oracle_reward", "regret",
           "propensity", "exploration_rate", "cumulative_reward", "cumulative_expected_reward",
           "cumulative_oracle_reward", "cumulative_regret", "share_of_oracle")


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """What :func:`simulate` measured, round by round and batch by batch.

    Attributes
    ----------
    name
        The policy's label.
    policy
        The policy itself, having learned from every round.
    frame
        A tidy :class:`pandas.DataFrame`, one row per batch: ``policy``,
        ``batch``, ``start`` / ``end`` (rounds ``start`` to ``end - 1``),
        ``rounds``, the batch means of ``reward`` (observed plays),
        ``expected_reward`` (true play probability of the variants shown),
        ``oracle_reward``, ``regret`` (their difference), ``propensity`` and
        ``exploration_rate``, the running totals ``cumulative_reward``,
        ``cumulative_expected_reward``, ``cumulative_oracle_reward`` and
        ``cumulative_regret``, and ``share_of_oracle`` (the batch's expected
        reward over the oracle's).
    reward, expected_reward, oracle_reward, propensity
        ``(rounds,)`` float64 per round.
    exploration
        ``(rounds,)`` float64: the probability each decision departed from the
        policy's greedy choice, ``1 - max_a pi(a | x)``; NaN where it was not
        measured (see :func:`simulate`).
    feedback
        Every logged round as :class:`~matinee.apps.artwork.data.LoggedFeedback`
        (context, variant features, chosen variant, propensity, reward, and the
        true play probability of every variant as ``expected_reward``), ready
        for off-policy evaluation; ``None`` when simulated with ``keep_log=False``.
    choose_seconds, update_seconds
        Wall time spent in the policy's ``choose`` and ``update``.
    policy_cpu_seconds
        CPU time of this process during ``choose`` and ``update`` (all threads).
    seconds
        Wall time of the whole simulation, environment and bookkeeping included.
    """

    name: str
    policy: Policy
    frame: pd.DataFrame
    reward: np.ndarray = field(repr=False)
    expected_reward: np.ndarray = field(repr=False)
    oracle_reward: np.ndarray = field(repr=False)
    propensity: np.ndarray = field(repr=False)
    exploration: np.ndarray = field(repr=False)
    feedback: LoggedFeedback | None = field(repr=False)
    choose_seconds: float
    update_seconds: float
    policy_cpu_seconds: float
    seconds: float

    @property
    def rounds(self) -> int:
        """Rounds simulated."""
        return len(self.reward)

    @property
    def cumulative_reward(self) -> float:
        """Plays observed over all rounds."""
        return float(self.reward.sum())

    @property
    def cumulative_expected_reward(self) -> float:
        """Expected plays over all rounds (the sum of the true play probabilities of the variants shown)."""
        return float(self.expected_reward.sum())

    @property
    def cumulative_regret(self) -> float:
        """Expected plays lost to the oracle over all rounds."""
        return float((self.oracle_reward - self.expected_reward).sum())

    @property
    def policy_seconds(self) -> float:
        """Wall time in the policy (``choose`` plus ``update``)."""
        return self.choose_seconds + self.update_seconds

    @property
    def decisions_per_second(self) -> float:
        """Rounds decided and learned from per second of the policy's wall time."""
        return self.rounds / self.policy_seconds if self.policy_seconds > 0 else float("inf")

    @property
    def decisions_per_cpu_second(self) -> float:
        """Rounds decided and learned from per CPU second of the policy: the rate per core."""
        cpu = self.policy_cpu_seconds
        return self.rounds / cpu if cpu > 0 else float("inf")

    def _window(self, first: int | None, last: int | None) -> slice:
        n = self.rounds
        for name, value in (("first", first), ("last", last)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                      or not 1 <= value <= n):
                raise ParameterError(f"{name} must be a whole number of rounds in 1..{n}, not {value!r}",
                                     parameter=name)
        if first is not None and last is not None:
            raise ParameterError("give first or last, not both", parameter="last")
        if first is not None:
            return slice(0, first)
        return slice(0 if last is None else n - last, n)

    def share_of_oracle(self, *, last: int | None = None, first: int | None = None) -> float:
        """The policy's expected reward as a share of the oracle's, over all rounds or a window.

        Parameters
        ----------
        last
            Only the last ``last`` rounds (the policy once it has learned).
        first
            Only the first ``first`` rounds.

        Returns
        -------
        float
            ``sum(expected_reward) / sum(oracle_reward)`` over the window.

        Raises
        ------
        ParameterError
            Both windows given, or one that is not a whole number in ``1..rounds``.

        Examples
        --------
        >>> from matinee.apps.artwork.online import simulate
        >>> from matinee.apps.artwork.policies import UniformRandom
        >>> from matinee.apps.sim import ArtworkEnvironment
        >>> env = ArtworkEnvironment(n_context_features=5, n_variants=4, n_variant_features=3, seed=0)
        >>> result = simulate(UniformRandom(random_state=0), env, rounds=2_000, batch_size=500, seed=0)
        >>> round(result.share_of_oracle(last=1_000), 2)
        0.67
        """
        rows = self._window(first, last)
        return float(self.expected_reward[rows].sum() / self.oracle_reward[rows].sum())

    def mean_reward(self, *, last: int | None = None, first: int | None = None) -> float:
        """Average observed reward over all rounds or a window (as for :meth:`share_of_oracle`)."""
        return float(self.reward[self._window(first, last)].mean())

    def exploration_rate(self, *, last: int | None = None, first: int | None = None) -> float:
        """Mean exploration of the measured decisions (the expected share not greedy), over all rounds or a window."""
        explored = self.exploration[self._window(first, last)]
        measured = explored[~np.isnan(explored)]
        return float(measured.mean()) if len(measured) else float("nan")

    def summary(self, *, last: int | None = None) -> dict[str, Any]:
        """The headline numbers as a flat dict (``last`` sets the window of the windowed ones).

        Returns
        -------
        dict
            ``policy``, ``rounds``, ``share_of_oracle`` (all rounds),
            ``share_of_oracle_last`` and ``mean_reward_last`` (the window),
            ``cumulative_reward``, ``cumulative_regret``, ``exploration_rate_last``,
            ``decisions_per_second``, ``decisions_per_cpu_second`` and ``seconds``.
        """
        last = self.rounds if last is None else min(last, self.rounds)
        return {
            "policy": self.name, "rounds": self.rounds, "window": last,
            "share_of_oracle": self.share_of_oracle(),
            "share_of_oracle_last": self.share_of_oracle(last=last),
            "mean_reward_last": self.mean_reward(last=last),
            "cumulative_reward": self.cumulative_reward, "cumulative_regret": self.cumulative_regret,
            "exploration_rate_last": self.exploration_rate(last=last),
            "decisions_per_second": self.decisions_per_second,
            "decisions_per_cpu_second": self.decisions_per_cpu_second,
            "seconds": self.seconds,
        }

    def __repr__(self) -> str:
        return (f"SimulationResult({self.name}: {self.rounds} rounds, {self.share_of_oracle():.1%} of the oracle, "
                f"regret {self.cumulative_regret:.1f}, {self.decisions_per_second:,.0f} decisions/s)")


def simulate(
    policy: Policy,
    environment: ArtworkEnvironment,
    rounds: int,
    batch_size: int = 1000,
    delay_batches: int = 0,
    *,
    seed: int | None = None,
    name: str | None = None,
    keep_log: bool = True,
    exploration_sample: int | None = 100,
) -> SimulationResult:
    """Run ``policy`` against ``environment`` for ``rounds`` impressions with delayed, batched feedback.

    Parameters
    ----------
    policy
        Any :class:`~matinee.apps.artwork.policy.Policy`; it learns in place (pass a
        fresh one to start from nothing).
    environment
        The simulator's :class:`~matinee.apps.sim.ArtworkEnvironment`.
    rounds
        Impressions to decide (the last batch may be short).
    batch_size
        Decisions per batch: the policy learns only between batches.
    delay_batches
        How many further batches are decided before a batch's feedback reaches
        ``update`` (0: right after the batch).
    seed
        When given, the rounds come from a copy of ``environment`` whose
        impression stream is seeded by ``seed``: the same environment, seed,
        ``rounds`` and ``batch_size`` give the same impressions and outcomes to
        every policy, whatever else was drawn from the environment. ``None``
        continues the environment's own stream (and advances it).
    name
        Label of the policy in the results; default its class name.
    keep_log
        Keep every round as :class:`~matinee.apps.artwork.data.LoggedFeedback` in
        the result (``rounds x n_variants x n_variant_features`` floats).
    exploration_sample
        Rounds per batch on which the exploration rate is measured (``None`` for
        all); 0 measures none. Deterministic policies are measured for free.

    Returns
    -------
    SimulationResult
        Per-round and per-batch measurements, the learned policy and the log.

    Raises
    ------
    ParameterError
        Naming the argument: not a Policy, not an environment, a count that is
        not a whole number in range, or a policy whose propensities are not in (0, 1].

    Examples
    --------
    >>> from matinee.apps.artwork.online import simulate
    >>> from matinee.apps.artwork.policies import LinUCB, UniformRandom
    >>> from matinee.apps.sim import ArtworkEnvironment
    >>> env = ArtworkEnvironment(n_context_features=5, n_variants=4, n_variant_features=3, seed=0)
    >>> uniform = simulate(UniformRandom(random_state=0), env, rounds=5_000, batch_size=500, seed=1)
    >>> linucb = simulate(LinUCB(alpha=0.5, random_state=0), env, rounds=5_000, batch_size=500, seed=1)
    >>> linucb.share_of_oracle(last=2_000) > uniform.share_of_oracle(last=2_000)
    True
    >>> linucb.frame[["batch", "rounds", "regret", "exploration_rate"]].tail(2).round(3).to_dict("list")
    {'batch': [8, 9], 'rounds': [500, 500], 'regret': [0.003, 0.002], 'exploration_rate': [0.0, 0.0]}
    >>> len(linucb.feedback), linucb.feedback.n_actions
    (5000, 4)
    """
    started = time.perf_counter()
    _check(policy, environment, rounds, batch_size, delay_batches, exploration_sample)
    label = name if name is not None else type(policy).__name__
    sizes = _sizes(rounds, batch_size)
    arrays = {key: np.empty(rounds) for key in ("reward", "expected", "oracle", "propensity", "exploration")}
    logs: list[LoggedFeedback] = []
    pending: list[LoggedFeedback] = []
    choose_s = update_s = cpu_s = 0.0

    def learn(feedback: LoggedFeedback) -> None:
        nonlocal update_s, cpu_s
        wall, cpu = time.perf_counter(), time.process_time()
        policy.update(feedback)
        update_s += time.perf_counter() - wall
        cpu_s += time.process_time() - cpu

    start = 0
    for batch in progress(batches(environment, rounds, batch_size, seed=seed), f"simulating {label}",
                          total=len(sizes)):
        wall, cpu = time.perf_counter(), time.process_time()
        choice = policy.choose(batch.context, batch.variant_features, batch.mask)
        choose_s += time.perf_counter() - wall
        cpu_s += time.process_time() - cpu
        actions, propensity = _checked_choice(choice, len(batch))
        probs = environment.play_probability(batch)
        rows = np.arange(len(batch))
        end = start + len(batch)
        arrays["expected"][start:end] = probs[rows, actions]
        arrays["oracle"][start:end] = probs.max(axis=1)
        arrays["reward"][start:end] = environment.reward(batch, actions)
        arrays["propensity"][start:end] = propensity
        arrays["exploration"][start:end] = _exploration(policy, batch, propensity, exploration_sample)
        feedback = LoggedFeedback(
            context=batch.context, action=actions, reward=arrays["reward"][start:end], propensity=propensity,
            n_actions=batch.variant_features.shape[1], action_features=batch.variant_features,
            candidates=batch.mask, timestamp=np.arange(start, end), unit_id=batch.member_ids,
            item_id=batch.title_ids, policy=label, expected_reward=probs,
        )
        if keep_log:
            logs.append(feedback)
        pending.append(feedback)
        if len(pending) > delay_batches:
            learn(pending.pop(0))
        start = end
    for feedback in pending:  # the feedback still in flight when the rounds ran out
        learn(feedback)
    frame = _frame(label, sizes, arrays)
    return SimulationResult(
        name=label, policy=policy, frame=frame, reward=arrays["reward"], expected_reward=arrays["expected"],
        oracle_reward=arrays["oracle"], propensity=arrays["propensity"], exploration=arrays["exploration"],
        feedback=concat(logs) if keep_log else None, choose_seconds=choose_s, update_seconds=update_s,
        policy_cpu_seconds=cpu_s, seconds=time.perf_counter() - started,
    )


def batches(environment: ArtworkEnvironment, rounds: int, batch_size: int = 1000, *,
            seed: int | None = None) -> Iterator[Impressions]:
    """The batches of impressions :func:`simulate` plays, for the same arguments: to replay its rounds elsewhere.

    Parameters
    ----------
    environment, rounds, batch_size, seed
        As for :func:`simulate`.

    Returns
    -------
    iterator of Impressions
        ``ceil(rounds / batch_size)`` batches, the last one possibly short, with
        the outcome noise that fixes their rewards.

    Raises
    ------
    ParameterError
        A count that is not a whole number in range, or a bad seed.

    Examples
    --------
    >>> from matinee.apps.sim import ArtworkEnvironment
    >>> env = ArtworkEnvironment(n_context_features=5, n_variants=4, n_variant_features=3, seed=0)
    >>> [len(batch) for batch in batches(env, 2_500, 1_000, seed=0)]
    [1000, 1000, 500]
    """
    sizes = _sizes(rounds, batch_size)
    if seed is not None:
        environment = _reseeded(environment, seed)
    return (environment.sample(size) for size in sizes)


def concat(logs: list[LoggedFeedback]) -> LoggedFeedback:
    """One log from consecutive batches of the same shape (fields missing in one are dropped from all).

    Parameters
    ----------
    logs
        At least one :class:`~matinee.apps.artwork.data.LoggedFeedback`, with the
        same ``n_actions`` and context width.

    Returns
    -------
    LoggedFeedback
        The rounds of every log, in order.

    Raises
    ------
    ParameterError
        No logs, or logs of different shapes.

    Examples
    --------
    >>> import numpy as np
    >>> from matinee.apps.artwork import LoggedFeedback
    >>> part = LoggedFeedback(context=np.zeros((2, 3)), action=[0, 1], reward=[1, 0],
    ...                       propensity=[0.5, 0.5], n_actions=2)
    >>> len(concat([part, part]))
    4
    """
    if not logs:
        raise ParameterError("concat needs at least one log", parameter="logs")
    first = logs[0]
    if len(logs) == 1:
        return first
    if any(log.n_actions != first.n_actions or log.n_features != first.n_features for log in logs):
        raise ParameterError("logs must share n_actions and the context width", parameter="logs")
    values: dict[str, Any] = {"n_actions": first.n_actions, "policy": first.policy,
                              "policy_version": first.policy_version}
    for key in ("context", "action", "reward", "propensity", "action_features", "candidates", "position",
                "timestamp", "unit_id", "item_id", "expected_reward"):
        parts = [getattr(log, key) for log in logs]
        if any(part is None for part in parts):
            continue
        if key == "action_features" and parts[0].ndim == 2:
            if any(not np.array_equal(part, parts[0]) for part in parts):
                parts = [log.features_of() for log in logs]
            else:
                values[key] = parts[0]
                continue
        values[key] = np.concatenate(parts)
    return LoggedFeedback(**values)


# -- internals ---------------------------------------------------------------------------------


def _check(policy: Any, environment: Any, rounds: Any, batch_size: Any, delay_batches: Any,
           exploration_sample: Any) -> None:
    if not isinstance(policy, Policy):
        raise ParameterError(f"policy must be a matinee Policy, not {type(policy).__name__}", parameter="policy")
    if not all(hasattr(environment, attr) for attr in ("sample", "play_probability", "reward")):
        raise ParameterError(f"environment must be an ArtworkEnvironment, not {type(environment).__name__}",
                             parameter="environment")
    for name, value, low in (("rounds", rounds, 1), ("batch_size", batch_size, 1),
                             ("delay_batches", delay_batches, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ParameterError(f"{name} must be a whole number >= {low}, not {value!r}", parameter=name)
    if exploration_sample is not None and (isinstance(exploration_sample, bool)
                                           or not isinstance(exploration_sample, (int, np.integer))
                                           or exploration_sample < 0):
        raise ParameterError(f"exploration_sample must be None or a whole number >= 0, not {exploration_sample!r}",
                             parameter="exploration_sample")


def _sizes(rounds: Any, batch_size: Any) -> list[int]:
    for name, value in (("rounds", rounds), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ParameterError(f"{name} must be a whole number >= 1, not {value!r}", parameter=name)
    return [min(int(batch_size), int(rounds) - start) for start in range(0, int(rounds), int(batch_size))]


def _reseeded(environment: ArtworkEnvironment, seed: int) -> ArtworkEnvironment:
    """A copy of the environment (sharing its world) whose impressions come from a stream seeded by ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError(f"seed must be None or a whole number >= 0, not {seed!r}", parameter="seed")
    fork = copy.copy(environment)
    fork._rng = np.random.default_rng([int(getattr(environment, "seed", 0)), 0x0A7, int(seed)])
    return fork


def _checked_choice(choice: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    actions = np.asarray(getattr(choice, "actions", None))
    propensity = np.asarray(getattr(choice, "propensities", None), dtype=np.float64)
    if actions.shape != (n,) or propensity.shape != (n,):
        raise ParameterError(f"policy.choose must return {n} actions and propensities", parameter="policy")
    if not ((propensity > 0) & (propensity <= 1)).all():
        raise ParameterError("policy.choose returned a propensity outside (0, 1]", parameter="policy")
    return actions.astype(np.int64, copy=False), propensity


def _exploration(policy: Policy, batch: Impressions, propensity: np.ndarray, sample: int | None) -> np.ndarray:
    """``1 - max_a pi(a | x)`` per round; NaN where not measured."""
    n = len(propensity)
    if policy.deterministic:  # the action played is always among the most probable
        return 1.0 - propensity
    out = np.full(n, np.nan)
    if sample == 0:
        return out
    rows = np.arange(n) if sample is None or sample >= n else np.linspace(0, n - 1, sample).astype(np.int64)
    mask = None if batch.mask is None else batch.mask[rows]
    probs = policy.probabilities(batch.context[rows], batch.variant_features[rows], mask)
    out[rows] = 1.0 - probs.max(axis=1)
    return out


def _frame(label: str, sizes: list[int], arrays: dict[str, np.ndarray]) -> pd.DataFrame:
    ends = np.cumsum(sizes)
    starts = ends - np.asarray(sizes)

    def batch_sums(values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values, starts) if len(starts) else np.zeros(0)

    counts = np.asarray(sizes, dtype=np.float64)
    explored = arrays["exploration"]
    measured = batch_sums((~np.isnan(explored)).astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        exploration = np.where(measured > 0, batch_sums(np.nan_to_num(explored)) / measured, np.nan)
    reward, expected, oracle = (batch_sums(arrays[k]) for k in ("reward", "expected", "oracle"))
    return pd.DataFrame({
        "policy": label, "batch": np.arange(len(sizes)), "start": starts, "end": ends, "rounds": sizes,
        "reward": reward / counts, "expected_reward": expected / counts, "oracle_reward": oracle / counts,
        "regret": (oracle - expected) / counts, "propensity": batch_sums(arrays["propensity"]) / counts,
        "exploration_rate": exploration, "cumulative_reward": np.cumsum(reward),
        "cumulative_expected_reward": np.cumsum(expected), "cumulative_oracle_reward": np.cumsum(oracle),
        "cumulative_regret": np.cumsum(oracle - expected), "share_of_oracle": expected / oracle,
    }, columns=list(COLUMNS))
