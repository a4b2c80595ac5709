"""From the event log to an experiment's results: exposures, per-member metrics, effects, checks.

An experiment's exposures are the decisions its server logged on the
experiment's endpoint for its model, with an arm that is one of its aliases,
made inside its window (``started_at <= ts < stopped_at``, or until now while it
runs). Each member's exposures and the feedback to them are summed into
per-member values -- ``impressions``, ``plays`` (``play`` or ``play:ITEM``
feedback events), ``reward`` -- and the metrics compare arms on those: the
member, the unit of randomisation, is the unit of analysis.

:func:`analyze` reads the log and returns an :class:`Analysis`; the statistics
themselves are :mod:`matinee.core.experiments.stats`. Members seen in more than
one arm (the salt or split changed mid-way) are left out and counted; the
sample-ratio-mismatch check runs on the members of each arm, and a sample of
members is re-assigned with serving's hash to check that the server's split
is the experiment's.

Interleaving experiments (``kind="interleaving"``) read their decisions one by
one: a decision's ``arm`` is ``"A+B"``, its ``candidates`` the interleaved list,
its ``context`` the team of each slot (0 for ``a``, 1 for ``b``), and a
``play:ITEM`` feedback event names the item played.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matinee.core.events import EventLog
from matinee.core.experiments._scan import DAY, PLAY, VALUES, cached_scan, scan
from matinee.core.experiments._scan import members as members_frame
from matinee.core.experiments.model import METRICS, Experiment
from matinee.core.plain import finite
from matinee.errors import ConflictError, NotFoundError, ParameterError, StorageError

__all__ = ["Analysis", "analyze", "analyze_members", "member_metrics", "pre_period_metrics"]

#: Members re-assigned with serving's hash to check the logged arms.
ASSIGNMENT_SAMPLE = 2_000


@dataclass(frozen=True)
class Analysis:
    """An experiment's results at one moment.

    Attributes
    ----------
    experiment
        The experiment analysed.
    since, until
        The window of exposures read (seconds since the epoch).
    arms
        Per arm: ``arm``, ``weight``, ``units`` (members), ``impressions``, ``plays``,
        ``reward`` and each metric's value.
    effects
        Per treatment arm and metric (primary first, then guardrails): an
        :class:`~matinee.core.experiments.stats.Effect` as a dict, with ``role``
        (``primary`` or ``guardrail``), ``p_adjusted`` (Holm over the treatment arms)
        and ``significant`` (``p_adjusted < alpha``).
    srm
        The sample-ratio-mismatch check (``None`` for interleaving).
    preference
        The interleaving result (``None`` for an A/B test).
    crossovers
        Members seen in more than one arm, left out.
    assignment_mismatches, assignment_checked
        Sampled members whose logged arm is not the one serving's hash gives them.
    method, cuped, correction
        How the effects were computed, said in words for the report.
    warnings
        Everything a reader must see before trusting the numbers (an SRM first).
    """

    experiment: Experiment
    since: float
    until: float
    arms: list[dict[str, Any]]
    effects: list[dict[str, Any]]
    srm: Any = None
    preference: Any = None
    crossovers: int = 0
    assignment_mismatches: int = 0
    assignment_checked: int = 0
    method: str = "fixed"
    cuped: bool = False
    correction: str = "none (one treatment arm)"
    warnings: list[str] = field(default_factory=list)

    @property
    def srm_flagged(self) -> bool:
        """Whether the sample-ratio-mismatch check failed."""
        return bool(self.srm is not None and self.srm.flagged)

    def primary(self) -> list[dict[str, Any]]:
        """The primary metric's effects, one per treatment arm."""
        return [e for e in self.effects if e["role"] == "primary"]

    def as_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready: a number that is not finite, such as an undefined relative
        difference, is ``None``)."""
        return finite({
            "experiment": self.experiment.as_dict(), "since": self.since, "until": self.until, "arms": self.arms,
            "effects": self.effects, "srm": None if self.srm is None else self.srm.as_dict(),
            "srm_flagged": self.srm_flagged,
            "preference": None if self.preference is None else self.preference.as_dict(),
            "crossovers": self.crossovers, "assignment_mismatches": self.assignment_mismatches,
            "assignment_checked": self.assignment_checked, "method": self.method, "cuped": self.cuped,
            "correction": self.correction, "warnings": list(self.warnings),
        })


# -- reading the log ------------------------------------------------------------------------
def _log_path(events: EventLog | str | Path | None) -> Path:
    if isinstance(events, EventLog):
        events.flush()
        return events.path
    if events is None:
        from matinee.core.events import default_path

        return default_path()
    return Path(events)


def _read(path: Path, sql: str, params: Mapping[str, Any]) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame()
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:  # pragma: no cover - a file that is not a database
        raise StorageError(f"cannot open the event log {path}: {exc}", path=str(path)) from exc
    try:
        conn.execute("PRAGMA temp_store = MEMORY")
        return pd.read_sql_query(sql, conn, params=dict(params))
    except (sqlite3.Error, pd.errors.DatabaseError) as exc:
        if "no such table" in str(exc):
            return pd.DataFrame()
        raise StorageError(f"cannot read the event log {path}: {exc}", path=str(path)) from exc
    finally:
        conn.close()


def _arm_filter(arms: list[str]) -> tuple[str, dict[str, Any]]:
    names = {f"arm{i}": a for i, a in enumerate(arms)}
    return f"arm IN ({', '.join(':' + n for n in names)})", names


def member_metrics(experiment: Experiment, events: EventLog | str | Path | None = None, *,
                   since: float | None = None, until: float | None = None, arms: list[str] | None = None,
                   feedback_until: float | None = None, cache: Path | None = None) -> pd.DataFrame:
    """Per member and arm, the experiment's exposures in ``[since, until)`` and the feedback to them.

    Parameters
    ----------
    experiment
        Whose endpoint, model and arms select the exposures.
    events
        The event log (an :class:`~matinee.core.events.EventLog` or its file); default the home's.
    since, until
        The window; default the experiment's (until now while it runs).
    feedback_until
        Feedback counts up to this time: default ``until`` when it is given, else now
        (feedback to the last exposures may come after a stop).
    arms
        Arms to read; default the experiment's aliases (any arm: pass ``[]``).
    cache
        A folder keeping the per-member sums and how far the log was read, so that the
        next call reads only what was appended since (the window and the feedback are
        then open-ended: use it for "as of now" reads).

    Returns
    -------
    pandas.DataFrame
        ``unit_id``, ``arm``, ``impressions``, ``plays`` (play events), ``reward``, ``played``
        (1 if the member played at all), one row per member and arm.
    """
    since = experiment.started_at if since is None else since
    if feedback_until is None:
        feedback_until = time.time() if until is None else until
    until = (experiment.stopped_at or time.time()) if until is None else until
    path = _log_path(events)
    arms = experiment.aliases if arms is None else arms
    where = "d.endpoint = :endpoint AND d.model = :model AND d.ts >= :since AND d.ts < :until"
    params: dict[str, Any] = {"endpoint": experiment.endpoint, "model": experiment.model,
                              "since": float(since or 0.0), "until": float(until),
                              "feedback_until": float(feedback_until)}
    if arms:
        clause, names = _arm_filter(arms)
        where += " AND d." + clause
        params.update(names)
    if cache is None:
        shown, fed, _ = scan(path, where, params, arms=arms)
    else:
        shown, fed = cached_scan(cache, path, where, params, arms)
    return members_frame(shown, fed)


def pre_period_metrics(experiment: Experiment, events: EventLog | str | Path | None = None, *,
                       days: float = 14.0) -> pd.DataFrame:
    """Per member, the same values over the ``days`` before the experiment started (any arm):
    the CUPED covariates, which the treatment cannot have moved."""
    if experiment.started_at is None:
        raise ConflictError(f"experiment {experiment.name!r} has not started", experiment=experiment.name)
    frame = member_metrics(experiment, events, since=experiment.started_at - days * DAY,
                           until=experiment.started_at, arms=[])
    if frame.empty:
        return frame
    return frame.groupby("unit_id", as_index=False)[list(VALUES)].sum()


# -- the analysis ------------------------------------------------------------------------------
def analyze(experiment: Experiment | str, events: EventLog | str | Path | None = None, *,
            sequential: bool = False, cuped: bool = True, pre_period_days: float = 14.0,
            until: float | None = None, alpha: float | None = None, cache: bool = True) -> Analysis:
    """Analyse an experiment from the event log.

    Parameters
    ----------
    experiment
        The experiment or its name.
    events
        The event log or its file; default the home's.
    sequential
        Always-valid p-values and confidence sequences (valid however often one
        looks), instead of fixed-horizon intervals (valid at one pre-planned look).
    cuped
        Adjust per-member metrics with each member's pre-period value (CUPED) when
        the log has a pre-period; ratio metrics are not adjusted.
    pre_period_days
        Length of the pre-period read for CUPED.
    until
        Analyse as of this time (default: the end of the window, or now).
    alpha
        Significance level; default the experiment's.
    cache
        Keep the per-member sums under ``MATINEE_HOME/experiments/NAME/exposures`` so the
        next analysis reads only the decisions and feedback appended since (not used
        with ``until``). Looking often, as sequential testing allows, then stays cheap.

    Returns
    -------
    Analysis

    Raises
    ------
    ConflictError
        The experiment has not started.
    NotFoundError
        No such experiment, or no exposure yet.
    """
    if isinstance(experiment, str):
        from matinee.core.experiments.store import get_experiment

        experiment = get_experiment(experiment)
    if experiment.started_at is None:
        raise ConflictError(f"experiment {experiment.name!r} has not started: nothing to analyze (start it with "
                            f"`matinee experiments start {experiment.name}`)", experiment=experiment.name)
    end = (experiment.stopped_at or time.time()) if until is None else until
    if experiment.kind == "interleaving":
        return _analyze_interleaving(experiment, events, float(end), alpha,
                                     time.time() if until is None else float(until))
    if until is None and cache:
        from matinee.config import load_settings

        folder = Path(load_settings().home) / "experiments" / experiment.name / "exposures"
        members = member_metrics(experiment, events, until=experiment.stopped_at or math.inf,
                                 feedback_until=math.inf, cache=folder)
    else:
        members = member_metrics(experiment, events, until=end, feedback_until=time.time() if until is None
                                 else until)
    if members.empty:
        raise NotFoundError(
            f"experiment {experiment.name!r} has no exposures yet: no {experiment.endpoint} decisions of "
            f"{experiment.model}@{'/'.join(experiment.aliases)} since it started", experiment=experiment.name)
    covariates = pre_period_metrics(experiment, events, days=pre_period_days) if cuped else None
    return analyze_members(experiment, members, covariates, sequential=sequential, alpha=alpha,
                           since=float(experiment.started_at), until=float(end))


def analyze_members(experiment: Experiment, members: pd.DataFrame, covariates: pd.DataFrame | None = None, *,
                    sequential: bool = False, alpha: float | None = None, since: float = math.nan,
                    until: float = math.nan) -> Analysis:
    """The analysis of per-member values (what :func:`member_metrics` returns), without reading the log.

    Raises
    ------
    ParameterError
        Missing columns, or an arm with fewer than two members.
    NotFoundError
        No member at all.
    """
    from matinee.core.experiments import stats

    missing = {"unit_id", "arm", "impressions", "plays", "reward"} - set(members.columns)
    if missing:
        raise ParameterError(f"members lacks column(s) {', '.join(sorted(missing))}", parameter="members")
    if members.empty:
        raise NotFoundError(f"experiment {experiment.name!r} has no exposures yet", experiment=experiment.name)
    alpha = experiment.alpha if alpha is None else float(alpha)
    warnings: list[str] = []
    members = members[members["arm"].isin(experiment.aliases)]
    if "played" not in members:
        members = members.assign(played=(members["plays"] > 0).astype(np.float64))
    members = members.groupby(["unit_id", "arm"], as_index=False, sort=False).sum() \
        if members.duplicated(["unit_id", "arm"]).any() else members
    in_several = members["unit_id"].duplicated(keep=False).to_numpy()  # one row per member and arm
    crossed = members.loc[in_several, "unit_id"].nunique() if in_several.any() else 0
    if crossed:
        warnings.append(f"{crossed} members were exposed to more than one arm and are left out: the split or the "
                        "salt changed during the experiment")
        members = members[~in_several]
    checked, mismatched = _check_assignment(experiment, members)
    if mismatched:
        warnings.append(f"{mismatched} of {checked} sampled members were served an arm serving's hash does not give "
                        f"them: the server's split or salt differs from the experiment's (salt {experiment.salt!r}, "
                        f"split {experiment.split})")
    by_arm = {arm: members[members["arm"] == arm] for arm in experiment.aliases}
    counts = {arm: int(len(frame)) for arm, frame in by_arm.items()}
    srm = stats.srm(counts, experiment.weights) if sum(counts.values()) else None
    if srm is not None and srm.flagged:
        warnings.insert(0, f"SAMPLE RATIO MISMATCH: members per arm {srm.observed} against expected "
                           f"{ {k: round(v) for k, v in srm.expected.items()} } (p = {srm.p_value:.2g}); "
                           "assignment or exposure logging is broken: do not trust these effects")
    for arm, n in counts.items():
        if n < 2:
            raise ParameterError(f"arm {arm!r} has {n} exposed member(s); an analysis needs at least two per arm",
                                 parameter="arms")
    cov = None
    if covariates is not None and not covariates.empty:
        cov = covariates.set_index("unit_id")
    treatments = experiment.aliases[1:]
    m = len(treatments)
    alpha_each = alpha / m
    metrics = [(experiment.primary_metric, "primary"), *((g, "guardrail") for g in experiment.guardrails
                                                         if g != experiment.primary_metric)]
    effects: list[dict[str, Any]] = []
    used_cuped = False
    for metric_name, role in metrics:
        metric = METRICS[metric_name]
        rows = []
        for arm in treatments:
            effect, adjusted = _effect(metric, by_arm[experiment.control], by_arm[arm], cov, alpha_each, sequential,
                                       names=(experiment.control, arm))
            used_cuped |= adjusted
            rows.append({**effect.as_dict(), "role": role})
        adjusted_p = stats.holm([r["p_value"] for r in rows]) if m > 1 else [r["p_value"] for r in rows]
        for effect_row, p in zip(rows, adjusted_p, strict=True):
            effect_row["p_adjusted"] = p
            effect_row["significant"] = bool(p < alpha)
        effects.extend(rows)
    arms_rows = []
    for arm in experiment.aliases:
        frame = by_arm[arm]
        row: dict[str, Any] = {"arm": arm, "weight": experiment.weights[arm], "units": counts[arm]}
        for name in ("impressions", "plays", "reward"):
            row[name] = float(frame[name].sum())
        for metric_name, _ in metrics:
            metric = METRICS[metric_name]
            num = frame[metric.numerator].sum()
            row[metric_name] = float(num / frame[metric.denominator].sum()) if metric.denominator else \
                float(num / max(len(frame), 1))
        arms_rows.append(row)
    correction = "none (one treatment arm)" if m == 1 else \
        f"Holm-adjusted p-values over {m} treatment arms; intervals at Bonferroni alpha/{m} = {alpha_each:.4g}"
    return Analysis(experiment, since, until, arms_rows, effects, srm=srm, crossovers=int(crossed),
                    assignment_mismatches=mismatched, assignment_checked=checked,
                    method="sequential" if sequential else "fixed", cuped=used_cuped, correction=correction,
                    warnings=warnings)


def _effect(metric: Any, control: pd.DataFrame, treatment: pd.DataFrame, cov: pd.DataFrame | None, alpha: float,
            sequential: bool, names: tuple[str, str]) -> tuple[Any, bool]:
    from matinee.core.experiments import stats

    kw = {"metric": metric.name, "names": names}
    if metric.kind == "ratio":
        args = (control[metric.numerator], control[metric.denominator], treatment[metric.numerator],
                treatment[metric.denominator])
        return (stats.sequential_ratio(*args, alpha, **kw) if sequential else stats.ratio_effect(*args, alpha, **kw)), \
            False
    yc = control[metric.numerator].to_numpy(np.float64)
    yt = treatment[metric.numerator].to_numpy(np.float64)
    if cov is not None:
        xc = cov[metric.numerator].reindex(control["unit_id"]).fillna(0.0).to_numpy(np.float64)
        xt = cov[metric.numerator].reindex(treatment["unit_id"]).fillna(0.0).to_numpy(np.float64)
        if np.concatenate([xc, xt]).var() > 0:
            if not sequential:
                return stats.welch_cuped(yc, xc, yt, xt, alpha, **kw), True
            _, theta = stats.cuped(np.concatenate([yc, yt]), np.concatenate([xc, xt]))
            centre = float(np.concatenate([xc, xt]).mean())
            yc, _ = stats.cuped(yc, xc, theta, centre)
            yt, _ = stats.cuped(yt, xt, theta, centre)
            return stats.sequential(yc, yt, alpha, **kw), True
    return (stats.sequential(yc, yt, alpha, **kw) if sequential else stats.welch(yc, yt, alpha, **kw)), False


def _check_assignment(experiment: Experiment, members: pd.DataFrame) -> tuple[int, int]:
    """Re-assign a sample of members with serving's hash; count those logged in another arm."""
    if members.empty:
        return 0, 0
    sample = members if len(members) <= ASSIGNMENT_SAMPLE else members.sample(ASSIGNMENT_SAMPLE, random_state=0)
    expected = [experiment.assign(u) for u in sample["unit_id"]]
    return len(sample), int((sample["arm"].to_numpy() != np.asarray(expected, dtype=object)).sum())


