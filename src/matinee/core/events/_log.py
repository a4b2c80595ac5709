"""The event log: decisions and feedback appended with group commit to a SQLite file.

The log is its own database, ``<MATINEE_HOME>/events/events.db`` by default, in
WAL mode, so that appends never contend with the metadata store and readers in
other processes see committed batches while a writer keeps appending.

Appends are validated in the caller's thread and queued; one background writer
thread takes everything queued every ``flush_interval`` seconds and writes it in
one transaction (group commit). With ``durability="strict"`` the database
fsyncs every commit and an append returns only once the batch holding it is
committed; with ``"relaxed"`` (the default) an append returns at once and a
crash loses at most the batches not yet written, a few milliseconds' worth.
"""

from __future__ import annotations

import atexit
import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matinee.core.events._records import (
    DECISION_COLUMNS,
    FEEDBACK_COLUMNS,
    decision_row,
    feedback_row,
    parse_time,
)
from matinee.core.storage.db import enable_wal
from matinee.errors import ParameterError, StorageError

if TYPE_CHECKING:
    import pandas as pd

DURABILITIES = ("relaxed", "strict")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY NOT NULL,
    ts REAL NOT NULL,
    unit_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    model_version,
    arm TEXT,
    context TEXT NOT NULL,
    candidates TEXT NOT NULL,
    action TEXT NOT NULL,
    propensity REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_ts ON decisions (ts);
