"""The metadata store: every SQL statement matinee runs, in one place.

Runs, their tags and parameters, tasks and their attempts, artifact references,
metrics and model versions. The SQL is portable text with ``:name`` parameters,
run through a :class:`~matinee.core.storage.db.Database` (SQLite or PostgreSQL),
so nothing above this module knows which database it talks to.
"""

from __future__ import annotations

import json
import math
import os
import random
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from matinee.core.artifacts.store import ArtifactRef
from matinee.core.storage.db import Database, Row, connect
from matinee.errors import ConflictError, NotFoundError, ParameterError, StorageError

RUNNING, COMPLETED, FAILED = "running", "completed", "failed"

#: A run whose heartbeat is older than this, on another host, is taken as dead.
STALE_AFTER = 600.0

HOSTNAME = socket.gethostname()


class MetadataStore:
    """Typed operations on the metadata database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    def open(cls, url: str) -> MetadataStore:
        return cls(connect(url))

    def close(self) -> None:
        self.db.close()

    # -- runs -----------------------------------------------------------------
    def create_run(
        self,
        flow_name: str,
        user: str,
        *,
        kind: str = "flow",
        code_hash: str | None = None,
        origin_run_id: int | None = None,
        executor: str | None = None,
        tags: Iterable[str] = (),
        system_tags: Iterable[str] = (),
        params: Mapping[str, Any] | None = None,
        pid: int | None = None,
        hostname: str | None = None,
    ) -> int:
        """A new running run; ``pid``/``hostname`` name the process that runs it (default: this one),
        so a run whose process dies is reaped as failed (the server passes its remote client's)."""
        now = time.time()
        with self.db.transaction():
            run_id = self.db.insert(
                "INSERT INTO runs (flow_name, kind, status, user_name, created_at, heartbeat_at,"
                " code_hash, origin_run_id, executor, pid, hostname)"
                " VALUES (:flow, :kind, :status, :user, :now, :now, :code, :origin, :executor, :pid, :host)",
                dict(flow=flow_name, kind=kind, status=RUNNING, user=user, now=now, code=code_hash,
                     origin=origin_run_id, executor=executor, pid=os.getpid() if pid is None else pid,
                     host=hostname or (HOSTNAME if pid is None else None)),
            )
            self._add_tags(run_id, tags, system=False)
            self._add_tags(run_id, [f"user:{user}", *system_tags], system=True)
            if params:
                self.log_params(run_id, params)
        return run_id

    def _add_tags(self, run_id: int, tags: Iterable[str], system: bool) -> None:
        tags = list(dict.fromkeys(tags))
        if not system:
            check_user_tags(tags)
        rows = [dict(run=run_id, tag=t, system=int(system)) for t in tags]
        if rows:
            self.db.executemany(
                "INSERT INTO run_tags (run_id, tag, system) VALUES (:run, :tag, :system)"
                " ON CONFLICT (run_id, tag) DO NOTHING",
                rows,
            )

    def add_tags(self, run_id: int, tags: Iterable[str]) -> None:
        with self.db.transaction():
            self._add_tags(run_id, tags, system=False)

    def remove_tags(self, run_id: int, tags: Iterable[str]) -> None:
        for tag in tags:
            self.db.execute(
                "DELETE FROM run_tags WHERE run_id = :run AND tag = :tag AND system = 0",
                dict(run=run_id, tag=tag),
            )

    def log_params(self, run_id: int, params: Mapping[str, Any]) -> None:
        rows = [dict(run=run_id, name=k, value=json.dumps(v, default=str)) for k, v in params.items()]
        self.db.executemany(
            "INSERT INTO params (run_id, name, value) VALUES (:run, :name, :value)"
            " ON CONFLICT (run_id, name) DO UPDATE SET value = excluded.value",
            rows,
        )

    def finish_run(self, run_id: int, status: str, error: str | None = None) -> None:
        self.db.execute(
            "UPDATE runs SET status = :status, finished_at = :now, heartbeat_at = :now, error = :error"
            " WHERE id = :run",
            dict(status=status, now=time.time(), error=error, run=run_id),
        )

    def heartbeat(self, run_id: int) -> None:
        self.db.execute("UPDATE runs SET heartbeat_at = :now WHERE id = :run", dict(now=time.time(), run=run_id))

    def get_run(self, run_id: int) -> Row | None:
        rows = self.db.query("SELECT * FROM runs WHERE id = :run", dict(run=run_id))
        return self._reap(rows)[0] if rows else None

    def list_runs(
        self,
        flow_name: str | None = None,
        *,
        tag: str | None = None,
        kind: str | None = None,
        limit: int | None = None,
        before: int | None = None,
    ) -> list[Row]:
        """Runs, newest first, optionally of one flow, carrying one tag, with ids below ``before``."""
        sql = "SELECT * FROM runs WHERE 1 = 1"
        args: dict[str, Any] = {}
        if before is not None:
            sql += " AND id < :before"
            args["before"] = int(before)
        if flow_name is not None:
            sql += " AND flow_name = :flow"
            args["flow"] = flow_name
        if kind is not None:
            sql += " AND kind = :kind"
            args["kind"] = kind
        if tag is not None:
            sql += " AND id IN (SELECT run_id FROM run_tags WHERE tag = :tag)"
            args["tag"] = tag
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._reap(self.db.query(sql, args))

    def list_flows(self) -> list[Row]:
        return self.db.query(
            "SELECT flow_name, COUNT(*) AS runs, MAX(id) AS latest_run, MAX(created_at) AS last_run_at"
            " FROM runs WHERE kind = 'flow' GROUP BY flow_name ORDER BY flow_name"
        )

    def run_tags(self, run_id: int) -> list[Row]:
        return self.db.query(
            "SELECT tag, system FROM run_tags WHERE run_id = :run ORDER BY system DESC, tag", dict(run=run_id)
        )

    def tags_of_runs(self, run_ids: Iterable[int]) -> dict[int, list[Row]]:
        """Tags of many runs in one query: run id -> rows as :meth:`run_tags` gives them."""
        ids = sorted(set(run_ids))
        out: dict[int, list[Row]] = {run_id: [] for run_id in ids}
        if not ids:
            return out
        if self.db.dialect == "postgresql":  # one array parameter, however many runs
            rows = self.db.query(
                "SELECT run_id, tag, system FROM run_tags WHERE run_id = ANY(:ids) ORDER BY run_id, system DESC, tag",
                dict(ids=ids),
            )
        else:  # SQLite allows 32766 parameters a statement: ask in slices
            rows = []
            for start in range(0, len(ids), 10_000):
                args = {f"r{i}": run_id for i, run_id in enumerate(ids[start:start + 10_000])}
                rows += self.db.query(
                    f"SELECT run_id, tag, system FROM run_tags WHERE run_id IN ({', '.join(':' + k for k in args)})"
                    " ORDER BY run_id, system DESC, tag",
                    args,
                )
        for row in rows:
            out[row.pop("run_id")].append(row)
        return out

    def run_params(self, run_id: int) -> dict[str, Any]:
        rows = self.db.query("SELECT name, value FROM params WHERE run_id = :run ORDER BY name", dict(run=run_id))
        return {r["name"]: json.loads(r["value"]) for r in rows}

    def _reap(self, rows: list[Row]) -> list[Row]:
        """Mark runs whose process is gone as failed, so none stays 'running' forever."""
        now = time.time()
        for row in rows:
            if row["status"] != RUNNING:
                continue
            if row["hostname"] == HOSTNAME and row["pid"]:
                dead = not _pid_alive(row["pid"])
            else:
                dead = now - (row["heartbeat_at"] or row["created_at"]) > STALE_AFTER
            if dead:
                error = f"the run's process ({row['hostname']}:{row['pid']}) ended without finishing the run"
                self.db.execute(
                    "UPDATE runs SET status = :failed, finished_at = :now, error = :error"
                    " WHERE id = :run AND status = :running",
                    dict(failed=FAILED, now=now, error=error, run=row["id"], running=RUNNING),
                )
                self.db.execute(
                    "UPDATE tasks SET status = :failed, finished_at = :now WHERE run_id = :run AND status = :running",
                    dict(failed=FAILED, now=now, run=row["id"], running=RUNNING),
                )
                row.update(status=FAILED, finished_at=now, error=error)
        return rows

    # -- tasks ----------------------------------------------------------------
    def create_task(
        self,
        run_id: int,
        step: str,
        foreach_stack: Sequence[Sequence[Any]] = (),
        input_paths: Sequence[int] = (),
    ) -> int:
        return self.db.insert(
            "INSERT INTO tasks (run_id, step_name, foreach_key, foreach_stack, input_paths, status, started_at)"
            " VALUES (:run, :step, :key, :stack, :inputs, :status, :now)",
            dict(run=run_id, step=step, key=foreach_key(foreach_stack), stack=json.dumps(list(foreach_stack)),
                 inputs=json.dumps(list(input_paths)), status=RUNNING, now=time.time()),
        )

    def start_attempt(self, task_id: int, attempt: int) -> None:
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO attempts (task_id, attempt, status, started_at) VALUES (:task, :attempt, :status, :now)",
                dict(task=task_id, attempt=attempt, status=RUNNING, now=time.time()),
            )
            self.db.execute(
                "UPDATE tasks SET attempts = :n, status = :status WHERE id = :task",
                dict(n=attempt + 1, status=RUNNING, task=task_id),
            )

    def finish_attempt(
        self,
        task_id: int,
        attempt: int,
        status: str,
        *,
        exception: str | None = None,
        traceback: str | None = None,
        stdout_key: str | None = None,
        stderr_key: str | None = None,
    ) -> None:
        self.db.execute(
            "UPDATE attempts SET status = :status, finished_at = :now,"
            " exception = COALESCE(:exc, exception), traceback = COALESCE(:tb, traceback),"
            " stdout_key = COALESCE(:out, stdout_key), stderr_key = COALESCE(:err, stderr_key)"
            " WHERE task_id = :task AND attempt = :attempt",
            dict(status=status, now=time.time(), exc=exception, tb=traceback, out=stdout_key,
                 err=stderr_key, task=task_id, attempt=attempt),
        )

    def finish_task(
        self,
        task_id: int,
        status: str,
        *,
        transition: Mapping[str, Any] | None = None,
        artifacts: Mapping[str, ArtifactRef] | None = None,
    ) -> None:
        """Record a task's outcome and its artifact references atomically."""
        rows = [dict(task=task_id, name=n, key=r.key, codec=r.codec, size=r.size) for n, r in (artifacts or {}).items()]
        with self.db.transaction():
            if rows:
                self.db.executemany(
                    "INSERT INTO artifacts (task_id, name, key, codec, size) VALUES (:task, :name, :key, :codec, :size)",
                    rows,
                )
            self.db.execute(
                "UPDATE tasks SET status = :status, transition = :transition, finished_at = :now WHERE id = :task",
                dict(status=status, transition=json.dumps(transition) if transition is not None else None,
                     now=time.time(), task=task_id),
            )

    def clone_task(
        self, run_id: int, origin: Row, foreach_stack: Sequence[Sequence[Any]], input_paths: Sequence[int]
    ) -> int:
        """Copy a finished task of another run, by reference: no artifact is re-stored."""
        with self.db.transaction():
            task_id = self.db.insert(
                "INSERT INTO tasks (run_id, step_name, foreach_key, foreach_stack, input_paths, status,"
                " transition, cloned_from, attempts, started_at, finished_at)"
                " VALUES (:run, :step, :key, :stack, :inputs, :status, :transition, :origin, 0, :now, :now)",
                dict(run=run_id, step=origin["step_name"], key=origin["foreach_key"],
                     stack=json.dumps(list(foreach_stack)), inputs=json.dumps(list(input_paths)), status=COMPLETED, transition=origin["transition"],
                     origin=origin["id"], now=time.time()),
            )
            self.db.execute(
                "INSERT INTO artifacts (task_id, name, key, codec, size)"
                " SELECT :task, name, key, codec, size FROM artifacts WHERE task_id = :origin",
                dict(task=task_id, origin=origin["id"]),
            )
        return task_id

    def get_task(self, task_id: int) -> Row | None:
        rows = self.db.query("SELECT * FROM tasks WHERE id = :task", dict(task=task_id))
        return rows[0] if rows else None

    def list_tasks(self, run_id: int, step: str | None = None) -> list[Row]:
        sql = "SELECT * FROM tasks WHERE run_id = :run"
        if step is not None:
            sql += " AND step_name = :step"
        return self.db.query(sql + " ORDER BY id", dict(run=run_id, step=step))

    def task_artifacts(self, task_id: int) -> dict[str, ArtifactRef]:
        rows = self.db.query(
            "SELECT name, key, codec, size FROM artifacts WHERE task_id = :task ORDER BY name", dict(task=task_id)
        )
        return {r["name"]: ArtifactRef(r["key"], r["codec"], r["size"]) for r in rows}

    def task_attempts(self, task_id: int) -> list[Row]:
        return self.db.query("SELECT * FROM attempts WHERE task_id = :task ORDER BY attempt", dict(task=task_id))

    # -- metrics --------------------------------------------------------------
    def log_metrics(self, rows: Sequence[tuple[int, int | None, str, int | None, float, float]]) -> None:
        """Append metric points ``(run_id, task_id, name, step, value, ts)`` in one transaction.

        The commit does not wait for the disk on PostgreSQL (``synchronous_commit
        = off`` for this transaction only): a batch is all or nothing, and only a
        crash of the database server itself -- not of the process logging -- can
        lose the last fraction of a second of batches, which is what SQLite in WAL
        mode with ``synchronous = NORMAL`` promises too (on power loss).

        A NaN value is stored as NULL (SQLite's own way with NaN, and PostgreSQL's
        here too, so both read the same) and read back as NaN; infinities are kept.
        """
        if not rows:
            return
        last: dict[tuple[int, str], tuple[int, float, int | None, float]] = {}
        for run, _task, name, step, value, ts in rows:
            if value is None:  # NULL means NaN here: a missing value must not pass for one
                raise ParameterError(f"metric {name!r} has no value (None); log a number or NaN", parameter="value")
            order = (-1 if step is None else int(step), float(ts))
            held = last.get((run, name))
            if held is None or order >= held[:2]:
                last[(run, name)] = (*order, step, value)
        with self.db.transaction(durable=False):
            self.db.executemany(
                "INSERT INTO metrics (run_id, task_id, name, step, value, ts)"
                " VALUES (:run, :task, :name, :step, :value, :ts)",
                [dict(run=r, task=t, name=n, step=s, value=v if v == v else None, ts=ts)
                 for r, t, n, s, v, ts in rows],
            )
            self.db.executemany(
                "INSERT INTO latest_metrics (run_id, name, step, value, ts)"
                " VALUES (:run, :name, :step, :value, :ts)"
                " ON CONFLICT (run_id, name) DO UPDATE SET step = excluded.step, value = excluded.value,"
                " ts = excluded.ts"
                " WHERE COALESCE(excluded.step, -1) > COALESCE(latest_metrics.step, -1)"
                " OR (COALESCE(excluded.step, -1) = COALESCE(latest_metrics.step, -1)"
                " AND excluded.ts >= latest_metrics.ts)",
                [dict(run=run, name=name, step=step, value=value if value == value else None, ts=ts)
                 for (run, name), (_o, ts, step, value) in last.items()],
            )

    def metrics(self, run_id: int, name: str | None = None) -> list[Row]:
        """The points of a run (of metric ``name``), by name then in the order logged; NaN as NaN."""
        sql = "SELECT task_id, name, step, value, ts FROM metrics WHERE run_id = :run"
        if name is not None:
            sql += " AND name = :name"
        rows = self.db.query(sql + " ORDER BY name, id", dict(run=run_id, name=name))
        for row in rows:
            if row["value"] is None:
                row["value"] = math.nan
        return rows

    def latest_metrics(self, run_ids: Iterable[int]) -> dict[int, dict[str, float]]:
        """The last value (highest step, then newest) of every metric of each run."""
        out: dict[int, dict[str, float]] = {int(run_id): {} for run_id in run_ids}
        for row in self._rows_of_runs("SELECT run_id, name, value FROM latest_metrics", list(out)):
            out[row["run_id"]][row["name"]] = math.nan if row["value"] is None else row["value"]
        return out

    def metric_names(self, run_ids: Iterable[int] | None = None) -> list[str]:
        """Names of the metrics logged (by ``run_ids``, or by any run), sorted."""
        if run_ids is None:
            rows = self.db.query("SELECT DISTINCT name FROM latest_metrics ORDER BY name")
        else:
            rows = self._rows_of_runs("SELECT DISTINCT name FROM latest_metrics", sorted(set(run_ids)))
        return sorted({r["name"] for r in rows})

    def _rows_of_runs(self, select: str, run_ids: Sequence[int]) -> list[Row]:
        """``select ... WHERE run_id IN run_ids``, in slices SQLite accepts (one array on PostgreSQL)."""
        if not run_ids:
            return []
        if self.db.dialect == "postgresql":
            return self.db.query(f"{select} WHERE run_id = ANY(:ids)", dict(ids=list(run_ids)))
        rows: list[Row] = []
        for start in range(0, len(run_ids), 10_000):
            args = {f"r{i}": run_id for i, run_id in enumerate(run_ids[start:start + 10_000])}
            rows += self.db.query(f"{select} WHERE run_id IN ({', '.join(':' + k for k in args)})", args)
        return rows

    def search_runs(
        self,
        *,
        flow: str | None = None,
        status: str | None = None,
        tag: str | None = None,
        user: str | None = None,
        since: float | None = None,
        until: float | None = None,
        sort: str = "id",
        order: str = "desc",
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[Row], int]:
        """One page of runs matching every filter given, and how many match in all.

        ``sort`` is ``id``, ``created``, ``finished`` or ``metric:<name>`` (runs
        without that metric are left out: they have no place in its order);
        ``order`` is ``desc`` or ``asc``. Each row is a run as :meth:`get_run`
        gives it plus ``tags`` (the user's tags) and, when sorting by a metric,
        ``sort_value``.

        Runs whose latest value of the metric is NaN come after every number in
        either order (newest run first among them when ``desc``), as in MLflow's
        ``search_runs``: a diverged run is neither the best nor the worst, and
        the count keeps it. Infinities sort as numbers. NaN is stored as NULL,
        so the numbers and the NaN runs are two reads of the ``(name, value)``
        index, each an index scan; the second only when the page reaches past
        the numbers.
        """
        if order not in ("asc", "desc"):
            raise ParameterError(f"order must be asc or desc, not {order!r}", parameter="order")
        if status is not None and status not in (RUNNING, COMPLETED, FAILED):
            raise ParameterError(
                f"status must be {RUNNING}, {COMPLETED} or {FAILED}, not {status!r}", parameter="status"
            )
        limit, offset = _whole(limit, "limit", 1, 1000), _whole(offset, "offset", 0, 10**9)
        where = ["1 = 1"]
        args: dict[str, Any] = {}
        for column, value, name in (("r.flow_name", flow, "flow"), ("r.status", status, "status"),
                                    ("r.user_name", user, "user")):
            if value is not None:
                where.append(f"{column} = :{name}")
                args[name] = value
        if tag is not None:
            where.append("r.id IN (SELECT run_id FROM run_tags WHERE tag = :tag)")
            args["tag"] = tag
        if since is not None:
            where.append("r.created_at >= :since")
            args["since"] = float(since)
        if until is not None:
            where.append("r.created_at < :until")
            args["until"] = float(until)
        direction = "DESC" if order == "desc" else "ASC"
        source = "runs r"
        select = "r.*"
        if sort.startswith("metric:") and sort[7:]:
            source = "runs r JOIN latest_metrics lm ON lm.run_id = r.id AND lm.name = :metric"
            select = "r.*, lm.value AS sort_value"
            args["metric"] = sort[7:]
            ordering = f"lm.value {direction}, r.id {direction}"
        elif sort in ("id", "created", "finished"):
            column = {"id": "r.id", "created": "r.created_at", "finished": "r.finished_at"}[sort]
            ordering = f"{column} {direction}" + ("" if sort == "id" else f", r.id {direction}")
        else:
            raise ParameterError(
                f"sort must be id, created, finished or metric:<name>, not {sort!r}", parameter="sort"
            )
        condition = " AND ".join(where)
        if len(where) == 1 and "metric" in args:  # no run filter: the metric's index alone counts
            count = "SELECT COUNT(*) AS n FROM latest_metrics WHERE name = :metric"
        else:
            count = f"SELECT COUNT(*) AS n FROM {source} WHERE {condition}"
        total = int(self.db.query(count, args)[0]["n"])
        if "metric" not in args:
            rows = self.db.query(
                f"SELECT {select} FROM {source} WHERE {condition} ORDER BY {ordering} LIMIT {limit} OFFSET {offset}",
                args,
            )
        else:
            rows = self._metric_page(source, select, condition, ordering, direction, args, limit, offset)
        rows = self._reap(rows)
        tags = self.tags_of_runs(row["id"] for row in rows)
        for row in rows:
            row["tags"] = [t["tag"] for t in tags[row["id"]] if not t["system"]]
        return rows, total

    def _metric_page(self, source: str, select: str, condition: str, ordering: str, direction: str,
                     args: dict[str, Any], limit: int, offset: int) -> list[Row]:
        """A page of runs sorted by a metric: the numbers in ``ordering``, then the NaN (NULL) ones by id."""
        rows = self.db.query(
            f"SELECT {select} FROM {source} WHERE {condition} AND lm.value IS NOT NULL ORDER BY {ordering}"
            f" LIMIT {limit} OFFSET {offset}",
            args,
        )
        if len(rows) == limit:
            return rows
        if rows or not offset:  # the page holds the last number (or starts at the top): NaN runs from the first
            skip = 0
        else:
            numbers = self.db.query(
                f"SELECT COUNT(*) AS n FROM {source} WHERE {condition} AND lm.value IS NOT NULL", args
            )
            skip = offset - int(numbers[0]["n"])
        rows += self.db.query(
            f"SELECT {select} FROM {source} WHERE {condition} AND lm.value IS NULL ORDER BY r.id {direction}"
            f" LIMIT {limit - len(rows)} OFFSET {max(skip, 0)}",
            args,
        )
        for row in rows:
            if row["sort_value"] is None:
                row["sort_value"] = math.nan
        return rows

    # -- access tokens and the audit log --------------------------------------
    def add_token(self, token_id: str, name: str, role: str, secret_hash: str, created_by: str,
                  expires_at: float | None) -> None:
        try:
            self.db.execute(
                "INSERT INTO tokens (id, name, role, secret_hash, created_at, created_by, expires_at)"
                " VALUES (:id, :name, :role, :hash, :now, :by, :expires)",
                dict(id=token_id, name=name, role=role, hash=secret_hash, now=time.time(), by=created_by,
                     expires=expires_at),
            )
        except StorageError as exc:
            if self.db.query("SELECT id FROM tokens WHERE name = :name", dict(name=name)):
                raise ConflictError(f"a token named {name!r} exists; pick another --name or revoke it",
                                    parameter="name") from exc
            raise

    def get_token(self, token_id: str) -> Row | None:
        rows = self.db.query("SELECT * FROM tokens WHERE id = :id", dict(id=token_id))
        return rows[0] if rows else None

    def list_tokens(self) -> list[Row]:
        return self.db.query(
            "SELECT id, name, role, created_at, created_by, expires_at, revoked_at, last_used_at"
            " FROM tokens ORDER BY created_at, name"
        )

    def count_active_tokens(self, now: float) -> int:
        rows = self.db.query(
            "SELECT COUNT(*) AS n FROM tokens WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > :now)",
            dict(now=now),
        )
        return int(rows[0]["n"])

    def revoke_token(self, name_or_id: str) -> Row:
        """Revoke a token by name or id; returns it. Revoking twice is refused (it names the time)."""
        rows = self.db.query("SELECT * FROM tokens WHERE id = :key OR name = :key", dict(key=name_or_id))
        if not rows:
            raise NotFoundError(f"no token named {name_or_id!r}; `matinee tokens ls` lists them",
                                parameter="token")
        token = rows[0]
        if token["revoked_at"] is None:
            token["revoked_at"] = time.time()
            self.db.execute("UPDATE tokens SET revoked_at = :now WHERE id = :id",
                            dict(now=token["revoked_at"], id=token["id"]))
        return token

    def touch_token(self, token_id: str, now: float) -> None:
        self.db.execute("UPDATE tokens SET last_used_at = :now WHERE id = :id", dict(now=now, id=token_id))

    def audit(self, actor: str, role: str | None, action: str, target: str | None, outcome: str,
              status: int | None = None, remote: str | None = None, detail: str | None = None) -> None:
        self.db.execute(
            "INSERT INTO audit_log (at, actor, role, action, target, outcome, status, remote, detail)"
            " VALUES (:at, :actor, :role, :action, :target, :outcome, :status, :remote, :detail)",
            dict(at=time.time(), actor=actor, role=role, action=action, target=target, outcome=outcome,
                 status=status, remote=remote, detail=detail),
        )

    def audit_log(self, *, limit: int = 100, before: int | None = None, outcome: str | None = None) -> list[Row]:
        sql = "SELECT * FROM audit_log WHERE 1 = 1"
        args: dict[str, Any] = {}
        if before is not None:
            sql += " AND id < :before"
            args["before"] = int(before)
        if outcome is not None:
            sql += " AND outcome = :outcome"
            args["outcome"] = outcome
        return self.db.query(sql + f" ORDER BY id DESC LIMIT {_whole(limit, 'limit', 1, 10_000)}", args)

    def prune_audit(self, before: float) -> int:
        """Delete audit entries recorded before ``before`` (epoch seconds); returns how many."""
        return self.db.execute("DELETE FROM audit_log WHERE at < :before", dict(before=float(before)))

    # -- model registry -------------------------------------------------------
    def add_model_version(self, name: str, fields: Mapping[str, Any], attempts: int = 20) -> int:
        """Record the next version of model ``name``; returns its number (1, 2, ... per name).

        The number is read and written in one transaction under the model's
        lock (SQLite's write lock; an advisory lock per model name on
        PostgreSQL), so writers queue and each reads the number the previous
        one wrote. Should two writers still collide, the primary key refuses
        the second, which retries with the next number.
        """
        columns = ["run_id", "task_id", "artifact_name", "artifact_key", "codec", "size", "created_at",
                   "dataset_hash", "code_version", "matinee_version", "package_versions", "metrics", "tags",
                   "description", "user_name"]
        args = {c: fields.get(c) for c in columns}
        args["created_at"] = args["created_at"] or time.time()
        args["name"] = name
        sql = (
            f"INSERT INTO model_versions (name, version, {', '.join(columns)})"
            f" VALUES (:name, :version, {', '.join(':' + c for c in columns)})"
        )
        for attempt in range(attempts):
            try:
                with self.db.transaction():
                    self._lock_model(name)
                    rows = self.db.query(
                        "SELECT MAX(version) AS version FROM model_versions WHERE name = :name", dict(name=name)
                    )
                    version = int(rows[0]["version"] or 0) + 1
                    self.db.execute(sql, {**args, "version": version})
                return version
            except StorageError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.01 * (attempt + 1) * (0.5 + random.random()))
        raise AssertionError("unreachable")  # pragma: no cover

    def model_version(self, name: str, version: int | None = None) -> Row | None:
        """One version of a model (the newest when ``version`` is None)."""
        if version is None:
            rows = self.db.query(
                "SELECT * FROM model_versions WHERE name = :name ORDER BY version DESC LIMIT 1", dict(name=name)
            )
        else:
            rows = self.db.query(
                "SELECT * FROM model_versions WHERE name = :name AND version = :version",
                dict(name=name, version=version),
            )
        return rows[0] if rows else None

    def model_versions(self, name: str) -> list[Row]:
        return self.db.query("SELECT * FROM model_versions WHERE name = :name ORDER BY version", dict(name=name))

    def list_models(self) -> list[Row]:
        return self.db.query(
            "SELECT name, COUNT(*) AS versions, MAX(version) AS latest_version, MAX(created_at) AS updated_at"
            " FROM model_versions GROUP BY name ORDER BY name"
        )

    def model_aliases(self, name: str) -> list[Row]:
        return self.db.query(
            "SELECT alias, version, updated_at, updated_by FROM model_aliases WHERE name = :name ORDER BY alias",
            dict(name=name),
        )

    def model_alias(self, name: str, alias: str) -> Row | None:
        rows = self.db.query(
            "SELECT * FROM model_aliases WHERE name = :name AND alias = :alias", dict(name=name, alias=alias)
        )
        return rows[0] if rows else None

    def alias_history(self, name: str, alias: str | None = None) -> list[Row]:
        """Every change to the model's aliases (or one alias), oldest first."""
        sql = "SELECT * FROM model_alias_history WHERE name = :name"
        if alias is not None:
            sql += " AND alias = :alias"
        return self.db.query(sql + " ORDER BY id", dict(name=name, alias=alias))

    def move_alias(self, name: str, alias: str, version: int, action: str, user: str,
                   expected: int | None = None) -> int | None:
        """Point ``alias`` at ``version`` and record it, atomically; returns the version it pointed at.

        With ``expected``, the move happens only if the alias points at that
        version now; otherwise :class:`~matinee.errors.ConflictError`.
        """
        with self.db.transaction():
            self._lock_model(name)
            if self.model_version(name, version) is None:
                raise NotFoundError(f"model {name!r} has no version {version}", model=name, version=version)
            old = self.model_alias(name, alias)
            if expected is not None and (old is None or int(old["version"]) != expected):
                now = None if old is None else int(old["version"])
                raise ConflictError(f"alias {name}@{alias} points at version {now}, not {expected}; not moved",
                                    model=name, alias=alias, version=now)
            self._write_alias(name, alias, old, version, action, user)
        return old["version"] if old else None

    def delete_alias(self, name: str, alias: str, user: str) -> int:
        """Remove ``alias`` and record it, atomically; returns the version it pointed at."""
        with self.db.transaction():
            self._lock_model(name)
            old = self.model_alias(name, alias)
            if old is None:
                raise NotFoundError(f"model {name!r} has no alias {alias!r}", model=name, alias=alias)
            self.db.execute("DELETE FROM model_aliases WHERE name = :name AND alias = :alias",
                            dict(name=name, alias=alias))
            self._record_alias_change(name, alias, old["version"], None, "delete", user)
        return int(old["version"])

    def rollback_alias(self, name: str, alias: str, user: str) -> tuple[int, int]:
        """Move ``alias`` back to the version it had before its current one; returns ``(from, to)``.

        The history is replayed as a stack (a rollback pops), so rolling back
        twice goes back two steps.
        """
        with self.db.transaction():
            self._lock_model(name)
            old = self.model_alias(name, alias)
            if old is None:
                raise NotFoundError(f"model {name!r} has no alias {alias!r} to roll back", model=name, alias=alias)
            stack = alias_stack(self.alias_history(name, alias))
            if len(stack) < 2:
                raise NotFoundError(
                    f"alias {name}@{alias} has no earlier version to roll back to", model=name, alias=alias
                )
            target = stack[-2]
            self._write_alias(name, alias, old, target, "rollback", user)
        return int(old["version"]), target

    def _lock_model(self, name: str) -> None:
        """Serialize new versions and alias changes of one model, until the transaction ends.

        A lock on the name, not on rows: it holds before the model has any
        version or alias (a row lock would lock nothing then).
        """
        self.db.lock(f"model:{name}")

    def _write_alias(self, name: str, alias: str, old: Row | None, version: int, action: str, user: str) -> None:
        args = dict(name=name, alias=alias, version=version, now=time.time(), user=user)
        if old is None:
            self.db.execute(
                "INSERT INTO model_aliases (name, alias, version, updated_at, updated_by)"
                " VALUES (:name, :alias, :version, :now, :user)",
                args,
            )
        else:
            self.db.execute(
                "UPDATE model_aliases SET version = :version, updated_at = :now, updated_by = :user"
                " WHERE name = :name AND alias = :alias",
                args,
            )
        if action in ("set", "move"):
            action = "set" if old is None else "move"
        self._record_alias_change(name, alias, old["version"] if old else None, version, action, user)

    def _record_alias_change(
        self, name: str, alias: str, from_version: int | None, to_version: int | None, action: str, user: str
    ) -> None:
        self.db.execute(
            "INSERT INTO model_alias_history (name, alias, from_version, to_version, action, user_name, at)"
            " VALUES (:name, :alias, :from_version, :to_version, :action, :user, :now)",
            dict(name=name, alias=alias, from_version=from_version, to_version=to_version, action=action,
                 user=user, now=time.time()),
        )

    # -- garbage collection ---------------------------------------------------
    def delete_runs(self, run_ids: Iterable[int]) -> None:
        for run_id in run_ids:
            args = dict(run=run_id)
            with self.db.transaction():
                for sql in (
                    "DELETE FROM artifacts WHERE task_id IN (SELECT id FROM tasks WHERE run_id = :run)",
                    "DELETE FROM attempts WHERE task_id IN (SELECT id FROM tasks WHERE run_id = :run)",
                    "DELETE FROM tasks WHERE run_id = :run",
                    "DELETE FROM metrics WHERE run_id = :run",
                    "DELETE FROM latest_metrics WHERE run_id = :run",
                    "DELETE FROM params WHERE run_id = :run",
                    "DELETE FROM run_tags WHERE run_id = :run",
                    "DELETE FROM runs WHERE id = :run",
                ):
                    self.db.execute(sql, args)

    def protected_run_ids(self) -> set[int]:
        """Runs a registered model version points at."""
        rows = self.db.query("SELECT DISTINCT run_id FROM model_versions WHERE run_id IS NOT NULL")
        return {r["run_id"] for r in rows}

    def referenced_keys(self, excluding_runs: Iterable[int] = ()) -> set[str]:
        """Every blob key something points at (ignoring what ``excluding_runs`` alone point at)."""
        excluded = sorted(set(excluding_runs))
        args = {f"r{i}": run_id for i, run_id in enumerate(excluded)}
        keep = f"t.run_id NOT IN ({', '.join(':' + k for k in args)})" if args else "1 = 1"
        rows = self.db.query(
            f"SELECT a.key AS key FROM artifacts a JOIN tasks t ON a.task_id = t.id WHERE {keep}"
            f" UNION SELECT at.stdout_key FROM attempts at JOIN tasks t ON at.task_id = t.id"
            f" WHERE at.stdout_key IS NOT NULL AND {keep}"
            f" UNION SELECT at.stderr_key FROM attempts at JOIN tasks t ON at.task_id = t.id"
            f" WHERE at.stderr_key IS NOT NULL AND {keep}"
            " UNION SELECT artifact_key FROM model_versions",
            args,
        )
        return {r["key"] for r in rows}


