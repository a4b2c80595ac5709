"""The statistics of online experiments: effects with intervals, ratio metrics, CUPED, SRM, peeking, power.

Everything here is pure numpy/scipy on per-unit arrays (one value per member),
so the unit of randomisation is the unit of analysis:

:func:`welch`
    Difference of means with Welch's t interval (unequal variances).
:func:`ratio_effect`
    Ratio metrics such as take rate = plays / impressions, where both come per
    member: the arm's value is ``sum(num) / sum(den)`` and its variance comes from
    the delta method, not from treating impressions as independent (they are not:
    one member's impressions are correlated).
:func:`welch_cuped`
    The same difference after CUPED: subtracting ``theta * (x - mean(x))`` with a
    pre-period covariate ``x`` keeps the estimate unbiased and shrinks the interval
    by a factor ``sqrt(1 - corr(x, y)^2)``.
:func:`srm`
    The sample-ratio-mismatch check: a chi-square test of the units per arm
    against the configured weights. A flagged SRM means assignment or logging is
    broken, and no effect estimate from that experiment should be trusted.
:func:`sequential`, :func:`sequential_ratio`
    Always-valid p-values and confidence sequences (a normal-mixture sequential
    probability ratio test), which stay valid however often the results are
    looked at -- unlike the fixed-horizon interval, whose false-positive rate
    grows with every peek.
:func:`sample_size`, :func:`power`
    The two-sample normal approximation for planning.
:func:`holm`
    Holm's step-down adjustment when several treatment arms are compared with
    one control; their intervals then use Bonferroni's ``alpha / m``.

Differences are always ``treatment - control``; relative differences are
``treatment / control - 1`` with delta-method intervals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from matinee.errors import ParameterError

__all__ = [
    "Effect",
    "SrmCheck",
    "always_valid_p",
    "cuped",
    "holm",
    "power",
    "proportion_sd",
    "ratio_effect",
    "sample_size",
    "sequential",
    "sequential_ratio",
    "srm",
    "welch",
    "welch_cuped",
]


@dataclass(frozen=True)
class Effect:
    """The estimated effect of a treatment arm against the control arm on one metric."""

    metric: str
    control: str
    treatment: str
    n_control: int
    n_treatment: int
    mean_control: float
    mean_treatment: float
    diff: float
    diff_low: float
    diff_high: float
    relative: float
    relative_low: float
    relative_high: float
    p_value: float
    alpha: float
    method: str

    @property
    def significant(self) -> bool:
        """Whether the interval excludes 0 (``p_value < alpha``)."""
        return bool(self.p_value < self.alpha)

    def as_dict(self) -> dict[str, Any]:
        """Plain data, ``significant`` included."""
        return {**asdict(self), "significant": self.significant}


@dataclass(frozen=True)
class SrmCheck:
    """The sample-ratio-mismatch check of one experiment."""

    observed: dict[str, int]
    expected: dict[str, float]
    chi2: float
    p_value: float
    threshold: float

    @property
    def flagged(self) -> bool:
        """Whether the split is off by more than chance explains (``p_value < threshold``)."""
        return bool(self.p_value < self.threshold)

    def as_dict(self) -> dict[str, Any]:
        """Plain data, ``flagged`` included."""
        return {**asdict(self), "flagged": self.flagged}


# -- checks --------------------------------------------------------------------------
def _values(values: Any, name: str, minimum: int = 2) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if len(array) < minimum:
        raise ParameterError(f"{name} needs at least {minimum} units, not {len(array)}", parameter=name)
    if not np.isfinite(array).all():
        raise ParameterError(f"{name} has NaN or infinite values", parameter=name)
    return array


def _alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ParameterError(f"alpha must be between 0 and 1, not {alpha!r}", parameter="alpha")
    return float(alpha)


def _pair(num: Any, den: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    y, x = _values(num, f"{name} numerator"), _values(den, f"{name} denominator")
    if len(y) != len(x):
        raise ParameterError(f"{name}: numerator has {len(y)} units, denominator {len(x)}", parameter=name)
    if x.sum() <= 0:
        raise ParameterError(f"{name}: the denominator sums to {x.sum():g}; a ratio needs a positive total",
                             parameter=name)
    return y, x


def _relative(mc: float, mt: float, var_c: float, var_t: float, z: float) -> tuple[float, float, float]:
    """``mt / mc - 1`` and its delta-method interval, given the variances of the two means."""
    if mc == 0:
        return math.nan, math.nan, math.nan
    rel = mt / mc - 1
    se = math.sqrt(var_t / mc**2 + mt**2 * var_c / mc**4)
    return rel, rel - z * se, rel + z * se


# -- fixed-horizon effects -----------------------------------------------------------
def welch(
    control: Any, treatment: Any, alpha: float = 0.05, *, metric: str = "", names: tuple[str, str] = ("control",
                                                                                                        "treatment"),
    method: str = "welch",
) -> Effect:
    """Difference of means with Welch's t interval.

    Parameters
    ----------
    control, treatment
        One value per unit.
    alpha
        ``1 - alpha`` is the interval's coverage.
    metric, names
        Labels carried into the :class:`Effect`.

    Examples
    --------
    >>> e = welch([1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 5.0])
    >>> e.diff, round(e.p_value, 3)
    (1.0, 0.315)
    """
    a, b = _values(control, "control"), _values(treatment, "treatment")
    alpha = _alpha(alpha)
    na, nb = len(a), len(b)
    ma, mb = float(a.mean()), float(b.mean())
    va, vb = float(a.var(ddof=1)) / na, float(b.var(ddof=1)) / nb
    diff = mb - ma
    se = math.sqrt(va + vb)
    if se == 0:
        p, q = (1.0 if diff == 0 else 0.0), 0.0
    else:
        df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
        p = float(2 * sps.t.sf(abs(diff) / se, df))
        q = float(sps.t.ppf(1 - alpha / 2, df))
    rel, rel_low, rel_high = _relative(ma, mb, va, vb, float(sps.norm.ppf(1 - alpha / 2)))
    return Effect(metric, names[0], names[1], na, nb, ma, mb, diff, diff - q * se, diff + q * se, rel, rel_low,
                  rel_high, p, alpha, method)


def _ratio(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
    """``sum(num) / sum(den)`` and its delta-method variance."""
    n = len(num)
    xbar = float(den.mean())
    ratio = float(num.sum() / den.sum())
    cov = np.cov(num, den, ddof=1)
    var = (cov[0, 0] - 2 * ratio * cov[0, 1] + ratio**2 * cov[1, 1]) / (n * xbar**2)
    return ratio, float(max(var, 0.0))


def ratio_effect(
    num_control: Any, den_control: Any, num_treatment: Any, den_treatment: Any, alpha: float = 0.05, *,
    metric: str = "", names: tuple[str, str] = ("control", "treatment"),
) -> Effect:
    """Difference of a ratio metric (``sum(num) / sum(den)`` per arm) with delta-method intervals.

    Parameters
    ----------
    num_control, den_control, num_treatment, den_treatment
        Per unit: the numerator (e.g. plays) and the denominator (e.g. impressions).

    Examples
    --------
    >>> e = ratio_effect([1, 0, 2, 1], [4, 2, 5, 3], [2, 1, 2, 2], [4, 3, 4, 4])
    >>> round(e.mean_control, 3), round(e.mean_treatment, 3)
    (0.286, 0.467)
    """
    yc, xc = _pair(num_control, den_control, "control")
    yt, xt = _pair(num_treatment, den_treatment, "treatment")
    alpha = _alpha(alpha)
    rc, vc = _ratio(yc, xc)
    rt, vt = _ratio(yt, xt)
    z = float(sps.norm.ppf(1 - alpha / 2))
    diff, se = rt - rc, math.sqrt(vc + vt)
    p = float(2 * sps.norm.sf(abs(diff) / se)) if se > 0 else (1.0 if diff == 0 else 0.0)
    rel, rel_low, rel_high = _relative(rc, rt, vc, vt, z)
    return Effect(metric, names[0], names[1], len(yc), len(yt), rc, rt, diff, diff - z * se, diff + z * se, rel,
                  rel_low, rel_high, p, alpha, "delta")


def cuped(y: Any, x: Any, theta: float | None = None, x_mean: float | None = None) -> tuple[np.ndarray, float]:
    """``y - theta * (x - mean(x))`` with ``theta = cov(x, y) / var(x)``; returns the adjusted values and theta.

    ``x`` is a covariate measured before the experiment (so the treatment cannot
    move it), e.g. each member's plays in the weeks before.
    """
    yv, xv = _values(y, "y"), _values(x, "x")
    if len(yv) != len(xv):
        raise ParameterError(f"y has {len(yv)} units and x {len(xv)}", parameter="x")
    if theta is None:
        var = float(xv.var(ddof=1))
        theta = float(np.cov(xv, yv, ddof=1)[0, 1] / var) if var > 0 else 0.0
    centre = float(xv.mean()) if x_mean is None else x_mean
    return yv - theta * (xv - centre), theta


def welch_cuped(
    y_control: Any, x_control: Any, y_treatment: Any, x_treatment: Any, alpha: float = 0.05, *, metric: str = "",
    names: tuple[str, str] = ("control", "treatment"),
) -> Effect:
    """:func:`welch` after CUPED, with one ``theta`` and one covariate mean pooled over both arms."""
    yc, xc = _values(y_control, "y_control"), _values(x_control, "x_control")
    yt, xt = _values(y_treatment, "y_treatment"), _values(x_treatment, "x_treatment")
    _, theta = cuped(np.concatenate([yc, yt]), np.concatenate([xc, xt]))
    centre = float(np.concatenate([xc, xt]).mean())
    adj_c, _ = cuped(yc, xc, theta, centre)
    adj_t, _ = cuped(yt, xt, theta, centre)
    return welch(adj_c, adj_t, alpha, metric=metric, names=names, method="cuped")


# -- peeking ---------------------------------------------------------------------------
def always_valid_p(diff: Any, var: Any, tau: float) -> np.ndarray:
    """The normal-mixture SPRT p-value of an estimated difference ``diff`` with variance ``var`` (vectorised).

    The p-value valid under peeking is the running minimum of these over the
    looks taken so far.
    """
    d, v = np.asarray(diff, dtype=np.float64), np.asarray(var, dtype=np.float64)
    t2 = float(tau) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        log_lr = 0.5 * np.log(v / (v + t2)) + t2 * d**2 / (2 * v * (v + t2))
        p = np.minimum(1.0, np.exp(-log_lr))
    return np.where(v > 0, p, np.where(d == 0, 1.0, 0.0))


def _mixture(diff: float, var: float, tau: float, alpha: float) -> tuple[float, float]:
    """The normal-mixture SPRT's p-value and confidence-sequence half-width for one look."""
    if var <= 0:
        return (1.0 if diff == 0 else 0.0), 0.0
    t2 = tau**2
    p = float(always_valid_p(diff, var, tau))
    half = math.sqrt(var * (var + t2) / t2 * (2 * math.log(1 / alpha) + math.log((var + t2) / var)))
    return p, half


