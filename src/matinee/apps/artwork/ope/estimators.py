"""The estimators: IPS, SNIPS, DM, DR, SNDR, Switch-DR and Replay, and :func:`evaluate` to run several."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar

import numpy as np

from matinee.apps.artwork.data import LoggedFeedback
from matinee.apps.artwork.ope._base import (
    Estimate,
    Inputs,
    bootstrap_counts,
    check_estimate_args,
    check_inputs,
    check_positive,
    check_q_hat,
    diagnostics,
    percentile_interval,
    resampled_sums,
)
from matinee.apps.artwork.reward_models import RidgeRewardModel, one_blas_thread
from matinee.errors import ParameterError

__all__ = ["DM", "DR", "IPS", "SNDR", "SNIPS", "OffPolicyEstimator", "Replay", "SwitchDR", "evaluate"]


class OffPolicyEstimator:
    """Base class: one ``estimate`` for every estimator; subclasses say how rounds combine.

    Parameters
    ----------
    weight_threshold
        Weights above this count towards ``Estimate.share_above_threshold``.
    """

    #: Short name, as in ``Estimate.estimator``.
    name: ClassVar[str] = ""

    def __init__(self, *, weight_threshold: float = 10.0) -> None:
        self.weight_threshold = weight_threshold

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters, as given to ``__init__``."""
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    def estimate(
        self,
        feedback: LoggedFeedback,
        pi_e: np.ndarray,
        reward_model: Any = None,
        *,
        n_bootstrap: int = 1000,
        level: float = 0.95,
        random_state: int | np.random.Generator | None = None,
    ) -> Estimate:
        """Estimate the evaluation policy's value from the log, with a bootstrap interval.

        Parameters
        ----------
        feedback
            The logged rounds (contexts, actions, rewards, propensities).
        pi_e
            The evaluation policy's action distribution, ``(n, n_actions)``, or
            ``(n, n_actions, n_positions)`` of which round ``i`` uses
            ``pi_e[i, :, feedback.position[i]]`` (Open Bandit Pipeline's layout).
        reward_model
            Model-based estimators only (others ignore it): a reward model with
            ``fit_predict`` (refitted on every bootstrap resample), fixed predictions
            ``q_hat`` shaped like ``pi_e`` (the interval then does not refit), or
            None for a :class:`~matinee.apps.artwork.reward_models.RidgeRewardModel`.
        n_bootstrap
            Bootstrap resamples; 0 gives the point estimate with a NaN interval.
        level
            Nominal coverage of the percentile interval.
        random_state
            Seeds the resampling (and Replay's sampled actions).

        Returns
        -------
        Estimate

        Raises
        ------
        ParameterError
            Naming the argument: ``feedback``, ``pi_e`` (shape, negative entries, rows not
            summing to 1, mass on non-candidates), ``reward_model``, ``n_bootstrap``,
            ``level`` or a hyperparameter.
        """
        check_estimate_args(n_bootstrap, level)
        self._check_params()
        inputs = check_inputs(feedback, pi_e)
        return self._estimate(inputs, reward_model, None, int(n_bootstrap), float(level),
                              np.random.default_rng(random_state))

    def value(self, feedback: LoggedFeedback, pi_e: np.ndarray, reward_model: Any = None) -> float:
        """The point estimate alone (``estimate(..., n_bootstrap=0).value``)."""
        return self.estimate(feedback, pi_e, reward_model, n_bootstrap=0).value

    # -- for subclasses ---------------------------------------------------------
    def _check_params(self) -> None:
        check_positive(self.weight_threshold, "weight_threshold", allow_none=False, allow_zero=True)

    def _estimate(self, inputs: Inputs, reward_model: Any, q_point: np.ndarray | None, n_bootstrap: int,
                  level: float, rng: np.random.Generator) -> Estimate:
        raise NotImplementedError

    def _result(self, inputs: Inputs, contributions: np.ndarray, boot: np.ndarray | None, level: float,
                weight: np.ndarray, refit: bool, value: float | None = None) -> Estimate:
        low, high = percentile_interval(boot, level) if boot is not None and len(boot) else (np.nan, np.nan)
        return Estimate(
            estimator=self.name, value=float(contributions.mean() if value is None else value),
            low=low, high=high, level=level, n_rounds=inputs.n, n_bootstrap=0 if boot is None else len(boot),
            refit=refit, weight_threshold=float(self.weight_threshold), contributions=contributions,
            **diagnostics(weight, float(self.weight_threshold)),
        )


