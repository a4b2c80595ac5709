"""Reading an experiment's exposures out of the event log fast: chunked text scans and an incremental cache.

SQLite builds each chunk of rows as one text (``group_concat``) and Arrow or
pandas' C parser count it, so no Python object is made per row; chunks are read
on several threads. :func:`cached_scan` keeps the per-member sums and the last
row read of each table, so the next read takes only what was appended since.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matinee.errors import StorageError

DAY = 86_400.0
#: A play: a feedback event ``play`` or ``play:ITEM``.
PLAY = "(f.event = 'play' OR f.event LIKE 'play:%')"
VALUES = ("impressions", "plays", "reward", "played")


def members(shown: pd.DataFrame, fed: pd.DataFrame) -> pd.DataFrame:
    if shown.empty:
        return pd.DataFrame({"unit_id": pd.Series(dtype=object), "arm": pd.Series(dtype=object),
                             **{c: pd.Series(dtype=np.float64) for c in VALUES}})
    frame = shown.join(fed, how="left") if not fed.empty else shown.assign(plays=0.0, reward=0.0)
    frame = frame.fillna({"plays": 0.0, "reward": 0.0}).reset_index()
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = pc.split_pattern(pa.array(frame.pop("key").to_numpy(), type=pa.string()), _UNIT_ARM, max_splits=1)
    frame.insert(0, "unit_id", pc.list_element(parts, 0).to_numpy(zero_copy_only=False))
    frame.insert(1, "arm", pc.list_element(parts, 1).to_numpy(zero_copy_only=False))
    frame["played"] = (frame["plays"] > 0).astype(np.float64)
    return frame[["unit_id", "arm", *VALUES]]


_UNIT_ARM = "\x1f"
_FIELD = "\x1e"
#: Rows of the log read per statement: bounds the memory of one chunk of text.
CHUNK_ROWS = 2_000_000


def scan(path: Path, where: str, params: Mapping[str, Any], after: tuple[int, int] | None = None
          ) -> tuple[pd.DataFrame, pd.DataFrame, tuple[int, int]]:
    """Impressions, play events and reward per ``unit_id \\x1f arm`` key, in chunks of rows.

    SQLite builds each chunk as one text (``group_concat``) and Arrow counts it, so
    no Python object is made per row; chunks are read by several threads (SQLite
    runs a statement without holding the GIL). The row ranges are fixed first, so
    rows appended during the scan are not half-counted.

    With ``after`` (the marks a previous scan returned), only decisions and feedback
    appended since are read. Returns the two frames and the marks: the last row of
    each table at the time of the scan (every row up to them is counted or irrelevant).
    """
    empty = pd.DataFrame(), pd.DataFrame(), (0, 0) if after is None else after
    if not path.exists():
        return empty
    key = "d.unit_id || char(31) || COALESCE(d.arm, '')"
    shown_sql = (f"SELECT group_concat({key}, char(10)) FROM decisions d "
                 f"WHERE d.rowid >= :lo AND d.rowid < :hi AND {where}")
    fed_sql = (f"SELECT group_concat({key} || char(30) || (CASE WHEN {PLAY} THEN 1 ELSE 0 END) || char(30) || "
               "f.reward, char(10)) FROM feedback f JOIN decisions d ON d.decision_id = f.decision_id "
               f"WHERE f.rowid >= :lo AND f.rowid < :hi AND ({PLAY} OR f.reward != 0) AND {where} "
               "AND d.rowid <= :last_decision AND f.ts >= :early AND f.ts < :feedback_until")
    try:
        with _reader(path) as conn:
            # The rows that can matter, found on the time indexes: decisions of the window, and
            # feedback from the window's start (less a day of clock skew) to its end.
            window = {"since": params["since"], "until": params["until"], "early": params["since"] - DAY,
                      "feedback_until": params["feedback_until"]}
            conn.execute("BEGIN")  # one snapshot for the bounds and the marks
            marks = (conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM decisions").fetchone()[0],
                     conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM feedback").fetchone()[0])
            if after is not None:
                bounds = {"decisions": (after[0] + 1, marks[0]), "feedback": (after[1] + 1, marks[1])}
            else:
                bounds = {
                    "decisions": conn.execute("SELECT MIN(rowid), MAX(rowid) FROM decisions WHERE ts >= :since "
                                              "AND ts < :until", window).fetchone(),
                    "feedback": conn.execute("SELECT MIN(rowid), MAX(rowid) FROM feedback WHERE ts >= :early "
                                             "AND ts < :feedback_until", window).fetchone(),
                }
            conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if "no such table" in str(exc):
            return empty
        raise StorageError(f"cannot read the event log {path}: {exc}", path=str(path)) from exc
    if after is not None and (marks[0] < after[0] or marks[1] < after[1]):
        raise StorageError(f"the event log {path} holds fewer rows than when it was last read: it was replaced",
                           path=str(path))
    values = {**params, "last_decision": marks[0], "early": params["since"] - DAY}
    jobs = [(table, sql, start) for table, sql in (("decisions", shown_sql), ("feedback", fed_sql))
            if bounds[table][0] is not None
            for start in range(bounds[table][0], bounds[table][1] + 1, CHUNK_ROWS)]

    def run(job: tuple[str, str, int]) -> tuple[str, Any]:
        table, sql, start = job
        try:
            with _reader(path) as conn:
                (text,) = conn.execute(sql, {**values, "lo": start, "hi": start + CHUNK_ROWS}).fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the event log {path}: {exc}", path=str(path)) from exc
        if not text:
            return table, None
        import pyarrow as pa
        import pyarrow.csv as pacsv

        # Arrow parses the text (no Python object per row) and counts or sums by key.
        names = ["key"] if table == "decisions" else ["key", "plays", "reward"]
        parsed = pacsv.read_csv(
            io.BytesIO(text.encode()), read_options=pacsv.ReadOptions(column_names=names),
            parse_options=pacsv.ParseOptions(delimiter=_FIELD, quote_char=False, double_quote=False),
            convert_options=pacsv.ConvertOptions(column_types={"key": pa.string(), "plays": pa.float64(),
                                                               "reward": pa.float64()}))
        if table == "decisions":
            return table, _sums(parsed, {"key": "count"}, {"key_count": "impressions"})
        return table, _sums(parsed, {"plays": "sum", "reward": "sum"}, {"plays_sum": "plays", "reward_sum": "reward"})

    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa

    counts: list[Any] = []
    sums: list[Any] = []
    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1, 4))) as pool:
        for table, result in pool.map(run, jobs):
            if result is not None:
                (counts if table == "decisions" else sums).append(result)
    shown = pd.DataFrame({"impressions": pd.Series(dtype=np.float64)})
    if counts:
        merged = pa.concat_tables(counts)
        if len(counts) > 1:
            merged = _sums(merged, {"impressions": "sum"}, {"impressions_sum": "impressions"})
        shown = pd.DataFrame({"impressions": merged["impressions"].to_numpy().astype(np.float64)},
                             index=merged["key"].to_pandas())
    shown.index.name = "key"
    fed = pd.DataFrame({"plays": pd.Series(dtype=np.float64), "reward": pd.Series(dtype=np.float64)})
    if sums:
        merged = pa.concat_tables(sums)
        if len(sums) > 1:
            merged = _sums(merged, {"plays": "sum", "reward": "sum"}, {"plays_sum": "plays", "reward_sum": "reward"})
        fed = pd.DataFrame({"plays": merged["plays"].to_numpy(), "reward": merged["reward"].to_numpy()},
                           index=merged["key"].to_pandas())
    fed.index.name = "key"
    return shown, fed, marks


def cached_scan(folder: Path, path: Path, where: str, params: Mapping[str, Any]
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`scan` that keeps its sums in ``folder`` and reads only the rows appended since the last call."""
    key = {"format": 1, "log": str(path.resolve()), "where": where,
           "params": {k: v for k, v in sorted(params.items()) if k != "feedback_until"}}
    state_file = folder / "state.json"
    after: tuple[int, int] | None = None
    old: tuple[pd.DataFrame, pd.DataFrame] | None = None
    try:
        state = json.loads(state_file.read_text())
        if state["key"] == json.loads(json.dumps(key)):
            old = (pd.read_parquet(folder / state["shown"]), pd.read_parquet(folder / state["fed"]))
            after = (int(state["marks"][0]), int(state["marks"][1]))
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no usable cache: read everything
    try:
        shown, fed, marks = scan(path, where, params, after)
    except StorageError:
        if after is None:
            raise
        after, old = None, None  # the log was replaced: read it all again
        shown, fed, marks = scan(path, where, params)
    if old is not None:
        shown = old[0].add(shown, fill_value=0.0) if not shown.empty else old[0]
        fed = old[1].add(fed, fill_value=0.0) if not fed.empty else old[1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stamp = f"{marks[0]}-{marks[1]}-{os.getpid()}"
        shown.to_parquet(folder / f"shown-{stamp}.parquet")
        fed.to_parquet(folder / f"fed-{stamp}.parquet")
        temp = folder / f"state-{stamp}.json"
        temp.write_text(json.dumps({"key": key, "marks": list(marks), "shown": f"shown-{stamp}.parquet",
                                    "fed": f"fed-{stamp}.parquet"}))
        temp.replace(state_file)
        for stale in folder.glob("*.parquet"):
            if stamp not in stale.name:
                stale.unlink(missing_ok=True)
    except OSError:
        pass  # a cache that cannot be written only costs the next read
    return shown, fed


def _sums(table: Any, how: Mapping[str, str], names: Mapping[str, str]) -> Any:
    """An Arrow table grouped by ``key``: each column of ``how`` aggregated, renamed by ``names``."""
    import pyarrow as pa

    grouped = table.group_by("key").aggregate(list(how.items()))
    return pa.table({"key": grouped["key"], **{new: grouped[old] for old, new in names.items()}})


@contextmanager
def _reader(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30, check_same_thread=False)
    try:
        yield conn
    finally:
        conn.close()
