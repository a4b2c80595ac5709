"""The statistics of experiments against scipy, and their error rates over seeded simulations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from matinee.core.experiments.stats import (
    always_valid_p,
    holm,
    power,
    proportion_sd,
    ratio_effect,
    sample_size,
    sequential,
    sequential_ratio,
    srm,
    welch,
    welch_cuped,
)
from matinee.errors import ParameterError


@pytest.mark.parametrize("seed", range(5))
def test_welch_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(1.0, 2.0, 40 + 10 * seed)
    b = rng.normal(1.3, 1.0 + seed, 70)
    effect = welch(a, b, alpha=0.1)
    ref = sps.ttest_ind(b, a, equal_var=False)
    ci = ref.confidence_interval(0.9)
    assert effect.diff == pytest.approx(b.mean() - a.mean())
    assert effect.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert (effect.diff_low, effect.diff_high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert effect.significant == (ref.pvalue < 0.1)
    assert effect.relative == pytest.approx(b.mean() / a.mean() - 1)


def test_srm_matches_scipy_and_flags_a_broken_split() -> None:
    check = srm({"control": 52_000, "treatment": 48_000}, {"control": 0.5, "treatment": 0.5})
    ref = sps.chisquare([52_000, 48_000], [50_000, 50_000])
    assert check.chi2 == pytest.approx(ref.statistic) and check.p_value == pytest.approx(ref.pvalue)
    assert check.flagged
    fine = srm({"a": 33_500, "b": 33_200, "c": 33_300}, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    assert not fine.flagged and fine.as_dict()["flagged"] is False
    uneven = srm({"a": 9_000, "b": 1_000}, {"a": 0.9, "b": 0.1})
    assert not uneven.flagged


def _members(rng: np.random.Generator, sims: int, n: int, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Impressions and plays per member, with members' own take rates varying (so impressions correlate)."""
    impressions = rng.poisson(6, (sims, n)) + 1
    own = rng.beta(2, 2 * (1 - rate) / rate, (sims, n))
    return rng.binomial(impressions, own).astype(float), impressions.astype(float)


def test_ratio_delta_method_variance_matches_the_spread_over_simulations() -> None:
    rng = np.random.default_rng(11)
    plays, shown = _members(rng, 2_000, 400, 0.2)
    ratios = plays.sum(1) / shown.sum(1)
    predicted = [ratio_effect(plays[i], shown[i], plays[i], shown[i]).diff_high for i in range(200)]
    # diff_high of an arm against itself is z * sqrt(2 var): recover the arm's variance from it
    mean_var = np.mean([(h / sps.norm.ppf(0.975)) ** 2 / 2 for h in predicted])
    assert mean_var == pytest.approx(ratios.var(ddof=1), rel=0.12)
    naive = np.mean(ratios * (1 - ratios) / shown.sum(1))  # impressions as if independent: too small
    assert naive < 0.75 * ratios.var(ddof=1)


def test_ratio_effect_covers_the_true_difference_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(5)
    pc, sc = _members(rng, 400, 600, 0.20)
    pt, st = _members(rng, 400, 600, 0.22)
    truth = 0.22 - 0.20  # the beta means
    effects = [ratio_effect(pc[i], sc[i], pt[i], st[i]) for i in range(400)]
    coverage = np.mean([e.diff_low <= truth <= e.diff_high for e in effects])
    assert 0.92 <= coverage <= 0.98


def test_aa_false_positive_rate_at_a_fixed_horizon_is_alpha() -> None:
    rng = np.random.default_rng(2026)
    hits = [welch(rng.normal(0, 1, 500), rng.normal(0, 1, 500)).significant for _ in range(400)]
    assert 0.02 <= np.mean(hits) <= 0.08
    plays, shown = _members(rng, 400, 300, 0.3)
    hits = [ratio_effect(plays[i, :150], shown[i, :150], plays[i, 150:], shown[i, 150:]).significant
            for i in range(400)]
    assert 0.02 <= np.mean(hits) <= 0.08