def sequential(
    control: Any, treatment: Any, alpha: float = 0.05, tau: float | None = None, *, metric: str = "",
    names: tuple[str, str] = ("control", "treatment"),
) -> Effect:
    """Difference of means with an always-valid p-value and confidence sequence.

    A normal-mixture sequential probability ratio test (mSPRT): the chance that
    the interval *ever* misses the true difference, over all the looks one cares
    to take, stays below ``alpha``. It is wider than the fixed-horizon interval
    at any one look; that is the price of peeking freely. ``tau`` is the scale of
    effects the test is tuned for (any positive value keeps it valid); by
    default a fifth of the pooled standard deviation. The variance is estimated
    from the data, so start looking once each arm has a hundred units or so.

    Examples
    --------
    >>> rng = __import__("numpy").random.default_rng(0)
    >>> a, b = rng.normal(0, 1, 2000), rng.normal(0.2, 1, 2000)
    >>> e = sequential(a, b)
    >>> e.significant, e.diff_low < 0.2 < e.diff_high
    (True, True)
    """
    a, b = _values(control, "control"), _values(treatment, "treatment")
    alpha = _alpha(alpha)
    ma, mb = float(a.mean()), float(b.mean())
    va, vb = float(a.var(ddof=1)) / len(a), float(b.var(ddof=1)) / len(b)
    if tau is None:
        tau = 0.2 * math.sqrt((float(a.var(ddof=1)) + float(b.var(ddof=1))) / 2) or 1e-12
    return _sequential_effect(metric, names, len(a), len(b), ma, mb, va, vb, tau, alpha)