#: Prefixes of the tags matinee sets itself; a user's tag may not start with one.
SYSTEM_TAG_PREFIXES = ("user:", "executor:", "resumed-from:", "kind:")


def check_user_tags(tags: Iterable[str]) -> None:
    """Refuse empty tags and tags that would pass for system tags (``user:bob``)."""
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            raise ParameterError(f"a tag must be a non-empty string, not {tag!r}", parameter="tag")
        if tag.startswith(SYSTEM_TAG_PREFIXES):
            raise ParameterError(
                f"tag {tag!r} looks like a system tag ({', '.join(SYSTEM_TAG_PREFIXES)} are matinee's); rename it",
                parameter="tag",
            )


def alias_stack(history: Iterable[Row]) -> list[int]:
    """The versions an alias went through, replaying its history: a rollback undoes one step."""
    stack: list[int] = []
    for change in history:
        if change["action"] == "delete":
            stack.clear()
        elif change["action"] == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != change["to_version"]:
                stack.append(change["to_version"])
        else:
            stack.append(change["to_version"])
    return stack


def _whole(value: Any, name: str, low: int, high: int) -> int:
    """``value`` as a whole number in ``[low, high]``, or a ParameterError naming ``name``."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a whole number, not {value!r}", parameter=name) from None
    if isinstance(value, float) and value != number or not low <= number <= high:
        raise ParameterError(f"{name} must be a whole number from {low} to {high}, not {value!r}",
                             parameter=name)
    return number


def foreach_key(stack: Sequence[Sequence[Any]]) -> str:
    """A task's position in nested foreach splits, e.g. ``"split:3/inner:0"``."""
    return "/".join(f"{frame[0]}:{frame[1]}" for frame in stack)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
