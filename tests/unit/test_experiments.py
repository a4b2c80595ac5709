"""Experiments: the model and its validation, the store and lifecycle, exposures read from a real event log."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from matinee import EventLog
from matinee.core.experiments import (
    Arm,
    Experiment,
    analyze,
    analyze_members,
    create_experiment,
    delete_experiment,
    get_experiment,
    list_experiments,
    member_metrics,
    start_experiment,
    stop_experiment,
    write_report,
)
from matinee.core.registry import register_model, set_alias
from matinee.core.serving.config import Endpoint, assign_arm
from matinee.errors import ConflictError, NotFoundError, ParameterError


@pytest.fixture
def ranker() -> str:
    """A registered model with aliases champion, challenger and other."""
    for version, alias in enumerate(("champion", "challenger", "other"), start=1):
        register_model("ranker", {"v": version})
        set_alias("ranker", alias, version)
    return "ranker"


def build(name: str = "exp", arms: object = ("ranker@champion", "ranker@challenger"), **fields: object) -> Experiment:
    return Experiment.build(name, arms, **fields)  # type: ignore[arg-type]


# -- validation ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arms, fields, parameter, message", [
    (["ranker@a=0.6", "ranker@b=0.6"], {}, "weights", "arm weights must sum to 1, not 1.2"),
    (["ranker@a=0.5", "ranker@b=0.3"], {}, "weights", "must sum to 1, not 0.8"),
    (["ranker@a=0.5", "ranker@a=0.5"], {}, "arms", "arms overlap: alias 'a' is in more than one arm"),
    (["ranker@a"], {}, "arms", "at least two arms"),
    (["ranker@a", "other@b"], {}, "arms", "every arm must be an alias of one model"),
    (["ranker", "ranker@b"], {}, "arms", "an arm is MODEL@ALIAS[=WEIGHT]"),
    (["ranker@a=x", "ranker@b"], {}, "weights", "must be a number"),
    (["ranker@a=0", "ranker@b=1"], {}, "weights", "must be in (0, 1]"),
    (["ranker@a", "ranker@b"], {"primary_metric": "clicks"}, "primary_metric", "unknown metric 'clicks'"),
    (["ranker@a", "ranker@b"], {"guardrails": ["nope"]}, "guardrails", "unknown metric 'nope' in guardrails"),
    (["ranker@a", "ranker@b"], {"kind": "mab"}, "kind", "kind must be one of ab, interleaving"),
    (["ranker@a", "ranker@b"], {"endpoint": "home"}, "endpoint", "endpoint must be one of recs, artwork"),
    (["ranker@a", "ranker@b"], {"alpha": 0.9}, "alpha", "alpha must be between 0 and 0.5"),
    (["ranker@a", "ranker@b", "ranker@c"], {"kind": "interleaving", "primary_metric": "preference"}, "arms",
     "exactly two arms"),
])
def test_bad_experiments_are_refused_naming_the_field(arms, fields, parameter, message):
    with pytest.raises(ParameterError) as info:
        build("exp", arms, **fields)
    assert message in info.value.message
    assert info.value.parameter == parameter


def test_bad_names_are_refused():
    with pytest.raises(ParameterError, match="invalid experiment name"):
        build("has space")


def test_weights_left_out_share_the_rest_and_the_first_arm_is_control():
    e = build("exp", ["ranker@champion=0.5", "ranker@b", "ranker@c"])
    assert e.control == "champion"
    assert e.weights == {"champion": 0.5, "b": 0.25, "c": 0.25}
    assert e.salt == "exp"


def test_assignment_is_servings_hash_with_the_experiments_split_and_salt():
    e = build("exp", ["ranker@champion=0.9", "ranker@challenger=0.1"], salt="s-1")
    endpoint = Endpoint(**e.endpoint_config())
    members = list(range(2000)) + [f"m{i}" for i in range(200)]
    assert [e.assign(m) for m in members] == [endpoint.arm(m) for m in members]
    assert all(e.assign(m) == assign_arm("s-1", m, {"champion": 90, "challenger": 10}) for m in members)
    share = np.mean([e.assign(m) == "challenger" for m in range(2000)])
    assert 0.08 < share < 0.12


# -- the store and the lifecycle ----------------------------------------------------------------------
#: Run the test once on SQLite and once on PostgreSQL (see ``metadata_url`` in tests/_postgres.py).
both_dialects = pytest.mark.usefixtures("metadata_url")


@both_dialects
def test_lifecycle_is_stored_in_the_metadata_database(ranker, home):
    created = create_experiment(build("exp", guardrails=["impressions_per_member"], description="v2 vs v1"))
    assert created.status == "draft" and created.owner == "tester" and created.created_at
    again = get_experiment("exp")
    assert again == created
    started = start_experiment("exp")
    assert started.status == "running" and started.started_at >= created.created_at
    stopped = stop_experiment("exp")
    assert stopped.status == "stopped" and stopped.stopped_at >= started.started_at
    assert [e.name for e in list_experiments()] == ["exp"]
    assert list_experiments("running") == []


@both_dialects
def test_lifecycle_errors(ranker):
    create_experiment(build("exp"))
    with pytest.raises(ConflictError, match="exists already"):
        create_experiment(build("exp"))
    with pytest.raises(ConflictError, match="only a running one can stop"):
        stop_experiment("exp")
    start_experiment("exp")
    with pytest.raises(ConflictError, match="only a draft can start"):
        start_experiment("exp")
    with pytest.raises(ConflictError, match="only a draft can be deleted"):
        delete_experiment("exp")
    create_experiment(build("exp2", ["ranker@champion", "ranker@other"]))
    with pytest.raises(ConflictError, match="'exp' is running on recs with model ranker"):
        start_experiment("exp2")
    delete_experiment("exp2")
    with pytest.raises(NotFoundError, match="no experiment named 'exp2'"):
        get_experiment("exp2")


def test_unknown_aliases_and_models_are_refused(ranker):
    with pytest.raises(NotFoundError, match="arm ranker@nope: model 'ranker' has no alias 'nope'"):
        create_experiment(build("exp", ["ranker@champion", "ranker@nope"]))
    with pytest.raises(NotFoundError, match="no model named 'ghost'"):
        create_experiment(build("exp", ["ghost@champion", "ghost@challenger"]))
    assert list_experiments() == []


# -- exposures from a real event log -------------------------------------------------------------------
def serve_traffic(log: EventLog, e: Experiment, members: range, rates: dict[str, float], *, ts: float,
                  seed: int = 0, visits: int = 4, arm_of: object = None) -> None:
    """What a server logs: one decision per visit with the member's arm, and play / no_play feedback."""
    rng = np.random.default_rng(seed)
    decisions, feedback = [], []
    for member in members:
        arm = e.assign(member) if arm_of is None else arm_of(member)  # type: ignore[operator]
        for visit in range(int(rng.integers(1, visits + 1))):
            did = f"{e.name}-{member}-{visit}-{ts}"
            decisions.append({"decision_id": did, "ts": ts + visit, "unit_id": member, "endpoint": e.endpoint,
                              "model": e.model, "model_version": 1, "arm": arm, "candidates": [1, 2, 3],
                              "action": 1, "propensity": 1.0})
            played = rng.random() < rates[arm]
            feedback.append({"decision_id": did, "ts": ts + visit + 0.5, "event": "play" if played else "no_play",
                             "reward": float(played)})
    log.append_many(decisions, feedback)