def sequential_ratio(
    num_control: Any, den_control: Any, num_treatment: Any, den_treatment: Any, alpha: float = 0.05,
    tau: float | None = None, *, metric: str = "", names: tuple[str, str] = ("control", "treatment"),
) -> Effect:
    """:func:`sequential` for a ratio metric (delta-method variances).

    The default ``tau`` is a fifth of the per-unit standard deviation of the
    control arm's linearised ratio, ``sqrt(n * var)``.
    """
    yc, xc = _pair(num_control, den_control, "control")
    yt, xt = _pair(num_treatment, den_treatment, "treatment")
    alpha = _alpha(alpha)
    rc, vc = _ratio(yc, xc)
    rt, vt = _ratio(yt, xt)
    if tau is None:
        tau = 0.2 * math.sqrt(len(yc) * vc) or 1e-12
    return _sequential_effect(metric, names, len(yc), len(yt), rc, rt, vc, vt, tau, alpha)


def _sequential_effect(metric: str, names: tuple[str, str], na: int, nb: int, ma: float, mb: float, va: float,
                       vb: float, tau: float, alpha: float) -> Effect:
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau > 0:
        raise ParameterError(f"tau must be a positive number, not {tau!r}", parameter="tau")
    diff = mb - ma
    p, half = _mixture(diff, va + vb, float(tau), alpha)
    z = float(sps.norm.ppf(1 - alpha / 2))
    rel, rel_low, rel_high = _relative(ma, mb, va, vb, z)
    if math.isfinite(rel) and z > 0:  # widen the relative interval like the absolute one
        scale = half / (z * math.sqrt(va + vb)) if va + vb > 0 else 1.0
        rel_low, rel_high = rel - (rel - rel_low) * scale, rel + (rel_high - rel) * scale
    return Effect(metric, names[0], names[1], na, nb, ma, mb, diff, diff - half, diff + half, rel, rel_low,
                  rel_high, p, alpha, "sequential")


