"""Garbage collection: delete old runs, then the blobs nothing references any more.

Runs are chosen by age, by tag, and beyond the newest N of each flow; a run
still running, or one a registered model version comes from, is never chosen.
A blob is deleted only if no remaining artifact, log or model version points at
it and it is older than a grace period, so a run that is writing right now
never loses a blob it has stored but not yet recorded.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from matinee.core.storage.blobs import BlobInfo
from matinee.core.storage.metadata import RUNNING
from matinee.core.store import Store
from matinee.errors import ParameterError


@dataclass
class GcPlan:
    """What a collection deletes: runs (rows), then blobs."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    blobs: list[BlobInfo] = field(default_factory=list)
    kept_for_models: list[int] = field(default_factory=list)

    @property
    def blob_bytes(self) -> int:
        return sum(b.size for b in self.blobs)

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": [f"{r['flow_name']}/{r['id']}" for r in self.runs],
            "blobs": len(self.blobs),
            "bytes": self.blob_bytes,
            "kept_for_models": self.kept_for_models,
        }


def plan_gc(
    store: Store,
    *,
    older_than: float | None = None,
    keep_last: int | None = None,
    tags: tuple[str, ...] = (),
    flow: str | None = None,
    grace: float = 3600.0,
) -> GcPlan:
    """Work out what :func:`apply_gc` would delete; changes nothing.

    Parameters
    ----------
    store
        The store to clean.
    older_than
        Choose runs created more than this many seconds ago.
    keep_last
        Choose, per flow, every run but the newest ``keep_last``; with other
        criteria, the newest ``keep_last`` are kept whatever they match.
    tags
        Choose runs carrying all of these tags.
    flow
        Only consider runs of this flow (or ``start_run`` name).
    grace
        Blobs younger than this many seconds are never deleted.

    Returns
    -------
    GcPlan
        The runs and blobs to delete. With no criteria no run is chosen, and
        only blobs that nothing references are.
    """
    if keep_last is not None and keep_last < 0:
        raise ParameterError("--keep-last must be 0 or more", parameter="keep_last")
    metadata = store.metadata
    now = time.time()
    protected = metadata.protected_run_ids()
    by_flow: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in metadata.list_runs(flow):
        by_flow[row["flow_name"]].append(row)  # newest first
    selecting = older_than is not None or keep_last is not None or bool(tags)
    plan = GcPlan()
    for rows in by_flow.values():
        for position, row in enumerate(rows):
            if not selecting or row["status"] == RUNNING:
                continue
            if keep_last is not None and position < keep_last:
                continue
            if older_than is not None and row["created_at"] > now - older_than:
                continue
            if tags:
                have = {t["tag"] for t in metadata.run_tags(row["id"])}
                if not set(tags) <= have:
                    continue
            if row["id"] in protected:
                plan.kept_for_models.append(row["id"])
                continue
            plan.runs.append(row)
    doomed = {r["id"] for r in plan.runs}
    still_referenced = metadata.referenced_keys(excluding_runs=doomed)
    plan.blobs = [
        b for b in store.artifacts.blobs.list() if b.key not in still_referenced and b.mtime < now - grace
    ]
    return plan


def apply_gc(store: Store, plan: GcPlan) -> None:
    """Delete the plan's runs, then its blobs."""
    from matinee.progress import progress

    store.metadata.delete_runs(progress([r["id"] for r in plan.runs], "deleting runs"))
    keys = [blob.key for blob in plan.blobs]
    for start in progress(range(0, len(keys), 500), "deleting blobs"):
        store.artifacts.blobs.delete_many(keys[start:start + 500])  # one request per 500 blobs on S3
    store.artifacts._known.difference_update(keys)
