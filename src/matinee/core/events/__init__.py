"""The durable decision and feedback log.

:class:`EventLog` appends decisions (unit, context, candidates, chosen action,
propensity, model version, experiment arm) and feedback events with group
commit to ``<MATINEE_HOME>/events/events.db``, and reads them back as pandas
DataFrames, joined by decision id for off-policy evaluation, A/B analysis and
retraining, or exported to Parquet.
"""

from __future__ import annotations

from matinee.core.events._log import DURABILITIES, EventLog, default_path
from matinee.core.events._records import (
    DECISION_COLUMNS,
    FEEDBACK_COLUMNS,
    decision_rows,
    parse_time,
)

__all__ = [
    "DECISION_COLUMNS", "DURABILITIES", "FEEDBACK_COLUMNS", "EventLog", "decision_rows", "default_path", "parse_time",
]
