"""Online experiments: A/B tests with trustworthy statistics, and interleaving for rankers.

An :class:`Experiment` names a model, arms bound to its aliases with weights, a
salt, a primary metric and guardrail metrics, an owner and a status. Members
are assigned with the same hash serving uses
(:func:`~matinee.core.serving.config.assign_arm`), so a deployment whose
endpoint carries the experiment's split and salt (:meth:`Experiment.endpoint_config`)
serves each member the arm the experiment expects; the server logs each
decision with its model, version and arm, and those decisions, inside the
experiment's window, are its exposures.

* Lifecycle: :func:`create_experiment`, :func:`start_experiment`,
  :func:`stop_experiment`, :func:`get_experiment`, :func:`list_experiments`,
  :func:`delete_experiment` (drafts only).
* Analysis: :func:`analyze` reads the event log into per-member metrics and
  compares arms (Welch, delta method for ratios, CUPED, sequential tests, an SRM
  check, Holm over several arms); :func:`write_report` renders it as HTML.
* Interleaving: :func:`team_draft`, :func:`credit`, :func:`preference`.
* The statistics alone: :mod:`matinee.core.experiments.stats`.

Examples
--------
>>> from matinee.core.experiments import Experiment
>>> e = Experiment.build("ranker-v2", ["ranker@champion=0.5", "ranker@challenger=0.5"], guardrails=["impressions_per_member"])
>>> e.control, e.weights, e.assign("m42") in ("champion", "challenger")
('champion', {'champion': 0.5, 'challenger': 0.5}, True)
"""

from __future__ import annotations

from matinee.core.experiments.analysis import (
    Analysis,
    analyze,
    analyze_members,
    member_metrics,
    pre_period_metrics,
)
from matinee.core.experiments.interleaving import (
    Interleaved,
    Preference,
    credit,
    preference,
    team_draft,
)
from matinee.core.experiments.model import METRICS, Arm, Experiment, Metric
from matinee.core.experiments.report import report_html, write_report
from matinee.core.experiments.store import (
    create_experiment,
    delete_experiment,
    get_experiment,
    list_experiments,
    start_experiment,
    stop_experiment,
)

__all__ = [
    "METRICS",
    "Analysis",
    "Arm",
    "Experiment",
    "Interleaved",
    "Metric",
    "Preference",
    "analyze",
    "analyze_members",
    "create_experiment",
    "credit",
    "delete_experiment",
    "get_experiment",
    "list_experiments",
    "member_metrics",
    "pre_period_metrics",
    "preference",
    "report_html",
    "start_experiment",
    "stop_experiment",
    "team_draft",
    "write_report",
]
