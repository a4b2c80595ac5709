"""A report of an artwork A/B test served online: take rate per arm over time, and offline estimates against it.

One self-contained HTML page in the style of :mod:`matinee.apps.artwork.report`
(plotly with its JavaScript inlined, so it opens without a network connection):

* the take rate of each arm over time, per time bin and cumulative, with the
  moments an arm's model version changed (online snapshots) marked;
* each arm's off-policy estimate from the training flow (DR with its interval)
  next to the take rate observed online (with a Wilson interval) and, when the
  traffic is simulated, the expected take rate of the variants shown;
* the same as lifts over a uniformly random choice (the logs' mean reward
  offline, the uniform choice's expected take rate on the same impressions
  online), which compares the two even when the online traffic shows other
  titles than the logs;
* tables of both.

Inputs are plain tables: ``timeline`` has one row per decision (``arm``, ``ts``,
``reward`` and optionally ``model_version``; :meth:`matinee.EventLog.joined`
gives it), ``arms`` one row per arm (``arm``, ``policy``, ``estimate``,
``estimate_low``, ``estimate_high``, ``take_rate``, ``low``, ``high`` and
optionally ``expected``, ``estimate_lift``, ``observed_lift``).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matinee.apps.artwork.report import _PALETTE, _STYLE, _table
from matinee.errors import ParameterError

__all__ = ["ARM_COLUMNS", "TIMELINE_COLUMNS", "live_figure", "live_report_html", "take_rate_timeline", "write_live_report"]

#: Columns ``timeline`` must have (``model_version`` is optional).
TIMELINE_COLUMNS = ("arm", "ts", "reward")
#: Columns ``arms`` must have (``expected``, ``estimate_lift`` and ``observed_lift`` are optional).
ARM_COLUMNS = ("arm", "policy", "estimate", "estimate_low", "estimate_high", "take_rate", "low", "high")


def take_rate_timeline(timeline: pd.DataFrame, bins: int = 20) -> pd.DataFrame:
    """Take rate per arm and time bin, and cumulative, from one row per decision.

    Parameters
    ----------
    timeline
        One row per decision: ``arm``, ``ts`` (seconds) and ``reward``.
    bins
        Number of equal time bins over the whole span.

    Returns
    -------
    pandas.DataFrame
        One row per arm and non-empty bin: ``arm``, ``seconds`` (bin end, from
        the first decision), ``decisions``, ``take_rate`` (in the bin) and
        ``cumulative`` (take rate of the arm up to the bin's end).

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"arm": ["a", "a", "b", "b"], "ts": [0.0, 1.0, 0.0, 1.0], "reward": [1.0, 0.0, 0.0, 0.0]})
    >>> take_rate_timeline(t, bins=2)[["arm", "decisions", "take_rate", "cumulative"]].values.tolist()
    [['a', 1, 1.0, 1.0], ['a', 1, 0.0, 0.5], ['b', 1, 0.0, 0.0], ['b', 1, 0.0, 0.0]]
    """
    start, end = float(timeline["ts"].min()), float(timeline["ts"].max())
    width = max(end - start, 1e-9) / bins
    index = np.minimum(((timeline["ts"].to_numpy(float) - start) / width).astype(np.int64), bins - 1)
    frame = timeline.assign(bin=index, reward=timeline["reward"].astype(float))
    grouped = frame.groupby(["arm", "bin"], sort=True)["reward"].agg(["size", "sum"]).reset_index()
    out = []
    for arm, part in grouped.groupby("arm", sort=True):
        cumulative = part["sum"].cumsum() / part["size"].cumsum()
        out.append(pd.DataFrame({"arm": str(arm), "seconds": (part["bin"].to_numpy() + 1) * width,
                                 "decisions": part["size"].to_numpy(), "take_rate": (part["sum"] / part["size"]).to_numpy(),
                                 "cumulative": cumulative.to_numpy()}))
    return pd.concat(out, ignore_index=True)


def live_figure(timeline: pd.DataFrame, arms: pd.DataFrame, *, bins: int = 20, title: str = "") -> Any:
    """The report's charts as one plotly figure.

    Parameters
    ----------
    timeline, arms
        See the module docstring.
    bins
        Time bins of the take-rate chart.
    title
        The figure's title.

    Returns
    -------
    plotly.graph_objects.Figure

    Raises
    ------
    ParameterError
        A table that is not a DataFrame, is empty, or misses a column.

    Examples
    --------
    >>> import pandas as pd
    >>> timeline = pd.DataFrame({"arm": ["champion", "challenger"] * 2, "ts": [0.0, 0.0, 1.0, 1.0],
    ...                          "reward": [1.0, 0.0, 1.0, 1.0]})
    >>> arms = pd.DataFrame({"arm": ["champion", "challenger"], "policy": ["LinUCB", "LinearTS"],
    ...                      "estimate": [0.48, 0.47], "estimate_low": [0.45, 0.44], "estimate_high": [0.51, 0.5],
    ...                      "take_rate": [1.0, 0.5], "low": [0.34, 0.09], "high": [1.0, 0.91]})
    >>> figure = live_figure(timeline, arms)
    >>> sorted({trace.name for trace in figure.data})
    ['DR estimate (offline)', 'challenger', 'champion', 'observed online']
    """
    _check(timeline, TIMELINE_COLUMNS, "timeline")
    _check(arms, ARM_COLUMNS, "arms")
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    lifts = {"estimate_lift", "observed_lift"} <= set(arms.columns)
    panels = ["Take rate per arm over time (markers: per time bin; line: cumulative; dotted: a new version)",
              "Off-policy estimate before serving vs take rate observed online"]
    if lifts:
        panels.append("Lift over a uniformly random choice: offline estimate vs online")
    rows = len(panels)
    figure = make_subplots(rows=rows, cols=1, subplot_titles=panels, vertical_spacing=0.3 / rows)
    arm_palette = _PALETTE[2:]  # the first two colours mark the estimate and the observation
    colours = {str(arm): arm_palette[i % len(arm_palette)] for i, arm in enumerate(arms["arm"])}
    curve = take_rate_timeline(timeline, bins)
    for arm, part in curve.groupby("arm", sort=False):
        colour = colours.setdefault(str(arm), arm_palette[len(colours) % len(arm_palette)])
        figure.add_trace(go.Scatter(x=part["seconds"], y=part["take_rate"], mode="markers", name=str(arm),
                                    legendgroup=str(arm), marker={"color": colour, "size": 7, "opacity": 0.6},
                                    customdata=part["decisions"],
                                    hovertemplate="%{y:.3f} over %{customdata} decisions"), row=1, col=1)
        figure.add_trace(go.Scatter(x=part["seconds"], y=part["cumulative"], mode="lines", name=str(arm),
                                    legendgroup=str(arm), showlegend=False, line={"color": colour}), row=1, col=1)
    if "model_version" in timeline.columns:
        start = float(timeline["ts"].min())
        for arm, part in timeline.sort_values("ts").groupby("arm", sort=False):
            versions = part["model_version"].astype("int64")
            changed = part[versions.ne(versions.shift())].iloc[1:]
            for row in changed.itertuples():
                figure.add_vline(x=float(row.ts) - start, line={"color": colours.get(str(arm), "grey"), "dash": "dot",
                                                                "width": 1}, row=1, col=1)
    figure.update_xaxes(title_text="seconds since the first decision", row=1, col=1)
    figure.update_yaxes(title_text="take rate (plays per impression)", row=1, col=1)
    figure.add_trace(go.Scatter(
        x=arms["arm"], y=arms["estimate"], mode="markers", name="DR estimate (offline)",
        marker={"color": "#4c72b0", "size": 10},
        error_y={"type": "data", "symmetric": False, "array": arms["estimate_high"] - arms["estimate"],
                 "arrayminus": arms["estimate"] - arms["estimate_low"]}), row=2, col=1)
    figure.add_trace(go.Scatter(
        x=arms["arm"], y=arms["take_rate"], mode="markers", name="observed online",
        marker={"color": "#c44e52", "size": 10},
        error_y={"type": "data", "symmetric": False, "array": arms["high"] - arms["take_rate"],
                 "arrayminus": arms["take_rate"] - arms["low"]}), row=2, col=1)
    if "expected" in arms.columns:
        figure.add_trace(go.Scatter(x=arms["arm"], y=arms["expected"], mode="markers",
                                    name="expected online (simulator truth)",
                                    marker={"color": "black", "symbol": "x", "size": 11}), row=2, col=1)
    figure.update_yaxes(title_text="take rate", row=2, col=1)
    if lifts:
        figure.add_trace(go.Bar(x=arms["arm"], y=arms["estimate_lift"], name="offline: DR / logs' mean reward",
                                marker={"color": "#4c72b0"}), row=3, col=1)
        figure.add_trace(go.Bar(x=arms["arm"], y=arms["observed_lift"], name="online: observed / uniform choice",
                                marker={"color": "#c44e52"}), row=3, col=1)
        figure.update_yaxes(title_text="times a uniform choice", row=3, col=1)
    figure.update_layout(title=title or None, height=360 * rows + 80, template="plotly_white",
                         scattermode="group", barmode="group")
    return figure


def live_report_html(timeline: pd.DataFrame, arms: pd.DataFrame, *, title: str = "Artwork online",
                     notes: Sequence[str] = (), tables: Sequence[tuple[str, pd.DataFrame]] = (),
                     bins: int = 20) -> str:
    """The report as one self-contained HTML page (plotly's JavaScript inlined: no network needed).

    Parameters
    ----------
    timeline, arms, bins
        As for :func:`live_figure`.
    title
        The page's heading.
    notes
        Lines of text under the heading.
    tables
        Extra ``(heading, table)`` sections after the charts (e.g. registry versions).

    Returns
    -------
    str
        A complete HTML document.

    Raises
    ------
    ParameterError
        As for :func:`live_figure`.

    Examples
    --------
    >>> import pandas as pd
    >>> timeline = pd.DataFrame({"arm": ["a", "b"], "ts": [0.0, 1.0], "reward": [1.0, 0.0]})
    >>> arms = pd.DataFrame({"arm": ["a", "b"], "policy": ["P", "Q"], "estimate": [0.4, 0.3],
    ...                      "estimate_low": [0.3, 0.2], "estimate_high": [0.5, 0.4], "take_rate": [1.0, 0.0],
    ...                      "low": [0.2, 0.0], "high": [1.0, 0.8]})
    >>> page = live_report_html(timeline, arms, notes=["2 decisions"])
    >>> page.startswith("<!DOCTYPE html>") and '<script src="http' not in page
    True
    """
    chart = live_figure(timeline, arms, bins=bins).to_html(include_plotlyjs=True, full_html=False)
    parts = [f"<h1>{html.escape(title)}</h1>"]
    parts += [f"<p>{html.escape(line)}</p>" for line in notes]
    parts.append(chart)
    parts.append("<h2>Arms</h2>" + _table(_flat(arms)))
    parts += [f"<h2>{html.escape(heading)}</h2>" + _table(_flat(table)) for heading, table in tables if len(table)]
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def write_live_report(path: str | Path, timeline: pd.DataFrame, arms: pd.DataFrame, **kwargs: Any) -> Path:
    """Write :func:`live_report_html` to ``path`` (folders are created, the file replaced atomically).

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ParameterError
        As for :func:`live_figure`.
    """
    text = live_report_html(timeline, arms, **kwargs)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(out.name + ".tmp")
    temp.write_text(text, encoding="utf-8")
    temp.replace(out)
    return out


def _flat(frame: pd.DataFrame) -> pd.DataFrame:
    """Lists in cells as comma-separated text."""
    return frame.apply(lambda column: column.map(lambda v: ", ".join(map(str, v)) if isinstance(v, list) else v))


def _check(frame: Any, columns: tuple[str, ...], name: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ParameterError(f"{name} must be a pandas DataFrame, not {type(frame).__name__}", parameter=name)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ParameterError(f"{name} has no column {missing[0]!r}; it needs {', '.join(columns)}", parameter=name)
    if frame.empty:
        raise ParameterError(f"{name} has no rows", parameter=name)
