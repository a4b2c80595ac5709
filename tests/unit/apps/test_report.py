"""Artwork reports: one self-contained HTML page with the learning curves and the estimates."""

from __future__ import annotations

import doctest
import re

import pandas as pd
import pytest

import matinee.apps.artwork.report as report
from matinee.apps.artwork.online import simulate
from matinee.apps.artwork.policies import LinUCB, UniformRandom
from matinee.apps.artwork.report import report_figure, write_report
from matinee.apps.sim import ArtworkEnvironment
from matinee.errors import ParameterError


@pytest.fixture(scope="module")
def curves() -> pd.DataFrame:
    env = ArtworkEnvironment(n_context_features=4, n_variants=3, n_variant_features=2, seed=0)
    runs = [simulate(p, env, rounds=3_000, batch_size=500, seed=0) for p in (UniformRandom(random_state=0),
                                                                           LinUCB(random_state=0))]
    return pd.concat([r.frame for r in runs], ignore_index=True)


ESTIMATES = pd.DataFrame({
    "policy": ["UniformRandom"] * 2 + ["LinUCB"] * 2, "estimator": ["ips", "dr"] * 2,
    "value": [0.30, 0.31, 0.40, 0.41], "low": [0.28, 0.29, 0.37, 0.39], "high": [0.32, 0.33, 0.43, 0.44],
    "truth": [0.305, 0.305, 0.42, 0.42]})


def test_docstring_examples_run():
    assert doctest.testmod(report, optionflags=doctest.ELLIPSIS).failed == 0


def test_the_html_report_is_self_contained(tmp_path, curves):
    summary = [{"policy": "LinUCB", "share": 0.98}]
    path = write_report(tmp_path / "deep" / "report.html", curves, ESTIMATES, title="Run 7", summary=summary,
                        notes=["10,000 logged rounds"])
    assert path.exists() and not (tmp_path / "deep" / "report.html.tmp").exists()
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<h1>Run 7</h1>" in page
    assert not re.search(r"<script[^>]*src=[\"']?(https?:)?//", page)  # nothing fetched from the network
    assert "Plotly.newPlot" in page and len(page) > 1_000_000  # the plotting library itself is inlined
    assert "LinUCB" in page and "0.4100 [0.3900, 0.4400]" in page and "10,000 logged rounds" in page


def test_the_figure_has_curves_for_each_policy_and_intervals(curves):
    figure = report_figure(curves, ESTIMATES)
    names = [trace.name for trace in figure.data]
    assert names.count("UniformRandom") == 3 and names.count("LinUCB") == 3  # reward, regret, learning curve
    assert "oracle" in names and "true value" in names and {"ips", "dr"} <= set(names)
    dr = next(t for t in figure.data if t.name == "dr")
    assert list(dr.error_y.array) == pytest.approx([0.02, 0.03])
    only_curves = report_figure(curves)
    assert "true value" not in [t.name for t in only_curves.data]


@pytest.mark.parametrize(
    ("curves", "estimates", "parameter", "message"),
    [
        (None, None, "curves", "needs curves, estimates or both"),
        ([1, 2], None, "curves", "must be a pandas DataFrame"),
        (None, ESTIMATES.drop(columns="low"), "estimates", "no column 'low'"),
        (None, ESTIMATES.head(0), "estimates", "has no rows"),
    ],
)
def test_bad_tables_are_refused(curves, estimates, parameter, message):
    with pytest.raises(ParameterError, match=message) as info:
        report_figure(curves, estimates)
    assert info.value.fields["parameter"] == parameter
