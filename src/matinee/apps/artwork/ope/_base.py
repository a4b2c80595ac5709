"""The pieces every estimator shares: :class:`Estimate`, input checks, weights and the bootstrap."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from matinee.apps.artwork.data import LoggedFeedback
from matinee.errors import ParameterError

#: Rows a row-sum may differ from 1 by before ``pi_e`` is rejected.
_SUM_TOLERANCE = 1e-6
#: Count-matrix entries per bootstrap chunk (small enough to stay in cache-friendly, reused memory).
_CHUNK_ENTRIES = 1 << 20


@dataclass(frozen=True, eq=False)
class Estimate:
    """An off-policy estimate of a policy's value, with its interval and weight diagnostics.

    Attributes
    ----------
    estimator
        Name of the estimator (``"ips"``, ``"dr"``, ...).
    value
        The estimated expected reward per round of the evaluation policy.
    low, high
        Bootstrap percentile interval at ``level`` (NaN when ``n_bootstrap`` was 0).
    level
        Nominal coverage of the interval.
    n_rounds
        Rounds in the log.
    n_bootstrap
        Bootstrap resamples behind the interval.
    refit
        Whether every resample refitted the reward model (model-based estimators given a
        model rather than fixed predictions).
    ess
        Kish effective sample size of the importance weights the estimator uses,
        ``(sum w)^2 / sum w^2``.
    max_weight, mean_weight
        Largest and mean importance weight; the mean is close to 1 when the
        propensities are right and the evaluation policy stays on the logging policy's support.
    share_above_threshold
        Share of rounds whose weight exceeds ``weight_threshold``.
    weight_threshold
        The threshold used for ``share_above_threshold``.
    contributions
        Per-round contributions ``(n,)`` whose mean is ``value``.
    """

    estimator: str
    value: float
    low: float
    high: float
    level: float
    n_rounds: int
    n_bootstrap: int
    refit: bool
    ess: float
    max_weight: float
    mean_weight: float
    share_above_threshold: float
    weight_threshold: float
    contributions: np.ndarray = field(repr=False)

    @property
    def interval(self) -> tuple[float, float]:
        """``(low, high)``."""
        return (self.low, self.high)

    def covers(self, truth: float) -> bool:
        """Whether the interval contains ``truth``."""
        return bool(self.low <= truth <= self.high)

    def to_dict(self) -> dict[str, Any]:
        """The scalar fields, for logging as metrics or printing as a table."""
        return {"estimator": self.estimator, "value": self.value, "low": self.low, "high": self.high,
                "level": self.level, "n_rounds": self.n_rounds, "n_bootstrap": self.n_bootstrap,
                "refit": self.refit, "ess": self.ess, "max_weight": self.max_weight,
                "mean_weight": self.mean_weight, "share_above_threshold": self.share_above_threshold,
                "weight_threshold": self.weight_threshold}

    def __repr__(self) -> str:
        return (f"Estimate({self.estimator}: {self.value:.6g} [{self.low:.6g}, {self.high:.6g}] at "
                f"{self.level:.0%}, ESS {self.ess:.1f} of {self.n_rounds})")


@dataclass(frozen=True, eq=False)
class Inputs:
    """A validated log and evaluation policy, reduced to what the estimators use."""

    feedback: LoggedFeedback
    pi: np.ndarray  # (n, n_actions): pi_e at each round's own position
    pi_logged: np.ndarray  # (n,): pi_e of the logged action
    weight: np.ndarray  # (n,): pi_e(a_i) / propensity_i

    @property
    def n(self) -> int:
        return len(self.feedback)


def check_inputs(feedback: Any, pi_e: Any) -> Inputs:
    """Validate the log and ``pi_e`` and compute the raw importance weights.

    ``pi_e`` is ``(n, n_actions)``, or ``(n, n_actions, n_positions)`` with the
    distribution for each position, of which round ``i`` uses
    ``pi_e[i, :, position[i]]`` (Open Bandit Pipeline's convention).
    """
    if not isinstance(feedback, LoggedFeedback):
        raise ParameterError(f"feedback must be LoggedFeedback, not {type(feedback).__name__}",
                             parameter="feedback")
    n, n_actions = len(feedback), feedback.n_actions
    if n == 0:
        raise ParameterError("feedback has no rounds", parameter="feedback")
    pi = _at_position(_float_array(pi_e, "pi_e", check_finite=False), feedback, "pi_e")
    if pi.shape != (n, n_actions):
        raise ParameterError(f"pi_e must have shape ({n}, {n_actions}) (rounds, actions), not {pi.shape}",
                             parameter="pi_e")
    if pi.min() < 0:
        i = int(np.argwhere(pi < 0)[0][0])
        raise ParameterError(f"pi_e has a negative probability at round {i}", parameter="pi_e")
    sums = pi.sum(axis=1)  # a NaN or infinity anywhere in a row shows in its sum
    if not np.isfinite(sums).all():
        raise ParameterError("pi_e has a NaN or infinite value", parameter="pi_e")
    bad = np.abs(sums - 1.0) > _SUM_TOLERANCE
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ParameterError(f"pi_e rows must sum to 1; round {i} sums to {sums[i]:.6g}", parameter="pi_e")
    if feedback.candidates is not None:
        outside = (pi > 0) & ~feedback.candidates
        if outside.any():
            i = int(np.argwhere(outside)[0][0])
            raise ParameterError(f"pi_e gives probability to an action that is not a candidate at round {i}",
                                 parameter="pi_e")
    rows = np.arange(n)
    pi_logged = pi[rows, feedback.action]
    return Inputs(feedback, pi, pi_logged, pi_logged / feedback.propensity)


def check_q_hat(q_hat: Any, feedback: LoggedFeedback) -> np.ndarray:
    """Validate fixed reward-model predictions; ``(n, n_actions)`` or per position like ``pi_e``."""
    q = _at_position(_float_array(q_hat, "reward_model"), feedback, "reward_model")
    if q.shape != (len(feedback), feedback.n_actions):
        raise ParameterError(f"reward_model predictions must have shape ({len(feedback)}, {feedback.n_actions}), "
                             f"not {q.shape}", parameter="reward_model")
    return q


def _float_array(value: Any, name: str, check_finite: bool = True) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be an array of numbers", parameter=name) from None
    if check_finite and not np.isfinite(array).all():
        raise ParameterError(f"{name} has a NaN or infinite value", parameter=name)
    return array


def _at_position(array: np.ndarray, feedback: LoggedFeedback, name: str) -> np.ndarray:
    if array.ndim != 3:
        return array
    n = len(feedback)
    if array.shape[:2] != (n, feedback.n_actions):
        raise ParameterError(f"{name} must have shape ({n}, {feedback.n_actions}) or "
                             f"({n}, {feedback.n_actions}, n_positions), not {array.shape}", parameter=name)
    if feedback.position is None:
        if array.shape[2] != 1:
            raise ParameterError(f"{name} has {array.shape[2]} positions but feedback.position is not set",
                                 parameter=name)
        return array[:, :, 0]
    position = np.asarray(feedback.position)
    if position.dtype.kind not in "iu" or position.min() < 0 or position.max() >= array.shape[2]:
        raise ParameterError(f"feedback.position must hold whole numbers in [0, {array.shape[2]}) to index "
                             f"{name}'s positions", parameter=name)
    return array[np.arange(n), :, position]


def check_estimate_args(n_bootstrap: Any, level: Any) -> None:
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 0:
        raise ParameterError(f"n_bootstrap must be a whole number >= 0, not {n_bootstrap!r}",
                             parameter="n_bootstrap")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ParameterError(f"level must be in (0, 1), not {level!r}", parameter="level")


def check_positive(value: Any, name: str, *, allow_none: bool = True, allow_zero: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    if not ok or np.isnan(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ParameterError(f"{name} must be a number {bound}, not {value!r}", parameter=name)


def diagnostics(weight: np.ndarray, threshold: float) -> dict[str, float]:
    """Kish ESS, max, mean and the share of weights above ``threshold``."""
    total, squares = float(weight.sum()), float(weight @ weight)
    return {"ess": total * total / squares if squares > 0 else 0.0,
            "max_weight": float(weight.max()), "mean_weight": total / len(weight),
            "share_above_threshold": float(np.count_nonzero(weight > threshold)) / len(weight)}


def bootstrap_counts(n: int, n_bootstrap: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Resamples as count matrices ``(b, n)``: ``counts[j, i]`` is how often round ``i`` was drawn.

    Each resample draws ``n`` rounds with replacement (multinomial counts). The
    chunks are small and share one buffer, valid until the next chunk is
    drawn; the rounds drawn depend only on ``rng``'s seed, ``n`` and ``n_bootstrap``.
    """
    per = max(1, min(n_bootstrap, _CHUNK_ENTRIES // max(n, 1)))
    buffer = np.empty((per, n))
    for start in range(0, n_bootstrap, per):
        b = min(per, n_bootstrap - start)
        draws = rng.integers(0, n, size=(b, n))
        for j in range(b):
            buffer[j] = np.bincount(draws[j], minlength=n)
        yield buffer[:b]


def resampled_sums(columns: np.ndarray, counts_iter: Iterator[np.ndarray]) -> np.ndarray:
    """``(B, m)`` count-weighted column sums, one row per resample."""
    return np.vstack([counts @ columns for counts in counts_iter])


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The percentile bootstrap interval (linear interpolation, as numpy's default)."""
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return (float("nan"), float("nan"))
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return (float(low), float(high))


#: combine(sums (B, m), n) -> values (B,)
Combine = Callable[[np.ndarray, int], np.ndarray]