# -- sample ratio ------------------------------------------------------------------------
def srm(counts: Mapping[str, int], weights: Mapping[str, float], threshold: float = 0.001) -> SrmCheck:
    """Chi-square test of units per arm against the configured weights.

    Examples
    --------
    >>> srm({"a": 52_000, "b": 48_000}, {"a": 0.5, "b": 0.5}).flagged
    True
    >>> srm({"a": 5_010, "b": 4_990}, {"a": 0.5, "b": 0.5}).flagged
    False
    """
    if set(counts) != set(weights) or len(weights) < 2:
        raise ParameterError(f"counts has arms {sorted(counts)} but weights {sorted(weights)}; they must match "
                             "and name at least two arms", parameter="counts")
    total_weight = float(sum(weights.values()))
    if any(w <= 0 for w in weights.values()) or abs(total_weight - 1.0) > 1e-6:
        raise ParameterError(f"weights must be positive and sum to 1, not {dict(weights)}", parameter="weights")
    arms = list(weights)
    observed = np.array([int(counts[a]) for a in arms], dtype=np.float64)
    total = observed.sum()
    if total <= 0:
        raise ParameterError("no units were exposed yet: nothing to check", parameter="counts")
    expected = np.array([weights[a] for a in arms]) * total
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    p = float(sps.chi2.sf(chi2, len(arms) - 1))
    return SrmCheck({a: int(counts[a]) for a in arms}, {a: float(e) for a, e in zip(arms, expected, strict=True)},
                    chi2, p, threshold)


# -- planning ----------------------------------------------------------------------------
def proportion_sd(p: float) -> float:
    """The per-unit standard deviation of a 0/1 metric with mean ``p``."""
    if not 0 <= p <= 1:
        raise ParameterError(f"p must be a proportion in [0, 1], not {p!r}", parameter="p")
    return math.sqrt(p * (1 - p))


def sample_size(effect: float, sd: float, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0) -> int:
    """Units in the control arm (``ratio`` times as many in treatment) to detect ``effect`` with ``power``.

    Examples
    --------
    >>> sample_size(0.1, 1.0)   # a tenth of a standard deviation, 80% power, alpha 0.05
    1570
    """
    _alpha(alpha)
    if not 0 < power < 1:
        raise ParameterError(f"power must be between 0 and 1, not {power!r}", parameter="power")
    if not effect or not sd > 0 or not ratio > 0:
        raise ParameterError("effect must be non-zero, sd and ratio positive", parameter="effect")
    z = sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)
    return int(math.ceil(z**2 * sd**2 * (1 + 1 / ratio) / effect**2))


def power(n_control: int, effect: float, sd: float, alpha: float = 0.05, ratio: float = 1.0) -> float:
    """The chance a two-sided test at ``alpha`` detects ``effect`` with ``n_control`` units in control.

    Examples
    --------
    >>> round(power(1570, 0.1, 1.0), 2)
    0.8
    """
    _alpha(alpha)
    if not n_control > 0 or not sd > 0 or not ratio > 0:
        raise ParameterError("n_control, sd and ratio must be positive", parameter="n_control")
    se = sd * math.sqrt(1 / n_control + 1 / (n_control * ratio))
    z = sps.norm.ppf(1 - alpha / 2)
    shift = abs(effect) / se
    return float(sps.norm.cdf(shift - z) + sps.norm.cdf(-shift - z))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (compare each with ``alpha``), in the input order.

    Examples
    --------
    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    order = np.argsort(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return [round(float(v), 12) for v in adjusted]
