"""An experiment's analysis as one self-contained HTML page, with interval plots.

plotly's JavaScript is inlined, so the page opens offline. A failed sample-ratio
check is shown first, in red, above everything else.
"""

from __future__ import annotations

import html
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from matinee.core.experiments.analysis import Analysis

__all__ = ["report_html", "write_report"]

_STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}"
          "table{border-collapse:collapse;margin:1em 0}"
          "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}"
          "th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}"
          ".alarm{background:#b00020;color:#fff;padding:1em;font-weight:bold;font-size:1.1em}"
          ".warn{background:#fff4ce;padding:.6em;border-left:4px solid #c90}"
          ".sig{font-weight:bold}")


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.{digits}g}"
    return html.escape(str(value))


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _when(ts: float) -> str:
    if ts is None or not math.isfinite(ts):
        return "?"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _figure(analysis: Analysis) -> Any:
    """One row of interval plots per metric: each treatment arm's difference against control, with its interval."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    metrics = list(dict.fromkeys(e["metric"] for e in analysis.effects))
    figure = make_subplots(rows=len(metrics), cols=1, subplot_titles=[
        f"{m} ({next(e['role'] for e in analysis.effects if e['metric'] == m)}): treatment - control" for m in metrics])
    for row, metric in enumerate(metrics, start=1):
        effects = [e for e in analysis.effects if e["metric"] == metric]
        labels = [f"{e['treatment']} vs {e['control']}" for e in effects]
        figure.add_trace(go.Scatter(
            x=[e["diff"] for e in effects], y=labels, mode="markers", name=metric, showlegend=False,
            marker={"size": 11, "color": ["#b00020" if e["significant"] else "#333" for e in effects]},
            error_x={"type": "data", "symmetric": False,
                     "array": [e["diff_high"] - e["diff"] for e in effects],
                     "arrayminus": [e["diff"] - e["diff_low"] for e in effects]},
            hovertext=[f"diff {e['diff']:.4g} [{e['diff_low']:.4g}, {e['diff_high']:.4g}], p={e['p_value']:.3g}"
                       for e in effects]), row=row, col=1)
        figure.add_vline(x=0, line_dash="dash", line_color="#888", row=row, col=1)
    figure.update_layout(height=160 + 140 * len(metrics), template="plotly_white", margin={"l": 180})
    return figure


def report_html(analysis: Analysis) -> str:
    """The analysis as a complete HTML document (plotly inlined: no network needed).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from matinee.core.experiments import Experiment, analyze_members
    >>> e = Experiment.build("demo", ["ranker@champion", "ranker@challenger"], started_at=0.0)
    >>> rng = np.random.default_rng(0)
    >>> members = pd.DataFrame({"unit_id": [str(i) for i in range(400)],
    ...                         "arm": [e.assign(i) for i in range(400)],
    ...                         "impressions": rng.integers(1, 9, 400), "plays": rng.integers(0, 2, 400),
    ...                         "reward": rng.random(400)})
    >>> page = report_html(analyze_members(e, members))
    >>> page.startswith("<!DOCTYPE html>") and '<script src="http' not in page
    True
    """
    e = analysis.experiment
    parts = [f"<h1>Experiment {html.escape(e.name)}</h1>"]
    for line in analysis.warnings:  # a broken split or draft first, as an alarm
        kind = "alarm" if "MISMATCH:" in line else "warn"
        parts.append(f"<div class='{kind}'>{html.escape(line)}</div>" if kind == "alarm"
                     else f"<p class='warn'>{html.escape(line)}</p>")
    parts.append(
        f"<p>{html.escape(e.kind)} test of <b>{html.escape(e.model)}</b> on <b>{html.escape(e.endpoint)}</b>: "
        f"arms {html.escape(', '.join(f'{a.alias} ({a.weight:g})' for a in e.arms))}, control "
        f"<b>{html.escape(e.control)}</b>; salt {html.escape(repr(e.salt))}; owner {html.escape(e.owner)}; "
        f"status {html.escape(e.status)}.</p>"
        f"<p>Window {_when(analysis.since)} to {_when(analysis.until)}. Primary metric "
        f"<b>{html.escape(e.primary_metric)}</b>; guardrails {html.escape(', '.join(e.guardrails) or 'none')}. "
        f"Method: {html.escape(analysis.method)}{' with CUPED' if analysis.cuped else ''}; alpha {e.alpha:g}; "
        f"multiple arms: {html.escape(analysis.correction)}.</p>")
    if e.description:
        parts.append(f"<p><i>{html.escape(e.description)}</i></p>")
    if analysis.preference is not None:
        p = analysis.preference
        parts.append(f"<h2>Interleaving preference</h2><p>Share of wins for <b>{html.escape(e.aliases[1])}</b> "
                     f"(team b): {p.share_b:.4f} [{p.low:.4f}, {p.high:.4f}], p = {p.p_value:.3g} over "
                     f"{p.impressions} impressions ({p.units or '?'} members, {p.method}).</p>")
    parts.append(_figure(analysis).to_html(include_plotlyjs=True, full_html=False))
    parts.append("<h2>Arms</h2>" + _table(analysis.arms, list(analysis.arms[0]) if analysis.arms else []))
    parts.append("<h2>Effects</h2>" + _table(analysis.effects, [
        "metric", "role", "treatment", "control", "n_treatment", "n_control", "mean_control", "mean_treatment",
        "diff", "diff_low", "diff_high", "relative", "relative_low", "relative_high", "p_value", "p_adjusted",
        "method", "significant"]))
    if analysis.srm is not None:
        s = analysis.srm
        parts.append(f"<h2>Sample ratio</h2><p>observed {html.escape(str(s.observed))}, expected "
                     f"{html.escape(str({k: round(v, 1) for k, v in s.expected.items()}))}, chi2 {s.chi2:.3g}, "
                     f"p = {s.p_value:.3g} (flagged below {s.threshold:g}): "
                     f"<b>{'MISMATCH' if s.flagged else 'ok'}</b>. Assignment re-checked on "
                     f"{analysis.assignment_checked} members: {analysis.assignment_mismatches} mismatched; "
                     f"{analysis.crossovers} members seen in several arms left out.</p>")
    title = f"Experiment {e.name}"
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def write_report(analysis: Analysis, path: str | Path) -> Path:
    """Write :func:`report_html` to ``path`` atomically (folders are created); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(out.name + ".tmp")
    temp.write_text(report_html(analysis), encoding="utf-8")
    temp.replace(out)
    return out