# -- interleaving ---------------------------------------------------------------------------------
def _analyze_interleaving(experiment: Experiment, events: EventLog | str | Path | None, until: float,
                          alpha: float | None, feedback_until: float) -> Analysis:
    from matinee.core.experiments.interleaving import preference

    assert experiment.started_at is not None
    path = _log_path(events)
    params = {"endpoint": experiment.endpoint, "model": experiment.model, "arm": experiment.interleaved_arm,
              "since": float(experiment.started_at), "until": until, "feedback_until": feedback_until}
    where = "d.endpoint = :endpoint AND d.model = :model AND d.arm = :arm AND d.ts >= :since AND d.ts < :until"
    shown = _read(path, f"SELECT d.decision_id, d.unit_id, d.context, d.candidates FROM decisions d WHERE {where} "
                        "ORDER BY d.ts", params)
    if shown.empty:
        raise NotFoundError(
            f"experiment {experiment.name!r} has no exposures yet: no interleaved {experiment.endpoint} decisions "
            f"of {experiment.model} (arm {experiment.interleaved_arm!r}) since it started", experiment=experiment.name)
    plays = _read(path, f"SELECT f.decision_id, f.event FROM feedback f JOIN decisions d ON d.decision_id = "
                        f"f.decision_id WHERE {where} AND f.ts < :feedback_until AND {PLAY}", params)
    played: dict[str, set[str]] = {}
    unattributed = 0
    for decision_id, event in zip(plays.get("decision_id", []), plays.get("event", []), strict=True):
        item = event[5:] if event.startswith("play:") else None
        if item is None:
            unattributed += 1
            continue
        played.setdefault(decision_id, set()).add(item)
    wins_a = np.zeros(len(shown))
    wins_b = np.zeros(len(shown))
    for i, (decision_id, context, candidates) in enumerate(zip(shown["decision_id"], shown["context"],
                                                              shown["candidates"], strict=True)):
        got = played.get(decision_id)
        if not got:
            continue
        teams = json.loads(context)
        for item, team in zip(json.loads(candidates), teams, strict=False):
            if str(item) in got:
                if team:
                    wins_b[i] += 1
                else:
                    wins_a[i] += 1
    warnings = []
    # The coin of team draft: team b picks first in half of the impressions. Far from half, the
    # lists were not drawn as logged (or teams were logged the wrong way round): say so first.
    firsts = [json.loads(context)[:1] for context in shown["context"]]
    b_first = sum(1 for first in firsts if first and first[0])
    drawn = sum(1 for first in firsts if first)
    if drawn:
        from scipy import stats as sps

        p_first = float(sps.binomtest(b_first, drawn, 0.5).pvalue)
        if p_first < 0.001:
            warnings.append(f"TEAM DRAFT MISMATCH: team b picked first in {b_first} of {drawn} impressions "
                            f"(p = {p_first:.2g} against one half): the interleaving is not the logged one; "
                            "do not trust the preference")
    if unattributed:
        warnings.append(f"{unattributed} play events name no item (event 'play' instead of 'play:ITEM') and "
                        "cannot be credited to a ranker")
    a, b = experiment.aliases
    pref = preference(wins_a, wins_b, units=shown["unit_id"].to_numpy(), alpha=experiment.alpha if alpha is None
                      else alpha)
    units = int(shown["unit_id"].nunique())
    arms_rows = [{"arm": f"{a} (team a)", "weight": 0.5, "units": units, "impressions": float(len(shown)),
                  "plays": float(wins_a.sum()), "reward": float("nan")},
                 {"arm": f"{b} (team b)", "weight": 0.5, "units": units, "impressions": float(len(shown)),
                  "plays": float(wins_b.sum()), "reward": float("nan")}]
    effect = {"metric": "preference", "control": a, "treatment": b, "n_control": units, "n_treatment": units,
              "mean_control": 1 - pref.share_b, "mean_treatment": pref.share_b, "diff": pref.share_b - 0.5,
              "diff_low": pref.low - 0.5, "diff_high": pref.high - 0.5, "relative": math.nan,
              "relative_low": math.nan, "relative_high": math.nan, "p_value": pref.p_value, "alpha": pref.alpha,
              "method": f"interleaving ({pref.method})", "significant": pref.significant, "role": "primary",
              "p_adjusted": pref.p_value}
    return Analysis(experiment, float(experiment.started_at), until, arms_rows, [effect], preference=pref,
                    method="interleaving", correction="none (two rankers)", warnings=warnings)
