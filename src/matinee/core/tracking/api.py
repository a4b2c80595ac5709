"""``matinee.start_run``: tracked runs outside flows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from matinee.config import Settings
from matinee.core.tracking.tracker import TrackedRun
from matinee.errors import ParameterError


def start_run(
    name: str,
    *,
    tags: Iterable[str] = (),
    params: Mapping[str, Any] | None = None,
    settings: Settings | None = None,
) -> TrackedRun:
    """Start a tracked run named ``name``, for metrics logged outside any flow.

    Parameters
    ----------
    name
        Groups runs, as a flow name does (``matinee runs NAME`` lists them).
    tags
        Tags for the run.
    params
        Parameters to record at once (see :meth:`TrackedRun.log_params`).
    settings
        Where to store it; default :func:`matinee.load_settings`.

    Returns
    -------
    TrackedRun
        Use it in a ``with`` block; it is completed (or failed) on exit.

    Examples
    --------
    >>> import os, tempfile, matinee
    >>> os.environ["MATINEE_HOME"] = tempfile.mkdtemp()
    >>> with matinee.start_run("tuning") as run:
    ...     for epoch in range(3):
    ...         run.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
    >>> matinee.Run(run.pathspec).metric("loss").values
    [1.0, 0.5, 0.3333333333333333]
    """
    from matinee.core.store import open_store

    if not isinstance(name, str) or not name or "/" in name:
        raise ParameterError(f"a run name must be a non-empty string without '/', not {name!r}", parameter="name")
    store = open_store(settings)
    run_id = store.metadata.create_run(
        name, store.settings.user, kind="tracking", tags=tags, system_tags=["kind:tracking"], params=params
    )
    return TrackedRun(store.metadata, run_id, name)
