"""Reports of artwork policies: learning curves from online simulations and off-policy estimates with intervals.

One self-contained HTML page (plotly, with its JavaScript inlined, so it opens
without a network connection) with up to four charts and two tables:

* the cumulative expected reward of each policy simulated online, with the oracle's;
* their cumulative regret against the oracle;
* the learning curve: each batch's expected reward as a share of the oracle's;
* each policy's off-policy estimates (IPS, SNIPS, DM, DR, ...) with their
  intervals, next to its true value when the logs are simulated;
* a table of the simulations (share of the oracle over the last rounds,
  regret, exploration, decisions per second) and one of the estimates.

The inputs are plain tables, so a report can be rebuilt from a run's artifacts:
``curves`` is :attr:`SimulationResult.frame <matinee.apps.artwork.online.SimulationResult>`
of each simulation, concatenated (columns ``policy``, ``end``,
``cumulative_expected_reward``, ``cumulative_oracle_reward``,
``cumulative_regret``, ``share_of_oracle``); ``estimates`` has one row per
policy and estimator (``policy``, ``estimator``, ``value``, ``low``, ``high``,
and optionally ``truth``).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from matinee.errors import ParameterError

__all__ = ["CURVE_COLUMNS", "ESTIMATE_COLUMNS", "report_figure", "report_html", "write_report"]

#: Columns ``curves`` must have.
CURVE_COLUMNS = ("policy", "end", "cumulative_expected_reward", "cumulative_oracle_reward", "cumulative_regret",
                 "share_of_oracle")
#: Columns ``estimates`` must have (``truth`` is optional).
ESTIMATE_COLUMNS = ("policy", "estimator", "value", "low", "high")

_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
            "#bcbd22")
_ESTIMATOR_PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")


def report_figure(curves: pd.DataFrame | None = None, estimates: pd.DataFrame | None = None, *,
                  title: str = "Artwork policies") -> Any:
    """The report's charts as one plotly figure.

    Parameters
    ----------
    curves
        Per-batch simulation frames of one or more policies (see the module docstring), or None.
    estimates
        Off-policy estimates, one row per policy and estimator, or None.
    title
        The figure's title.

    Returns
    -------
    plotly.graph_objects.Figure
        Three simulation panels (when ``curves`` is given) and one of estimates
        (when ``estimates`` is given).

    Raises
    ------
    ParameterError
        Neither table given, or one missing a column.

    Examples
    --------
    >>> import pandas as pd
    >>> estimates = pd.DataFrame({"policy": ["A", "A"], "estimator": ["ips", "dr"], "value": [0.3, 0.31],
    ...                           "low": [0.25, 0.29], "high": [0.35, 0.33], "truth": [0.305, 0.305]})
    >>> figure = report_figure(estimates=estimates)
    >>> [trace.name for trace in figure.data]
    ['ips', 'dr', 'true value']
    """
    curves, estimates = _check(curves, estimates)
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels: list[str] = []
    if curves is not None:
        panels += ["Cumulative expected reward (plays)", "Cumulative regret against the oracle",
                   "Learning curve: expected reward as a share of the oracle's, per batch"]
    if estimates is not None:
        panels.append("Off-policy estimates with intervals")
    rows = len(panels)
    figure = make_subplots(rows=rows, cols=1, subplot_titles=panels, vertical_spacing=0.32 / rows)
    row = 1
    if curves is not None:
        colours = _colours(curves["policy"].unique())
        oracle = None  # the oracle's curve, from the longest simulation
        for policy, part in curves.groupby("policy", sort=False):
            colour = colours[str(policy)]
            figure.add_trace(go.Scatter(x=part["end"], y=part["cumulative_expected_reward"], name=str(policy),
                                        legendgroup=str(policy), line={"color": colour}), row=1, col=1)
            figure.add_trace(go.Scatter(x=part["end"], y=part["cumulative_regret"], name=str(policy),
                                        legendgroup=str(policy), showlegend=False, line={"color": colour}),
                             row=2, col=1)
            figure.add_trace(go.Scatter(x=part["end"], y=part["share_of_oracle"], name=str(policy),
                                        legendgroup=str(policy), showlegend=False, line={"color": colour}),
                             row=3, col=1)
            if oracle is None or part["end"].max() > oracle["end"].max():
                oracle = part
        assert oracle is not None
        figure.add_trace(go.Scatter(x=oracle["end"], y=oracle["cumulative_oracle_reward"], name="oracle",
                                    line={"color": "black", "dash": "dot"}), row=1, col=1)
        for r, label in ((1, "plays"), (2, "plays lost"), (3, "share of oracle")):
            figure.update_yaxes(title_text=label, row=r, col=1)
            figure.update_xaxes(title_text="rounds", row=r, col=1)
        row = 4
    if estimates is not None:
        colours = _colours(estimates["estimator"].unique(), _ESTIMATOR_PALETTE)
        for estimator, part in estimates.groupby("estimator", sort=False):
            figure.add_trace(go.Scatter(
                x=part["policy"], y=part["value"], mode="markers", name=str(estimator),
                marker={"color": colours[str(estimator)], "size": 9},
                error_y={"type": "data", "symmetric": False, "array": part["high"] - part["value"],
                         "arrayminus": part["value"] - part["low"]},
            ), row=row, col=1)
        if "truth" in estimates.columns and estimates["truth"].notna().any():
            truth = estimates.drop_duplicates("policy")
            figure.add_trace(go.Scatter(x=truth["policy"], y=truth["truth"], mode="markers", name="true value",
                                        marker={"color": "black", "symbol": "x", "size": 11}), row=row, col=1)
        figure.update_yaxes(title_text="value (reward per round)", row=row, col=1)
        figure.update_layout(scattermode="group")
    figure.update_layout(title=title or None, height=340 * rows + 80, template="plotly_white",
                         legend={"orientation": "v"})
    return figure


def report_html(curves: pd.DataFrame | None = None, estimates: pd.DataFrame | None = None, *,
                title: str = "Artwork policies", summary: Sequence[dict[str, Any]] | None = None,
                notes: Sequence[str] = ()) -> str:
    """The report as one self-contained HTML page (plotly's JavaScript inlined: no network needed).

    Parameters
    ----------
    curves, estimates, title
        As for :func:`report_figure`.
    summary
        Rows of the simulation table (e.g. :meth:`SimulationResult.summary
        <matinee.apps.artwork.online.SimulationResult.summary>` of each policy); default none.
    notes
        Lines of text shown under the title (data, settings, the winner).

    Returns
    -------
    str
        A complete HTML document.

    Raises
    ------
    ParameterError
        As for :func:`report_figure`.

    Examples
    --------
    >>> import pandas as pd
    >>> estimates = pd.DataFrame({"policy": ["A"], "estimator": ["dr"], "value": [0.3], "low": [0.28],
    ...                           "high": [0.32]})
    >>> page = report_html(estimates=estimates, notes=["10,000 logged rounds"])
    >>> page.startswith("<!DOCTYPE html>") and '<script src="http' not in page
    True
    """
    figure = report_figure(curves, estimates, title="")
    chart = figure.to_html(include_plotlyjs=True, full_html=False)
    parts = [f"<h1>{html.escape(title)}</h1>"]
    parts += [f"<p>{html.escape(line)}</p>" for line in notes]
    parts.append(chart)
    if summary:
        parts.append("<h2>Online simulations</h2>" + _table(pd.DataFrame(list(summary))))
    if estimates is not None:
        parts.append("<h2>Off-policy estimates</h2>" + _table(_estimate_grid(estimates)))
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def write_report(path: str | Path, curves: pd.DataFrame | None = None, estimates: pd.DataFrame | None = None,
                 **kwargs: Any) -> Path:
    """Write :func:`report_html` to ``path`` (folders are created); returns the path.

    Parameters
    ----------
    path
        Where to write the HTML file.
    curves, estimates, **kwargs
        As for :func:`report_html`.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ParameterError
        As for :func:`report_figure`.

    Examples
    --------
    >>> import pandas as pd, tempfile, pathlib
    >>> estimates = pd.DataFrame({"policy": ["A"], "estimator": ["dr"], "value": [0.3], "low": [0.28],
    ...                           "high": [0.32]})
    >>> out = write_report(pathlib.Path(tempfile.mkdtemp()) / "report.html", estimates=estimates)
    >>> out.stat().st_size > 1_000_000  # plotly.js is inside
    True
    """
    text = report_html(curves, estimates, **kwargs)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(out.name + ".tmp")
    temp.write_text(text, encoding="utf-8")
    temp.replace(out)
    return out


# -- internals ---------------------------------------------------------------------------------

_STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
          "table{border-collapse:collapse;margin:1em 0}"
          "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}"
          "th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}")


def _check(curves: Any, estimates: Any) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    if curves is None and estimates is None:
        raise ParameterError("a report needs curves, estimates or both", parameter="curves")
    for name, frame, columns in (("curves", curves, CURVE_COLUMNS), ("estimates", estimates, ESTIMATE_COLUMNS)):
        if frame is None:
            continue
        if not isinstance(frame, pd.DataFrame):
            raise ParameterError(f"{name} must be a pandas DataFrame, not {type(frame).__name__}", parameter=name)
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ParameterError(f"{name} has no column {missing[0]!r}; it needs {', '.join(columns)}",
                                 parameter=name)
        if frame.empty:
            raise ParameterError(f"{name} has no rows", parameter=name)
    return curves, estimates


def _colours(names: Any, palette: tuple[str, ...] = _PALETTE) -> dict[str, str]:
    return {str(name): palette[i % len(palette)] for i, name in enumerate(names)}


def _estimate_grid(estimates: pd.DataFrame) -> pd.DataFrame:
    """One row per policy, one column per estimator: ``value [low, high]``; ``truth`` last when known."""
    cells = estimates.assign(cell=[f"{v:.4f} [{lo:.4f}, {hi:.4f}]" for v, lo, hi in
                                   zip(estimates["value"], estimates["low"], estimates["high"], strict=True)])
    grid = cells.pivot(index="policy", columns="estimator", values="cell")
    grid = grid.reindex(index=list(dict.fromkeys(estimates["policy"])),
                        columns=list(dict.fromkeys(estimates["estimator"])))
    if "truth" in estimates.columns and estimates["truth"].notna().any():
        grid["true value"] = estimates.drop_duplicates("policy").set_index("policy")["truth"].map("{:.4f}".format)
    return grid.reset_index()


def _table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row)
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)