CREATE TABLE IF NOT EXISTS feedback (
    decision_id TEXT NOT NULL,
    ts REAL NOT NULL,
    event TEXT NOT NULL,
    reward REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_decision ON feedback (decision_id, ts);
CREATE INDEX IF NOT EXISTS feedback_ts ON feedback (ts);
"""

_INSERT_DECISION = (
    f"INSERT OR IGNORE INTO decisions ({', '.join(DECISION_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(DECISION_COLUMNS))})"
)
_INSERT_FEEDBACK = f"INSERT INTO feedback ({', '.join(FEEDBACK_COLUMNS)}) VALUES (?, ?, ?, ?)"


def default_path() -> Path:
    """``<MATINEE_HOME>/events/events.db`` under the settings in force."""
    from matinee.config import load_settings

    return Path(load_settings().home) / "events" / "events.db"


class EventLog:
    """A durable, append-only log of decisions and feedback.

    Parameters
    ----------
    path
        The log's SQLite file; default ``<MATINEE_HOME>/events/events.db``.
    durability
        ``"relaxed"`` (default): an append returns at once. ``"strict"``: an append
        returns only after the batch holding it is committed and fsync'ed.
    flush_interval
        Seconds the writer gathers appends before committing them as one batch.
    max_pending
        Appends queued but not yet written beyond which an append waits (backpressure).

    Raises
    ------
    ParameterError
        An unknown durability or a non-positive interval; at append time, a bad record.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with EventLog(folder / "events.db") as log:
    ...     _ = log.append_decision({"decision_id": "d1", "unit_id": "m7", "context": [0.5],
    ...                              "candidates": [0, 1], "action": 1, "propensity": 0.5})
    ...     log.append_feedback({"decision_id": "d1", "event": "play", "reward": 1.0})
    >>> EventLog(folder / "events.db").joined()[["decision_id", "action", "reward"]].values.tolist()
    [['d1', 1, 1.0]]
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        durability: str = "relaxed",
        flush_interval: float = 0.005,
        max_pending: int = 200_000,
    ) -> None:
        if durability not in DURABILITIES:
            raise ParameterError(
                f"durability must be one of {', '.join(DURABILITIES)}, not {durability!r}", parameter="durability"
            )
        if not flush_interval > 0:
            raise ParameterError(f"flush_interval must be positive, not {flush_interval!r}", parameter="flush_interval")
        self.path = Path(path) if path is not None else default_path()
        self.durability = durability
        self.flush_interval = float(flush_interval)
        self.max_pending = int(max_pending)
        self._cond = threading.Condition()
        self._pending: list[tuple[bool, tuple[Any, ...]]] = []
        self._seq = 0  # appends accepted
        self._written = 0  # appends committed (or failed)
        self._checked = 0  # appends whose failures flush() has reported
        self._first_at = 0.0
        self._urgent = False
        self._closing = False
        self._closed = False
        self._failures: list[tuple[int, int, StorageError]] = []
        self._thread: threading.Thread | None = None
        self._reader: sqlite3.Connection | None = None

    # -- writing ---------------------------------------------------------------------
    def append_decision(self, record: Any) -> str:
        """Append one decision; returns its ``decision_id``.

        ``record`` is a mapping or an object with the attributes ``decision_id, ts,
        unit_id, context, candidates, action, propensity`` and optionally ``endpoint,
        model, model_version, arm``. A missing ``ts`` is now. A decision id already
        in the log is ignored (the first record wins), so retries are safe.

        Raises
        ------
        ParameterError
            The record is malformed; the message names the field. Nothing is written.
        StorageError
            In strict mode, the batch holding the record could not be written.
        """
        row = decision_row(record)
        self._append([(True, row)])
        return str(row[0])

    def append_feedback(self, record: Any) -> None:
        """Append one feedback event: ``decision_id``, ``ts`` (default now), ``event`` (default
        ``"reward"``) and a finite ``reward``. Raises like :meth:`append_decision`."""
        self._append([(False, feedback_row(record))])

    def append_many(self, decisions: Iterable[Any] = (), feedback: Iterable[Any] = ()) -> None:
        """Append several records at once: all are validated first, so one bad record
        appends none of them."""
        items = [(True, decision_row(r)) for r in decisions] + [(False, feedback_row(r)) for r in feedback]
        if items:
            self._append(items)

    def append_rows(self, decisions: Iterable[tuple[Any, ...]]) -> None:
        """Append decisions given as rows that :func:`decision_row` or :func:`decision_rows` made
        (already checked, so not checked again); raises like :meth:`append_decision`."""
        items = [(True, row) for row in decisions]
        if items:
            self._append(items)

    def _append(self, items: list[tuple[bool, tuple[Any, ...]]]) -> None:
        with self._cond:
            if self._closing:
                raise StorageError(f"the event log {self.path} is closed", path=str(self.path))
            if self._thread is None:
                self._start()
            while len(self._pending) >= self.max_pending and not self._closing:
                self._urgent = True
                self._cond.notify_all()
                self._cond.wait()
            if not self._pending:
                self._first_at = time.monotonic()
                self._cond.notify_all()
            self._pending.extend(items)
            self._seq += len(items)
            upto = self._seq
        if self.durability == "strict":
            self._wait_written(upto)

    def _start(self) -> None:
        conn = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            enable_wal(conn, self.path, 30)
            conn.execute(f"PRAGMA synchronous={'FULL' if self.durability == 'strict' else 'NORMAL'}")
            conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            if conn is not None:
                conn.close()
            raise StorageError(f"cannot open the event log {self.path}: {exc}", path=str(self.path)) from exc
        self._thread = threading.Thread(target=self._run, args=(conn,), name="matinee-event-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _run(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._closing:
                        self._cond.wait()
                    if not self._pending:
                        return
                    deadline = self._first_at + self.flush_interval
                    while not (self._urgent or self._closing):
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._cond.wait(remaining)
                    batch, self._pending = self._pending, []
                    self._urgent = False
                    upto = self._seq
                    self._cond.notify_all()
                error = self._write(conn, batch)
                with self._cond:
                    if error is not None:
                        self._failures = [*self._failures[-99:], (upto - len(batch), upto, error)]
                    self._written = upto
                    self._cond.notify_all()
        finally:
            conn.close()

    def _write(self, conn: sqlite3.Connection, batch: list[tuple[bool, tuple[Any, ...]]]) -> StorageError | None:
        decisions = [row for is_decision, row in batch if is_decision]
        feedback = [row for is_decision, row in batch if not is_decision]
        for attempt in range(3):
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if decisions:
                        conn.executemany(_INSERT_DECISION, decisions)
                    if feedback:
                        conn.executemany(_INSERT_FEEDBACK, feedback)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                return None
            except sqlite3.OperationalError as exc:  # locked or busy: another writer; try again
                if attempt == 2:
                    return StorageError(f"cannot write to the event log {self.path}: {exc}", path=str(self.path))
                time.sleep(0.05 * (attempt + 1))
            except Exception as exc:  # never let the writer die with appends waiting on it
                return StorageError(f"cannot write to the event log {self.path}: {exc}", path=str(self.path))
        return None  # pragma: no cover

    def _wait_written(self, upto: int, check: bool = True) -> None:
        with self._cond:
            while self._written < upto:
                self._cond.wait()
            for low, high, error in self._failures if check else ():
                if low < upto <= high:
                    raise error

    def flush(self) -> None:
        """Write everything appended so far now, and return once it is committed.

        Raises
        ------
        StorageError
            In relaxed mode, a batch written since the last flush failed (its records are lost).
        """
        with self._cond:
            if self._thread is None:
                return
            upto = self._seq
            self._urgent = True
            self._cond.notify_all()
        self._wait_written(upto, check=False)
        with self._cond:
            # In strict mode each failure was already raised to the appends it held.
            failures = [f for f in self._failures if self._checked < f[1] <= upto and self.durability == "relaxed"]
            self._checked = max(self._checked, upto)
        if failures:
            raise failures[-1][2]

    def close(self) -> None:
        """Flush everything appended and stop the writer. Closing twice is harmless."""
        with self._cond:
            if self._closed:
                return
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
            atexit.unregister(self.close)
        with self._cond:
            self._closed = True
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------
    def has_decision(self, decision_id: str) -> bool:
        """Whether a decision with this id is committed to the log, by this or any other process.

        Appends of this instance still waiting for their batch are not seen; a
        server remembers its own recent decisions and asks the log about older ones.
        """
        with self._cond:
            if self._reader is None:
                if not self.path.exists():
                    return False
                self._reader = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, timeout=30,
                                               check_same_thread=False)
            reader = self._reader
        try:
            row = reader.execute("SELECT 1 FROM decisions WHERE decision_id = ?", (decision_id,)).fetchone()
        except sqlite3.Error as exc:
            if "no such table" in str(exc):
                return False
            raise StorageError(f"cannot read the event log {self.path}: {exc}", path=str(self.path)) from exc
        return row is not None

    def _query(self, sql: str, params: tuple[Any, ...], columns: Iterable[str]) -> pd.DataFrame:
        import pandas as pd  # only readers pay for it: a serving process never imports it

        if self._thread is not None and not self._closing:
            self.flush()
        if not self.path.exists():
            return pd.DataFrame(columns=list(columns))
        try:
            conn = sqlite3.connect(f"{self.path.as_uri()}?mode=rw", uri=True, timeout=30)
        except sqlite3.Error:
            conn = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            frame = pd.read_sql_query(sql, conn, params=params)
        except (sqlite3.Error, pd.errors.DatabaseError) as exc:
            if "no such table" in str(exc):
                return pd.DataFrame(columns=list(columns))
            raise StorageError(f"cannot read the event log {self.path}: {exc}", path=str(self.path)) from exc
        finally:
            conn.close()
        return frame

    @staticmethod
    def _window(since: Any, until: Any, column: str = "ts") -> tuple[str, tuple[Any, ...]]:
        low, high = parse_time(since, "since"), parse_time(until, "until")
        clauses, params = [], []
        if low is not None:
            clauses.append(f"{column} >= ?")
            params.append(low)
        if high is not None:
            clauses.append(f"{column} < ?")
            params.append(high)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)

    @staticmethod
    def _decode(frame: pd.DataFrame) -> pd.DataFrame:
        for name in ("context", "candidates", "action"):
            if name in frame:
                frame[name] = [json.loads(v) for v in frame[name]]
        return frame

    def read_decisions(self, since: Any = None, until: Any = None) -> pd.DataFrame:
        """Decisions with ``since <= ts < until`` (either bound optional), oldest first.

        Bounds are epoch seconds, :class:`~datetime.datetime` or ISO 8601 strings.
        ``context``, ``candidates`` and ``action`` are decoded from JSON.
        """
        where, params = self._window(since, until)
        sql = f"SELECT {', '.join(DECISION_COLUMNS)} FROM decisions{where} ORDER BY ts, rowid"
        return self._decode(self._query(sql, params, DECISION_COLUMNS))

    def read_feedback(self, since: Any = None, until: Any = None) -> pd.DataFrame:
        """Feedback events with ``since <= ts < until``, in the order they were appended."""
        where, params = self._window(since, until)
        sql = f"SELECT {', '.join(FEEDBACK_COLUMNS)} FROM feedback{where} ORDER BY rowid"
        return self._query(sql, params, FEEDBACK_COLUMNS)

    def joined(self, since: Any = None, until: Any = None) -> pd.DataFrame:
        """One row per decision (``since <= ts < until``) with its feedback summed.

        Adds ``reward`` (sum of the decision's feedback rewards, 0 without feedback),
        ``n_feedback``, ``last_event`` and ``last_feedback_ts`` (the latest feedback,
        or missing). Feedback whose decision is not in the log is left out.
        """
        where, params = self._window(since, until, "d.ts")
        columns = ", ".join(f"d.{c}" for c in DECISION_COLUMNS)
        sql = (
            f"SELECT {columns}, COALESCE(f.reward, 0.0) AS reward, COALESCE(f.n_feedback, 0) AS n_feedback, "
            "f.last_event AS last_event, f.last_feedback_ts AS last_feedback_ts FROM decisions d LEFT JOIN ("
            "SELECT decision_id, SUM(reward) AS reward, COUNT(*) AS n_feedback, MAX(ts) AS last_feedback_ts, "
            "event AS last_event FROM feedback GROUP BY decision_id) f ON f.decision_id = d.decision_id"
            f"{where} ORDER BY d.ts, d.rowid"
        )
        extra = ("reward", "n_feedback", "last_event", "last_feedback_ts")
        frame = self._decode(self._query(sql, params, (*DECISION_COLUMNS, *extra)))
        frame["reward"] = frame["reward"].astype("float64")
        frame["n_feedback"] = frame["n_feedback"].astype("int64")
        return frame

    def stats(self) -> dict[str, Any]:
        """Counts and time ranges: ``decisions``, ``feedback``, ``first``/``last`` timestamps of each."""
        sql = (
            "SELECT (SELECT COUNT(*) FROM decisions) AS decisions, (SELECT MIN(ts) FROM decisions) AS first_decision, "
            "(SELECT MAX(ts) FROM decisions) AS last_decision, (SELECT COUNT(*) FROM feedback) AS feedback, "
            "(SELECT MIN(ts) FROM feedback) AS first_feedback, (SELECT MAX(ts) FROM feedback) AS last_feedback"
        )
        names = ("decisions", "first_decision", "last_decision", "feedback", "first_feedback", "last_feedback")
        frame = self._query(sql, (), names)
        row = {n: None for n in names} if frame.empty else frame.iloc[0].to_dict()
        out: dict[str, Any] = {"path": str(self.path)}
        for name in names:
            value = row.get(name)
            if name in ("decisions", "feedback"):
                out[name] = int(value or 0)
            else:
                out[name] = None if value is None or value != value else float(value)  # None or NaN
        return out

    def export_parquet(self, path: str | Path, since: Any = None, until: Any = None, *, what: str = "joined") -> int:
        """Write ``what`` (``"joined"``, ``"decisions"`` or ``"feedback"``) to a Parquet file.

        ``candidates`` (and ``action`` if its values are not all of one type) are
        written as JSON text. Returns the number of rows written.

        Raises
        ------
        ParameterError
            An unknown ``what`` or a bad time bound.
        """
        readers = {"joined": self.joined, "decisions": self.read_decisions, "feedback": self.read_feedback}
        if what not in readers:
            raise ParameterError(f"what must be one of {', '.join(readers)}, not {what!r}", parameter="what")
        frame = readers[what](since, until)
        if "candidates" in frame:
            frame["candidates"] = [json.dumps(v) for v in frame["candidates"]]
        if "action" in frame and len({type(v) for v in frame["action"]}) > 1:
            frame["action"] = [json.dumps(v) for v in frame["action"]]
        if "model_version" in frame:
            frame["model_version"] = [None if v is None or v != v else str(v) for v in frame["model_version"]]
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(target, index=False)
        return len(frame)