def test_analysis_reads_exposures_and_matches_scipy(ranker, tmp_path: Path):
    e = create_experiment(build("exp", guardrails=["plays_per_member", "impressions_per_member"]))
    e = start_experiment("exp", at=1000.0)
    path = tmp_path / "events.db"
    with EventLog(path) as log:
        serve_traffic(log, e, range(1500), {"champion": 0.3, "challenger": 0.36}, ts=2000.0)
        # Noise the analysis must ignore: before the start, another model, an unknown arm.
        serve_traffic(log, e, range(50), {"champion": 1.0, "challenger": 1.0}, ts=500.0, seed=1)
        other = Experiment.build("x", ["other@champion", "other@challenger"])
        serve_traffic(log, other, range(50), {"champion": 1.0, "challenger": 1.0}, ts=2000.0, seed=2)
        serve_traffic(log, e, range(5000, 5020), {"ghost": 1.0}, ts=2000.0, arm_of=lambda m: "ghost")
    e = stop_experiment("exp", at=10_000.0)
    members = member_metrics(e, path)
    assert set(members["arm"]) == {"champion", "challenger"}
    assert members["unit_id"].nunique() == 1500 and len(members) == 1500
    analysis = analyze("exp", path, cuped=False)
    assert not analysis.srm_flagged and analysis.crossovers == 0 and analysis.assignment_mismatches == 0
    assert analysis.assignment_checked == 1500
    # Independently: per-member sums and scipy.
    raw = EventLog(path).joined()
    raw = raw[(raw["model"] == "ranker") & (raw["ts"] >= 1000) & raw["arm"].isin(e.aliases)]
    raw["play"] = (raw["last_event"] == "play").astype(float)
    per = raw.groupby(["unit_id", "arm"]).agg(n=("play", "size"), plays=("play", "sum")).reset_index()
    c, t = per[per["arm"] == "champion"], per[per["arm"] == "challenger"]
    plays = next(x for x in analysis.effects if x["metric"] == "plays_per_member")
    welch = sps.ttest_ind(t["plays"], c["plays"], equal_var=False)
    assert plays["p_value"] == pytest.approx(welch.pvalue, rel=1e-9)
    ci = welch.confidence_interval(0.95)
    assert (plays["diff_low"], plays["diff_high"]) == pytest.approx((ci.low, ci.high), rel=1e-9)
    take = analysis.primary()[0]
    assert take["method"] == "delta"
    assert take["mean_control"] == pytest.approx(c["plays"].sum() / c["n"].sum())
    assert take["mean_treatment"] == pytest.approx(t["plays"].sum() / t["n"].sum())
    # The delta method by hand: var(R) = (s_yy - 2R s_xy + R^2 s_xx) / (n xbar^2).
    def ratio_var(y: pd.Series, x: pd.Series) -> float:
        r = y.sum() / x.sum()
        cov = np.cov(y, x, ddof=1)
        return float((cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (len(y) * x.mean() ** 2))
    se = np.sqrt(ratio_var(c["plays"], c["n"]) + ratio_var(t["plays"], t["n"]))
    assert take["p_value"] == pytest.approx(2 * sps.norm.sf(abs(take["diff"]) / se), rel=1e-9)
    assert take["diff_high"] - take["diff"] == pytest.approx(sps.norm.ppf(0.975) * se, rel=1e-9)
    assert take["significant"]
    arms = {row["arm"]: row for row in analysis.arms}
    assert arms["champion"]["units"] == len(c) and arms["challenger"]["impressions"] == t["n"].sum()


def test_analysis_before_any_exposure_is_a_clear_error(ranker, tmp_path: Path):
    create_experiment(build("exp"))
    with pytest.raises(ConflictError, match="has not started: nothing to analyze"):
        analyze("exp", tmp_path / "events.db")
    start_experiment("exp")
    with pytest.raises(NotFoundError, match="has no exposures yet: no recs decisions of ranker@champion/challenger"):
        analyze("exp", tmp_path / "events.db")


def test_members_seen_in_two_arms_and_a_wrong_salt_are_reported(ranker, tmp_path: Path):
    e = start_experiment(create_experiment(build("exp")).name, at=0.0)
    path = tmp_path / "events.db"
    with EventLog(path) as log:
        wrong = Experiment.build("exp", ["ranker@champion", "ranker@challenger"], salt="another")
        serve_traffic(log, e, range(400), {"champion": 0.3, "challenger": 0.3}, ts=10.0, arm_of=wrong.assign)
        serve_traffic(log, e, range(10), {"champion": 0.3, "challenger": 0.3}, ts=100.0, seed=3,
                      arm_of=lambda m: "challenger" if wrong.assign(m) == "champion" else "champion")
    analysis = analyze("exp", path)
    assert analysis.crossovers == 10
    assert analysis.assignment_mismatches > 100
    assert any("more than one arm" in w for w in analysis.warnings)
    assert any("salt differs" in w for w in analysis.warnings)


def test_srm_flags_a_52_48_split_of_100k_members_loudly(ranker, tmp_path: Path):
    e = build("exp", started_at=0.0)
    rng = np.random.default_rng(0)
    arms = np.where(rng.random(100_000) < 0.52, "champion", "challenger")
    members = pd.DataFrame({"unit_id": np.arange(100_000).astype(str), "arm": arms,
                            "impressions": rng.integers(1, 5, 100_000).astype(float),
                            "plays": rng.integers(0, 2, 100_000).astype(float), "reward": 0.0})
    analysis = analyze_members(e, members)
    assert analysis.srm_flagged and analysis.srm.p_value < 1e-10
    assert analysis.warnings[0].startswith("SAMPLE RATIO MISMATCH")
    page = write_report(analysis, tmp_path / "r.html").read_text()
    assert "class='alarm'>SAMPLE RATIO MISMATCH" in page
    fair = members.assign(arm=np.where(rng.random(100_000) < 0.5, "champion", "challenger"))
    assert not analyze_members(e, fair).srm_flagged


def test_several_treatment_arms_use_holm_and_bonferroni(ranker):
    e = build("exp", ["ranker@champion=0.4", "ranker@challenger=0.3", "ranker@other=0.3"], started_at=0.0)
    rng = np.random.default_rng(5)
    n = 6000
    arm = np.array([e.assign(i) for i in range(n)])
    lift = np.select([arm == "challenger", arm == "other"], [0.08, 0.0], 0.0)
    impressions = rng.integers(1, 6, n).astype(float)
    members = pd.DataFrame({"unit_id": np.arange(n).astype(str), "arm": arm, "impressions": impressions,
                            "plays": rng.binomial(impressions.astype(int), 0.3 + lift).astype(float), "reward": 0.0})
    analysis = analyze_members(e, members)
    effects = {x["treatment"]: x for x in analysis.primary()}
    raw = [effects["challenger"]["p_value"], effects["other"]["p_value"]]
    lo, hi = sorted(raw)
    expected = {min(raw): min(1.0, 2 * lo), max(raw): min(1.0, max(2 * lo, hi))}
    for x in effects.values():
        assert x["alpha"] == pytest.approx(0.025)
        assert x["p_adjusted"] == pytest.approx(expected[x["p_value"]])
    assert effects["challenger"]["significant"] and not effects["other"]["significant"]
    assert "Holm" in analysis.correction and "Bonferroni" in analysis.correction


def test_an_arm_without_members_is_a_clear_error(ranker):
    e = build("exp", started_at=0.0)
    members = pd.DataFrame({"unit_id": ["1", "2", "3"], "arm": ["champion"] * 3, "impressions": 1.0,
                            "plays": [0.0, 1.0, 0.0], "reward": 0.0})
    with pytest.raises(ParameterError, match="arm 'challenger' has 0 exposed member"):
        analyze_members(e, members)


def test_cuped_reads_the_pre_period_and_shrinks_the_interval(ranker, tmp_path: Path):
    e = start_experiment(create_experiment(build("exp", primary_metric="plays_per_member")).name, at=100 * 86_400.0)
    path = tmp_path / "events.db"
    rng = np.random.default_rng(11)
    appetite = rng.gamma(1.0, 2.0, 800)  # a member trait that drives plays before and during the experiment
    with EventLog(path) as log:
        decisions, feedback = [], []
        for member in range(800):
            arm = e.assign(member)
            for period, start in (("pre", 95 * 86_400.0), ("exp", 100 * 86_400.0 + 10)):
                for visit in range(1 + rng.poisson(4 * appetite[member])):
                    did = f"{period}-{member}-{visit}"
                    decisions.append({"decision_id": did, "ts": start + visit, "unit_id": member, "endpoint": "recs",
                                      "model": "ranker", "arm": arm if period == "exp" else "champion",
                                      "candidates": [], "action": 1, "propensity": 1.0})
                    if rng.random() < 0.5:
                        feedback.append({"decision_id": did, "ts": start + visit, "event": "play", "reward": 1.0})
        log.append_many(decisions, feedback)
    plain = analyze("exp", path, cuped=False).primary()[0]
    adjusted = analyze("exp", path).primary()[0]
    assert adjusted["method"] == "cuped" and plain["method"] == "welch"
    assert adjusted["diff_high"] - adjusted["diff_low"] < 0.7 * (plain["diff_high"] - plain["diff_low"])
    assert adjusted["diff_low"] < 0 < adjusted["diff_high"]  # no true difference: both arms are identical


def test_report_is_offline_html_with_the_interval_plot(ranker, tmp_path: Path):
    e = build("exp", started_at=0.0, guardrails=["impressions_per_member"])
    rng = np.random.default_rng(1)
    members = pd.DataFrame({"unit_id": [str(i) for i in range(300)], "arm": [e.assign(i) for i in range(300)],
                            "impressions": rng.integers(1, 5, 300).astype(float),
                            "plays": rng.integers(0, 2, 300).astype(float), "reward": 0.0})
    out = write_report(analyze_members(e, members), tmp_path / "deep" / "report.html")
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and '<script src="http' not in page
    assert "take_rate (primary)" in page and "impressions_per_member (guardrail)" in page
    assert out.stat().st_size > 1_000_000  # plotly.js is inside


@both_dialects
def test_experiment_round_trips_through_the_store(ranker):
    e = build("exp", ["ranker@champion=0.7", "ranker@challenger=0.3"], salt="s", guardrails=["reward_per_member"],
              owner="ana", description="d", alpha=0.01)
    stored = create_experiment(e)
    assert get_experiment("exp").as_dict() == stored.as_dict()
    assert stored.arms == (Arm("champion", 0.7), Arm("challenger", 0.3))


def test_feedback_after_the_analysis_time_is_not_counted(ranker, tmp_path: Path):
    e = start_experiment(create_experiment(build("exp")).name, at=0.0)
    path = tmp_path / "events.db"
    with EventLog(path) as log:
        serve_traffic(log, e, range(200), {"champion": 1.0, "challenger": 1.0}, ts=10.0)
    assert member_metrics(e, path, until=10.2)["plays"].sum() == 0
    assert member_metrics(e, path, until=time.time())["plays"].sum() > 0


def test_the_experiments_guide_examples_run(capsys):
    text = (Path(__file__).resolve().parents[2] / "docs" / "experiments.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 2
    for block in blocks:
        exec(compile(block, "docs/experiments.md", "exec"), {})


def test_repeated_analyses_read_only_what_was_appended_and_agree_with_a_full_read(ranker, home: Path,
                                                                                  tmp_path: Path):
    e = start_experiment(create_experiment(build("exp")).name, at=0.0)
    path = tmp_path / "events.db"
    with EventLog(path) as log:
        serve_traffic(log, e, range(300), {"champion": 0.3, "challenger": 0.4}, ts=10.0)
    first = analyze("exp", path)
    state = home / "experiments" / "exp" / "exposures" / "state.json"
    assert state.exists()
    marks = json.loads(state.read_text())["marks"]
    with EventLog(path) as log:
        serve_traffic(log, e, range(200, 600), {"champion": 0.3, "challenger": 0.4}, ts=50.0, seed=9)
    cached = analyze("exp", path)
    assert json.loads(state.read_text())["marks"] > marks
    full = analyze("exp", path, cache=False)
    assert same(cached.arms, full.arms) and same(cached.effects, full.effects)
    assert not same(cached.arms, first.arms)
    # A log replaced by a shorter one is read again from the start.
    path.unlink()
    with EventLog(path) as log:
        serve_traffic(log, e, range(100), {"champion": 0.3, "challenger": 0.4}, ts=10.0, seed=4)
    assert same(analyze("exp", path).arms, analyze("exp", path, cache=False).arms)


def same(rows: list[dict], others: list[dict]) -> bool:
    """Equal rows, numbers to floating-point precision (sums may add up in another order)."""
    return len(rows) == len(others) and all(
        a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], rel=1e-9) if isinstance(a[k], float) else a[k] == b[k]
                                     for k in a) for a, b in zip(rows, others, strict=True))