def _peeking(seed: int, sims: int = 600, n: int = 3_000, start: int = 100, every: int = 5):
    """Running differences and variances of many A/A experiments looked at every ``every`` units per arm."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, 1, (sims, n)), rng.normal(0, 1, (sims, n))
    looks = np.arange(start, n + 1, every)
    stats = []
    for x in (a, b):
        total, squares = np.cumsum(x, 1)[:, looks - 1], np.cumsum(x * x, 1)[:, looks - 1]
        mean = total / looks
        stats.append((mean, (squares - looks * mean**2) / (looks - 1) / looks))
    (ma, va), (mb, vb) = stats
    return a, b, looks, mb - ma, va + vb


def test_peeking_inflates_the_naive_test_but_not_the_sequential_one() -> None:
    a, b, looks, diff, var = _peeking(seed=8)
    naive = (np.abs(diff) / np.sqrt(var) > sps.norm.ppf(0.975)).any(axis=1).mean()
    assert naive > 0.2  # the documented contrast: peeking at a fixed-horizon test breaks it
    tau = 0.2  # what sequential() picks for unit-variance data
    ever = (always_valid_p(diff, var, tau) < 0.05).any(axis=1).mean()
    assert 0.02 <= ever <= 0.08
    for i, look in [(0, 100), (3, 1_000), (7, 3_000)]:  # the vectorised form is what sequential() computes
        effect = sequential(a[i, :look], b[i, :look], tau=tau)
        k = int(np.searchsorted(looks, look))
        assert effect.p_value == pytest.approx(float(always_valid_p(diff[i, k], var[i, k], tau)), rel=1e-9)


def test_sequential_interval_is_wider_but_still_finds_a_real_effect() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 4_000), rng.normal(0.15, 1, 4_000)
    fixed, seq = welch(a, b), sequential(a, b)
    assert seq.diff_high - seq.diff_low > fixed.diff_high - fixed.diff_low
    assert seq.significant and seq.diff_low < 0.15 < seq.diff_high
    assert seq.method == "sequential" and seq.relative_low < seq.relative < seq.relative_high
    plays, shown = _members(rng, 2, 5_000, 0.2)
    lift, _ = _members(rng, 1, 5_000, 0.26)
    ratio = sequential_ratio(plays[0], shown[0], lift[0], shown[0])
    assert ratio.significant and ratio.method == "sequential"


def test_cuped_shrinks_the_interval_and_stays_unbiased() -> None:
    rng = np.random.default_rng(17)
    estimates, plain_widths, cuped_widths = [], [], []
    for _ in range(200):
        pre_c, pre_t = rng.normal(10, 3, 400), rng.normal(10, 3, 400)
        yc = 0.8 * pre_c + rng.normal(0, 1.5, 400)
        yt = 0.8 * pre_t + rng.normal(0, 1.5, 400) + 0.3
        plain, adjusted = welch(yc, yt), welch_cuped(yc, pre_c, yt, pre_t)
        estimates.append(adjusted.diff)
        plain_widths.append(plain.diff_high - plain.diff_low)
        cuped_widths.append(adjusted.diff_high - adjusted.diff_low)
        assert adjusted.method == "cuped"
    assert np.mean(cuped_widths) < 0.6 * np.mean(plain_widths)  # corr^2 = 0.74 here: width x ~0.5
    assert np.mean(estimates) == pytest.approx(0.3, abs=0.02)
    assert np.std(estimates) / math.sqrt(200) < 0.02


def test_sample_size_and_power_agree_with_each_other_and_with_simulation() -> None:
    n = sample_size(0.2, 1.0)
    assert n == math.ceil((sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) ** 2 * 2 / 0.04)
    assert power(n, 0.2, 1.0) == pytest.approx(0.8, abs=0.005)
    rng = np.random.default_rng(4)
    hits = [welch(rng.normal(0, 1, n), rng.normal(0.2, 1, n)).significant for _ in range(300)]
    assert 0.72 <= np.mean(hits) <= 0.88
    p = 0.2
    assert sample_size(0.02, proportion_sd(p)) > sample_size(0.04, proportion_sd(p)) * 3.9
    assert sample_size(0.2, 1.0, ratio=2.0) < n


def test_holm_matches_its_definition() -> None:
    assert holm([0.01, 0.04, 0.03]) == [0.03, 0.06, 0.06]
    assert holm([0.5]) == [0.5]
    assert holm([0.001, 0.9]) == [0.002, 0.9]


@pytest.mark.parametrize(("call", "parameter"), [
    (lambda: welch([1.0], [1.0, 2.0]), "control"),
    (lambda: welch([1.0, 2.0], [1.0, float("nan")]), "treatment"),
    (lambda: welch([1.0, 2.0], [1.0, 2.0], alpha=1.5), "alpha"),
    (lambda: ratio_effect([1, 2], [0, 0], [1, 2], [1, 1]), "control"),
    (lambda: ratio_effect([1, 2], [1, 1, 1], [1, 2], [1, 1]), "control"),
    (lambda: srm({"a": 10, "b": 10}, {"a": 0.6, "b": 0.6}), "weights"),
    (lambda: srm({"a": 10, "b": 10}, {"a": 0.5, "c": 0.5}), "counts"),
    (lambda: srm({"a": 0, "b": 0}, {"a": 0.5, "b": 0.5}), "counts"),
    (lambda: sequential([1.0, 2.0], [2.0, 3.0], tau=0), "tau"),
    (lambda: sample_size(0.1, 1.0, power=1.2), "power"),
    (lambda: proportion_sd(1.5), "p"),
])
def test_bad_input_names_the_parameter(call, parameter: str) -> None:
    with pytest.raises(ParameterError) as info:
        call()
    assert info.value.fields["parameter"] == parameter
