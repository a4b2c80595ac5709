"""The experiment harness on the simulated service: real event logs, analysed like a served experiment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from matinee import EventLog
from matinee.apps.sim.experiments import RankerDuel
from matinee.core.experiments import Experiment, analyze
from matinee.errors import ParameterError


@pytest.fixture(scope="module")
def duel() -> RankerDuel:
    return RankerDuel("small", noise_a=3.0, noise_b=0.5, k=8, visits=6.0, seed=3)


def test_the_better_ranker_has_the_higher_true_take_rate(duel):
    truth = duel.truth()
    assert truth["take_rate_b"] > truth["take_rate_a"] > 0
    assert truth["difference"] == pytest.approx(truth["take_rate_b"] - truth["take_rate_a"])


def test_an_ab_test_logged_to_a_real_event_log_finds_the_true_difference(duel, tmp_path: Path):
    e = Experiment.build("duel", ["ranker@champion", "ranker@challenger"], guardrails=["impressions_per_member"],
                         started_at=10_000.0, stopped_at=20_000.0, status="stopped")
    path = tmp_path / "events.db"
    with EventLog(path) as log:
        written = duel.log_ab(log, e, 3000, start=10_000.0, seconds=5000.0, pre_period=5000.0, seed=1)
    assert written > 3000 * 2
    analysis = analyze(e, path)
    take = analysis.primary()[0]
    truth = duel.truth()
    assert not analysis.srm_flagged and analysis.assignment_mismatches == 0
    assert take["significant"] and take["diff"] > 0
    assert take["diff_low"] - 0.01 <= truth["difference"] <= take["diff_high"] + 0.01


def test_an_interleaving_experiment_logged_to_a_real_event_log_prefers_the_better_ranker(duel, tmp_path: Path):
    e = Experiment.build("duel-il", ["ranker@champion", "ranker@challenger"], kind="interleaving",
                         primary_metric="preference", started_at=0.0, stopped_at=1e6, status="stopped")
    path = tmp_path / "events.db"
    with EventLog(path) as log:
        duel.log_interleaving(log, e, 400, start=10.0, seconds=1000.0, seed=2)
    analysis = analyze(e, path)
    pref = analysis.preference
    assert pref.method == "clustered" and pref.units == 400
    assert pref.share_b > 0.5 and pref.significant and pref.winner == "b"
    assert analysis.effects[0]["metric"] == "preference" and analysis.effects[0]["significant"]
    assert not analysis.warnings
    json.dumps(analysis.as_dict(), allow_nan=False)  # undefined numbers are null: strict JSON


def test_power_grows_with_members_and_interleaving_needs_fewer(duel):
    ab = [duel.ab_power(n, replicates=40) for n in (10, 40, 200)]
    assert ab[0] < ab[1] < ab[2] == 1.0
    assert duel.interleaving_power(20, replicates=40) > duel.ab_power(20, replicates=40)


def test_bad_settings_are_refused():
    with pytest.raises(ParameterError, match="noise_a must be a number >= 0"):
        RankerDuel("tiny", noise_a=-1)
    with pytest.raises(ParameterError, match="take_ideal must be in"):
        RankerDuel("tiny", take_ideal=1.5)
    with pytest.raises(ParameterError, match="test must be 'ab' or 'interleaving'"):
        RankerDuel("tiny").members_for_power("mab")


def test_a_biased_team_draft_coin_is_flagged(duel, tmp_path: Path):
    e = Experiment.build("duel-il", ["ranker@champion", "ranker@challenger"], kind="interleaving",
                         primary_metric="preference", started_at=0.0, stopped_at=1e6, status="stopped")
    path = tmp_path / "events.db"
    with EventLog(path) as log:
        log.append_many([{"decision_id": f"d{i}", "ts": 10.0, "unit_id": i % 50, "endpoint": "recs",
                          "model": "ranker", "arm": e.interleaved_arm, "context": [1.0, 0.0], "candidates": [1, 2],
                          "action": 1, "propensity": 1.0} for i in range(400)],
                        [{"decision_id": f"d{i}", "ts": 11.0, "event": "play:1", "reward": 1.0} for i in range(400)])
    analysis = analyze(e, path)
    assert analysis.warnings[0].startswith("TEAM DRAFT MISMATCH: team b picked first in 400 of 400")