def _clipped(weight: np.ndarray, clip: float | None) -> np.ndarray:
    return weight if clip is None else np.minimum(weight, clip)


class _Weighting(OffPolicyEstimator):
    """Estimators that are a ratio or mean of per-round columns: IPS, SNIPS, Replay."""

    def _columns(self, inputs: Inputs, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Per-round columns ``(n, 2)`` — numerator and denominator terms — and the weights used."""
        raise NotImplementedError

    def _combine(self, sums: np.ndarray, n: int) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums[:, 0] / sums[:, 1]

    def _estimate(self, inputs: Inputs, reward_model: Any, q_point: np.ndarray | None, n_bootstrap: int,
                  level: float, rng: np.random.Generator) -> Estimate:
        columns, weight = self._columns(inputs, rng)
        value = float(self._combine(columns.sum(axis=0)[None, :], inputs.n)[0])
        denominator = columns[:, 1].mean()
        contributions = columns[:, 0] / denominator if denominator > 0 else np.zeros(inputs.n)
        boot = None
        if n_bootstrap:
            with one_blas_thread():
                sums = resampled_sums(columns, bootstrap_counts(inputs.n, n_bootstrap, rng))
            boot = self._combine(sums, inputs.n)
        return self._result(inputs, contributions, boot, level, weight, refit=False, value=value)


class IPS(_Weighting):
    """Inverse propensity scoring: ``mean_i w_i r_i`` with ``w_i = pi_e(a_i | x_i) / propensity_i``.

    Unbiased when the propensities are right and ``pi_e`` stays on the logging policy's support;
    clipping the weights at ``clip`` trades that for lower variance.

    Parameters
    ----------
    clip
        Clip weights at this value (``min(w, clip)``); None keeps them.
    weight_threshold
        For ``Estimate.share_above_threshold``.

    Examples
    --------
    >>> import numpy as np
    >>> from matinee.apps.artwork import LoggedFeedback
    >>> from matinee.apps.artwork.ope import IPS
    >>> log = LoggedFeedback(context=np.zeros((4, 1)), action=[0, 1, 0, 1], reward=[1, 0, 0, 1],
    ...                      propensity=[0.5, 0.5, 0.5, 0.5], n_actions=2)
    >>> pi_e = np.tile([0.8, 0.2], (4, 1))
    >>> IPS().estimate(log, pi_e, n_bootstrap=0).value   # (1.6*1 + 0.4*0 + 1.6*0 + 0.4*1) / 4
    0.5
    """

    name = "ips"

    def __init__(self, *, clip: float | None = None, weight_threshold: float = 10.0) -> None:
        super().__init__(weight_threshold=weight_threshold)
        self.clip = clip

    def _check_params(self) -> None:
        super()._check_params()
        check_positive(self.clip, "clip")

    def _columns(self, inputs: Inputs, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        weight = _clipped(inputs.weight, self.clip)
        return np.stack([weight * inputs.feedback.reward, np.ones(inputs.n)], axis=1), weight


class SNIPS(IPS):
    """Self-normalised IPS: ``sum_i w_i r_i / sum_i w_i``; slightly biased, much steadier than IPS.

    Parameters
    ----------
    clip
        Clip weights at this value before normalising; None keeps them.
    weight_threshold
        For ``Estimate.share_above_threshold``.

    Examples
    --------
    >>> import numpy as np
    >>> from matinee.apps.artwork import LoggedFeedback
    >>> from matinee.apps.artwork.ope import SNIPS
    >>> log = LoggedFeedback(context=np.zeros((4, 1)), action=[0, 1, 0, 1], reward=[1, 0, 0, 1],
    ...                      propensity=[0.5, 0.5, 0.5, 0.5], n_actions=2)
    >>> SNIPS().value(log, np.tile([0.8, 0.2], (4, 1)))   # (1.6 + 0.4) / (1.6 + 0.4 + 1.6 + 0.4)
    0.5
    """

    name = "snips"

    def _columns(self, inputs: Inputs, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        weight = _clipped(inputs.weight, self.clip)
        return np.stack([weight * inputs.feedback.reward, weight], axis=1), weight


class Replay(_Weighting):
    """Replay (rejection sampling) for uniformly random logs: the mean reward of the rounds where
    the evaluation policy would have chosen the logged action.

    With ``policy_action="argmax"`` (default) the evaluation policy's action is
    ``argmax_a pi_e[i, a]`` (lowest index on ties), which estimates the value of that
    deterministic policy — for a deterministic ``pi_e`` this is Open Bandit Pipeline's
    ``ReplayMethod``, which keeps the rounds where ``pi_e`` of the logged action is 1. With
    ``"sample"`` the action is drawn from ``pi_e[i]`` (seeded by ``random_state``), which
    estimates the value of the stochastic policy itself. On a uniformly random log the
    kept rounds are an unbiased sample of the evaluation policy's own rounds. The value is
    NaN when no round matches.

    Parameters
    ----------
    policy_action
        ``"argmax"`` or ``"sample"``.
    require_uniform
        Reject logs whose propensities are not 1 / (number of candidates), where replay is biased.
    weight_threshold
        For ``Estimate.share_above_threshold``; the weights are ``match / propensity``.

    Examples
    --------
    >>> import numpy as np
    >>> from matinee.apps.artwork import LoggedFeedback
    >>> from matinee.apps.artwork.ope import Replay
    >>> log = LoggedFeedback(context=np.zeros((4, 1)), action=[0, 1, 0, 1], reward=[1, 0, 0, 1],
    ...                      propensity=[0.5, 0.5, 0.5, 0.5], n_actions=2)
    >>> Replay().value(log, np.tile([0.8, 0.2], (4, 1)))   # rounds 0 and 2 chose action 0
    0.5
    """

    name = "replay"

    def __init__(self, *, policy_action: str = "argmax", require_uniform: bool = True,
                 weight_threshold: float = 10.0) -> None:
        super().__init__(weight_threshold=weight_threshold)
        self.policy_action = policy_action
        self.require_uniform = require_uniform

    def _check_params(self) -> None:
        super()._check_params()
        if self.policy_action not in ("argmax", "sample"):
            raise ParameterError(f"policy_action must be 'argmax' or 'sample', not {self.policy_action!r}",
                                 parameter="policy_action")

    def _columns(self, inputs: Inputs, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        feedback = inputs.feedback
        if self.require_uniform:
            k = feedback.n_actions if feedback.candidates is None else feedback.candidates.sum(axis=1)
            off = np.abs(feedback.propensity * k - 1.0) > 1e-6
            if off.any():
                i = int(np.flatnonzero(off)[0])
                raise ParameterError(
                    f"Replay needs a uniformly random log; round {i} has propensity "
                    f"{feedback.propensity[i]:.6g}, not 1/{int(np.broadcast_to(k, (inputs.n,))[i])} "
                    "(pass require_uniform=False to use it anyway)", parameter="feedback")
        if self.policy_action == "argmax":
            chosen = inputs.pi.argmax(axis=1)
        else:
            cumulative = inputs.pi.cumsum(axis=1)
            draws = rng.random((inputs.n, 1)) * cumulative[:, -1:]
            chosen = np.minimum((cumulative <= draws).sum(axis=1), feedback.n_actions - 1)
        match = (chosen == feedback.action).astype(np.float64)
        return np.stack([match * feedback.reward, match], axis=1), match / feedback.propensity


class _ModelBased(OffPolicyEstimator):
    """Estimators built on a reward model: ``value = (sum dm + sum correction) / n`` or a variant.

    Per round, ``dm_i = sum_a pi_e[i, a] q_hat[i, a]`` and
    ``correction_i = w~_i (r_i - q_hat[i, a_i])`` with the estimator's weights ``w~``.
    """

    def _correction_weight(self, inputs: Inputs) -> np.ndarray:
        raise NotImplementedError

    def _combine(self, sums: np.ndarray, n: int) -> np.ndarray:
        """Values from ``(B, 3)`` resampled sums of ``dm``, ``correction`` and ``w~``."""
        return (sums[:, 0] + sums[:, 1]) / n

    def _diagnostic_weight(self, inputs: Inputs, weight: np.ndarray) -> np.ndarray:
        return weight

    def _contributions(self, columns: np.ndarray) -> np.ndarray:
        return columns[:, 0] + columns[:, 1]

    def _estimate(self, inputs: Inputs, reward_model: Any, q_point: np.ndarray | None, n_bootstrap: int,
                  level: float, rng: np.random.Generator) -> Estimate:
        feedback = inputs.feedback
        if reward_model is None:
            reward_model = RidgeRewardModel()
        fixed = not hasattr(reward_model, "fit_predict")
        if fixed:
            q = check_q_hat(reward_model, feedback)
        else:
            q = reward_model.fit_predict(feedback) if q_point is None else q_point
        weight = self._correction_weight(inputs)
        columns = _model_columns(inputs, q, weight)
        value = float(self._combine(columns.sum(axis=0)[None, :], inputs.n)[0])
        boot = None
        if n_bootstrap:
            counts = bootstrap_counts(inputs.n, n_bootstrap, rng)
            if fixed:
                with one_blas_thread():
                    sums = resampled_sums(columns, counts)
            elif hasattr(reward_model, "bootstrap_sums"):
                weight_sums: list[np.ndarray] = []
                dm, corr = reward_model.bootstrap_sums(feedback, inputs.pi, weight,
                                                       _tee_sums(counts, weight, weight_sums))
                sums = np.stack([dm, corr, np.concatenate(weight_sums)], axis=1)
            else:
                sums = np.vstack([_refit_sums(inputs, reward_model, weight, chunk) for chunk in counts])
            boot = self._combine(sums, inputs.n)
        return self._result(inputs, self._contributions(columns), boot, level,
                            self._diagnostic_weight(inputs, weight), refit=not fixed, value=value)


def _model_columns(inputs: Inputs, q: np.ndarray, weight: np.ndarray) -> np.ndarray:
    feedback = inputs.feedback
    dm = np.einsum("na,na->n", inputs.pi, q)
    q_logged = q[np.arange(inputs.n), feedback.action]
    return np.stack([dm, weight * (feedback.reward - q_logged), weight], axis=1)


def _tee_sums(counts: Iterable[np.ndarray], weight: np.ndarray, out: list[np.ndarray]) -> Iterator[np.ndarray]:
    for chunk in counts:
        out.append(chunk @ weight)
        yield chunk


def _refit_sums(inputs: Inputs, model: Any, weight: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Resample by resample: refit with the counts as sample weights, then the weighted sums."""
    rows = []
    for c in counts:
        q = np.asarray(model.fit_predict(inputs.feedback, sample_weight=c), dtype=np.float64)
        rows.append(c @ _model_columns(inputs, check_q_hat(q, inputs.feedback), weight))
    return np.array(rows)


class DM(_ModelBased):
    """Direct method: ``mean_i sum_a pi_e[i, a] q_hat[i, a]``; low variance, biased as the model is.

    Parameters
    ----------
    weight_threshold
        For ``Estimate.share_above_threshold``; DM uses no weights, so the diagnostics describe
        the raw importance weights (how far the two policies are apart).

    Examples
    --------
    >>> import numpy as np
    >>> from matinee.apps.artwork import LoggedFeedback
    >>> from matinee.apps.artwork.ope import DM
    >>> log = LoggedFeedback(context=np.zeros((2, 1)), action=[0, 1], reward=[1, 0],
    ...                      propensity=[0.5, 0.5], n_actions=2)
    >>> q_hat = np.array([[0.9, 0.1], [0.5, 0.3]])
    >>> round(DM().value(log, np.tile([0.5, 0.5], (2, 1)), q_hat), 12)   # (0.5 + 0.4) / 2
    0.45
    """

    name = "dm"

    def _correction_weight(self, inputs: Inputs) -> np.ndarray:
        return np.zeros(inputs.n)

    def _diagnostic_weight(self, inputs: Inputs, weight: np.ndarray) -> np.ndarray:
        return inputs.weight

    def _contributions(self, columns: np.ndarray) -> np.ndarray:
        return columns[:, 0]


class DR(_ModelBased):
    """Doubly robust: DM plus the importance-weighted residual of the logged action.

    ``mean_i [sum_a pi_e[i, a] q_hat[i, a] + w_i (r_i - q_hat[i, a_i])]``: unbiased if either the
    propensities or the reward model are right, and lower variance than IPS when the model is good.

    Parameters
    ----------
    clip
        Clip the residual's weights at this value; None keeps them.
    weight_threshold
        For ``Estimate.share_above_threshold``.

    Examples
    --------
    >>> import numpy as np
    >>> from matinee.apps.artwork import LoggedFeedback
    >>> from matinee.apps.artwork.ope import DR
    >>> log = LoggedFeedback(context=np.zeros((2, 1)), action=[0, 1], reward=[1, 0],
    ...                      propensity=[0.5, 0.5], n_actions=2)
    >>> q_hat = np.array([[0.9, 0.1], [0.5, 0.3]])
    >>> pi_e = np.tile([0.5, 0.5], (2, 1))
    >>> round(DR().value(log, pi_e, q_hat), 12)   # (0.5 + 1 * 0.1 + 0.4 + 1 * -0.3) / 2
    0.35
    """

    name = "dr"

    def __init__(self, *, clip: float | None = None, weight_threshold: float = 10.0) -> None:
        super().__init__(weight_threshold=weight_threshold)
        self.clip = clip

    def _check_params(self) -> None:
        super()._check_params()
        check_positive(self.clip, "clip")

    def _correction_weight(self, inputs: Inputs) -> np.ndarray:
        return _clipped(inputs.weight, self.clip)


class SNDR(DR):
    """Self-normalised DR: the residual term is divided by the mean weight instead of multiplied by 1.

    ``mean_i dm_i + sum_i w_i (r_i - q_hat[i, a_i]) / sum_i w_i``.

    Parameters
    ----------
    clip
        Clip the weights at this value before normalising; None keeps them.
    weight_threshold
        For ``Estimate.share_above_threshold``.

    Examples
    --------
    >>> import numpy as np
    >>> from matinee.apps.artwork import LoggedFeedback
    >>> from matinee.apps.artwork.ope import SNDR
    >>> log = LoggedFeedback(context=np.zeros((2, 1)), action=[0, 1], reward=[1, 0],
    ...                      propensity=[0.5, 0.5], n_actions=2)
    >>> q_hat = np.array([[0.9, 0.1], [0.5, 0.3]])
    >>> pi_e = np.array([[1.0, 0.0], [1.0, 0.0]])   # weights 2 and 0
    >>> round(SNDR().value(log, pi_e, q_hat), 12)   # (0.9 + 0.5) / 2 + 2 * 0.1 / 2
    0.8
    """

    name = "sndr"

    def _combine(self, sums: np.ndarray, n: int) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums[:, 0] / n + np.where(sums[:, 2] > 0, sums[:, 1] / sums[:, 2], 0.0)

    def _contributions(self, columns: np.ndarray) -> np.ndarray:
        mean_weight = columns[:, 2].mean()
        return columns[:, 0] + (columns[:, 1] / mean_weight if mean_weight > 0 else 0.0)


class SwitchDR(_ModelBased):
    """Switch-DR: DR on the rounds whose weight is at most ``tau``, DM alone on the others.

    ``mean_i [dm_i + 1(w_i <= tau) w_i (r_i - q_hat[i, a_i])]``, as Open Bandit Pipeline's
    ``SwitchDoublyRobust`` with ``lambda_ = tau``; ``tau = inf`` is DR.

    Parameters
    ----------
    tau
        Switching threshold, >= 0.
    weight_threshold
        For ``Estimate.share_above_threshold``; the diagnostics describe the switched weights
        (0 where the round uses DM alone).

    Examples
    --------
    >>> import numpy as np
    >>> from matinee.apps.artwork import LoggedFeedback
    >>> from matinee.apps.artwork.ope import SwitchDR
    >>> log = LoggedFeedback(context=np.zeros((2, 1)), action=[0, 1], reward=[1, 0],
    ...                      propensity=[0.5, 0.25], n_actions=2)
    >>> q_hat = np.array([[0.9, 0.1], [0.5, 0.3]])
    >>> pi_e = np.tile([0.5, 0.5], (2, 1))   # weights 1 and 2
    >>> round(SwitchDR(tau=1.5).value(log, pi_e, q_hat), 12)   # (0.5 + 1 * 0.1 + 0.4) / 2
    0.5
    """

    name = "switch-dr"

    def __init__(self, *, tau: float = np.inf, weight_threshold: float = 10.0) -> None:
        super().__init__(weight_threshold=weight_threshold)
        self.tau = tau

    def _check_params(self) -> None:
        super()._check_params()
        check_positive(self.tau, "tau", allow_none=False, allow_zero=True)

    def _correction_weight(self, inputs: Inputs) -> np.ndarray:
        return np.where(inputs.weight <= self.tau, inputs.weight, 0.0)


def evaluate(
    feedback: LoggedFeedback,
    pi_e: np.ndarray,
    estimators: Sequence[OffPolicyEstimator] | None = None,
    reward_model: Any = None,
    *,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    random_state: int | None = None,
) -> dict[str, Estimate]:
    """Run several estimators on one log and evaluation policy.

    The reward model is fitted once for every point estimate (and refitted per
    resample inside each model-based estimator's bootstrap); all estimators draw
    the same resamples.

    Parameters
    ----------
    feedback, pi_e, reward_model, n_bootstrap, level, random_state
        As for :meth:`OffPolicyEstimator.estimate`.
    estimators
        Estimator instances; default IPS, SNIPS, DM, DR, SNDR and Switch-DR with their defaults.

    Returns
    -------
    dict
        ``Estimate`` by estimator name (a repeated name gets a ``#2`` suffix).

    Raises
    ------
    ParameterError
        As :meth:`OffPolicyEstimator.estimate`, or for an estimators entry that is not one.

    Examples
    --------
    >>> import numpy as np
    >>> from matinee.apps.artwork import LoggedFeedback
    >>> from matinee.apps.artwork.ope import evaluate
    >>> rng = np.random.default_rng(0)
    >>> log = LoggedFeedback(context=rng.normal(size=(500, 2)), action=rng.integers(0, 2, 500),
    ...                      reward=rng.random(500) < 0.3, propensity=np.full(500, 0.5), n_actions=2)
    >>> results = evaluate(log, np.tile([0.7, 0.3], (500, 1)), n_bootstrap=200, random_state=0)
    >>> sorted(results)
    ['dm', 'dr', 'ips', 'sndr', 'snips', 'switch-dr']
    >>> all(r.low <= r.value <= r.high for r in results.values())
    True
    """
    if estimators is None:
        estimators = [IPS(), SNIPS(), DM(), DR(), SNDR(), SwitchDR()]
    for est in estimators:
        if not isinstance(est, OffPolicyEstimator):
            raise ParameterError(f"estimators must hold OffPolicyEstimator instances, not {type(est).__name__}",
                                 parameter="estimators")
        est._check_params()
    check_estimate_args(n_bootstrap, level)
    inputs = check_inputs(feedback, pi_e)
    if reward_model is None:
        reward_model = RidgeRewardModel()
    q_point = None
    if hasattr(reward_model, "fit_predict") and any(isinstance(e, _ModelBased) for e in estimators):
        q_point = reward_model.fit_predict(feedback)
    if random_state is None:  # one fresh seed, shared, so every estimator still draws the same resamples
        random_state = int(np.random.SeedSequence().generate_state(1)[0])
    results: dict[str, Estimate] = {}
    for est in estimators:
        key, copy = est.name, 2
        while key in results:
            key, copy = f"{est.name}#{copy}", copy + 1
        results[key] = est._estimate(inputs, reward_model, q_point, int(n_bootstrap), float(level),
                                     np.random.default_rng(random_state))
    return results
