"""What the dashboard reads from the event log: recent events, and reward over time per policy.

Read-only SQL on the log's SQLite file (the schema of
:mod:`matinee.core.events`), so a page reads one page of rows or one grouped
summary, never the whole log into memory.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matinee.errors import ParameterError, StorageError

if TYPE_CHECKING:
    from matinee.core.store import Store

__all__ = ["EVENT_FILTERS", "bandit_summary", "log_path", "recent_events", "reward_summary"]

#: Filters of the events page: query parameter -> column.
EVENT_FILTERS = {"endpoint": "d.endpoint", "model": "d.model", "arm": "d.arm", "unit": "d.unit_id",
                 "decision": "d.decision_id"}
#: Time buckets of the reward chart.
BUCKETS = 30


def log_path(home: Path) -> Path:
    """The home's event log file (what :class:`~matinee.core.events.EventLog` writes by default)."""
    return Path(home) / "events" / "events.db"


def _rows(path: Path, sql: str, args: list[Any]) -> list[dict[str, Any]] | None:
    """Rows of ``sql`` as dicts; None when the log does not exist (or has no tables yet)."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open the event log {path}: {exc}", path=str(path)) from exc
    try:
        cursor = conn.execute(sql, args)
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    except sqlite3.Error as exc:
        if "no such table" in str(exc):
            return None
        raise StorageError(f"cannot read the event log {path}: {exc}", path=str(path)) from exc
    finally:
        conn.close()


def recent_events(path: Path, kind: str, filters: dict[str, str], limit: int) -> list[dict[str, Any]] | None:
    """The newest ``limit`` decisions (``kind="decision"``) or feedback events, filtered; None without a log.

    Feedback rows carry their decision's endpoint, model, arm and unit, so the
    same filters apply to both.
    """
    if kind not in ("decision", "feedback"):
        raise ParameterError(f"kind must be decision or feedback, not {kind!r}", parameter="kind")
    where, args = [], []
    for name, value in filters.items():
        if name not in EVENT_FILTERS:
            raise ParameterError(f"unknown filter {name!r}: use {', '.join(EVENT_FILTERS)}", parameter=name)
        where.append(f"{EVENT_FILTERS[name]} = ?")
        args.append(value)
    condition = (" WHERE " + " AND ".join(where)) if where else ""
    if kind == "decision":
        sql = ("SELECT d.decision_id, d.ts, d.unit_id, d.endpoint, d.model, d.model_version, d.arm, d.context,"
               f" d.candidates, d.action, d.propensity FROM decisions d{condition} ORDER BY d.ts DESC LIMIT ?")
    else:
        sql = ("SELECT f.decision_id, f.ts, f.event, f.reward, d.unit_id, d.endpoint, d.model, d.arm FROM feedback f"
               f" LEFT JOIN decisions d ON d.decision_id = f.decision_id{condition} ORDER BY f.ts DESC LIMIT ?")
    rows = _rows(path, sql, [*args, int(limit)])
    if rows is None:
        return None
    for row in rows:
        for name in ("context", "candidates", "action"):
            if name in row and isinstance(row[name], str):
                row[name] = _short_json(row[name])
    return rows


def _short_json(text: str, n: int = 160) -> str:
    with contextlib.suppress(ValueError):  # not JSON: shown as it is
        text = json.dumps(json.loads(text), separators=(",", ":"))
    return text if len(text) <= n else text[: n - 1] + "…"


def reward_summary(path: Path, since: float | None = None, endpoint: str | None = None) -> dict[str, Any] | None:
    """Reward per policy (model and arm) over time, from decisions joined with their feedback.

    Returns
    -------
    dict or None
        None without a log or without decisions; else ``policies`` (per policy:
        ``model``, ``arm``, ``endpoint``, ``decisions``, ``reward`` (mean), ``low``/``high``
        (95% interval: Wilson for 0/1 rewards, normal otherwise), ``versions``)
        and ``series`` (per policy: bucket end times, mean reward per bucket and
        cumulative mean).
    """
    clauses: list[str] = []
    args: list[Any] = []
    if since is not None:
        clauses.append("d.ts >= ?")
        args.append(float(since))
    if endpoint:
        clauses.append("d.endpoint = ?")
        args.append(endpoint)
    window = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    span = _rows(path, f"SELECT MIN(d.ts) AS first, MAX(d.ts) AS last, COUNT(*) AS n FROM decisions d{window}", args)
    if not span or not span[0]["n"]:
        return None
    first, last = float(span[0]["first"]), float(span[0]["last"])
    width = max(last - first, 1e-6) / BUCKETS
    rows = _rows(
        path,
        "SELECT d.endpoint AS endpoint, d.model AS model, COALESCE(d.arm, '') AS arm,"
        " MIN(CAST((d.ts - ?) / ? AS INTEGER), ?) AS bucket, COUNT(*) AS n, SUM(COALESCE(f.reward, 0)) AS total,"
        " SUM(COALESCE(f.reward, 0) * COALESCE(f.reward, 0)) AS squares,"
        " MIN(COALESCE(f.reward, 0)) AS lowest, MAX(COALESCE(f.reward, 0)) AS highest,"
        " GROUP_CONCAT(DISTINCT d.model_version) AS versions"
        " FROM decisions d LEFT JOIN (SELECT decision_id, SUM(reward) AS reward FROM feedback GROUP BY decision_id) f"
        f" ON f.decision_id = d.decision_id{window} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
        [first, width, BUCKETS - 1, *args],
    ) or []
    policies: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["endpoint"], row["model"], row["arm"])
        policy = policies.setdefault(key, {"endpoint": key[0], "model": key[1], "arm": key[2], "decisions": 0,
                                           "total": 0.0, "squares": 0.0, "binary": True, "versions": set(),
                                           "t": [], "bucket_mean": [], "cumulative": []})
        policy["decisions"] += int(row["n"])
        policy["total"] += float(row["total"])
        policy["squares"] += float(row["squares"])
        policy["binary"] = policy["binary"] and row["lowest"] >= 0 and row["highest"] <= 1
        policy["versions"].update(v for v in str(row["versions"] or "").split(",") if v)
        policy["t"].append(first + (int(row["bucket"]) + 1) * width)
        policy["bucket_mean"].append(float(row["total"]) / int(row["n"]))
        policy["cumulative"].append(policy["total"] / policy["decisions"])
    out = []
    for policy in policies.values():
        n, mean = policy["decisions"], policy["total"] / policy["decisions"]
        if policy["binary"]:
            low, high = wilson(policy["total"], n)
        else:
            var = max(policy["squares"] / n - mean * mean, 0.0) * n / max(n - 1, 1)
            half = 1.959964 * math.sqrt(var / n)
            low, high = mean - half, mean + half
        versions = sorted(policy.pop("versions"), key=lambda v: (len(v), v))
        out.append({**{k: v for k, v in policy.items() if k not in ("total", "squares", "binary")},
                    "reward": mean, "low": low, "high": high, "versions": versions,
                    "name": f"{policy['model']}@{policy['arm']}" if policy["arm"] else policy["model"]})
    return {"first": first, "last": last, "decisions": int(span[0]["n"]), "policies": out}


def wilson(plays: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval of ``plays`` successes out of ``n``.

    Examples
    --------
    >>> low, high = wilson(50, 100)
    >>> round(low, 3), round(high, 3)
    (0.404, 0.596)
    """
    p = plays / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def ope_estimates(latest: dict[str, float]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Off-policy estimates a training run logged as metrics ``POLICY/ope/ESTIMATOR`` (+ ``_low``, ``_high``).

    Returns ``{policy: {estimator: {"value", "low", "high"}}}`` (the run's ``best`` summary left out).

    Examples
    --------
    >>> ope_estimates({"LinUCB/ope/dr": 0.4, "LinUCB/ope/dr_low": 0.3, "LinUCB/ope/dr_high": 0.5,
    ...                "best/ope/dr": 0.4, "loss": 1.0})
    {'LinUCB': {'dr': {'value': 0.4, 'low': 0.3, 'high': 0.5}}}
    """
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for name, value in latest.items():
        policy, sep, estimator = name.rpartition("/ope/")
        if not sep or not policy or policy == "best" or estimator.endswith(("_low", "_high")):
            continue
        out.setdefault(policy, {})[estimator] = {"value": value, "low": latest.get(f"{name}_low"),
                                                 "high": latest.get(f"{name}_high")}
    return out


def bandit_summary(store: Store, since: float | None = None, endpoint: str | None = None) -> dict[str, Any] | None:
    """Reward per policy over time from the event log, each served version's off-policy estimate,
    and every estimator's value and interval from the runs that trained them (None: no log yet)."""
    summary = reward_summary(log_path(store.settings.home), since, endpoint)
    if summary is None:
        return None
    training_runs: set[int] = set()
    for policy in summary["policies"]:
        policy["estimate"] = None
        for version in policy["versions"]:
            row = store.metadata.model_version(policy["model"], int(version)) if version.isdigit() else None
            if row is None:
                continue
            if row["run_id"] is not None:
                training_runs.add(int(row["run_id"]))
            metrics = json.loads(row["metrics"] or "{}")
            if "dr" in metrics and policy["estimate"] is None:
                policy["estimate"] = {"version": int(version), "value": metrics["dr"],
                                      "low": metrics.get("dr_low"), "high": metrics.get("dr_high")}
    summary["ope"] = []
    latest = store.metadata.latest_metrics(sorted(training_runs))
    for run_id in sorted(training_runs):
        estimates = ope_estimates(latest.get(run_id, {}))
        run = store.metadata.get_run(run_id)
        if estimates and run is not None:
            estimators = sorted({e for by in estimates.values() for e in by}, key=lambda e: (e != "dr", e))
            rows = sorted(estimates.items(), key=lambda kv: -_best_first(kv[1].get("dr", {}).get("value")))
            summary["ope"].append({"run_id": run_id, "run": f"{run['flow_name']}/{run_id}",
                                   "estimators": estimators, "policies": [{"policy": p, "estimates": e}
                                                                          for p, e in rows]})
    return summary


def _best_first(value: Any) -> float:
    """A value to sort by, best first: a missing or NaN estimate goes last."""
    return value if isinstance(value, (int, float)) and value == value else -math.inf
