"""Reading an experiment's exposures out of the event log fast: chunked text scans and an incremental cache.

SQLite builds each chunk of rows as text (``group_concat``), one text per arm, and
Arrow parses it, so no Python object is made per row; chunks are read on several
threads, and each arm's members are counted on a dictionary of them (one hash of
each row's member, no key strings built). :func:`cached_scan` keeps the per-member
sums and the last row read of each table, so the next read takes only what was
appended since.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
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


def members(shown: Any, fed: Any) -> pd.DataFrame:
    """Per member and arm: impressions, plays, reward and played, from the sums :func:`scan` returns.

    Feedback sums of a member and arm with no impression are left out. Rows come arm by
    arm (in the order of ``shown``), members in the order they were first seen.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    frames = []
    fed_arms = _by_arm(fed)
    for arm, rows in _by_arm(shown).items():
        units = rows["unit_id"]
        n = len(units)
        plays: np.ndarray[Any, Any] = np.zeros(n)
        reward: np.ndarray[Any, Any] = np.zeros(n)
        other = fed_arms.get(arm)
        if other is not None and len(other):
            where = pc.index_in(other["unit_id"], value_set=units)
            found = where.is_valid().to_numpy(zero_copy_only=False)
            at = where.drop_null().to_numpy().astype(np.intp, copy=False)
            plays = np.bincount(at, weights=other["plays"].to_numpy()[found], minlength=n)
            reward = np.bincount(at, weights=other["reward"].to_numpy()[found], minlength=n)
        # Arrow's strings handed to pandas as they are (pandas' own string type, or Python strings)
        frames.append(pd.DataFrame({
            "unit_id": units.to_pandas(), "arm": pa.repeat(pa.scalar(arm, pa.string()), n).to_pandas(),
            "impressions": rows["impressions"].to_numpy().astype(np.float64), "plays": plays, "reward": reward}))
    if not frames:
        return pd.DataFrame({"unit_id": pd.Series(dtype=object), "arm": pd.Series(dtype=object),
                             **{c: pd.Series(dtype=np.float64) for c in VALUES}})
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    frame["played"] = (frame["plays"] > 0).astype(np.float64)
    return frame[["unit_id", "arm", *VALUES]]


_FIELD = "\x1e"
#: Rows of the log read per statement: bounds the memory of one chunk of text.
CHUNK_ROWS = 2_000_000
#: Columns of the sums :func:`scan` returns, besides ``arm`` and ``unit_id``.
SHOWN = ("impressions",)
FED = ("plays", "reward")


def scan(path: Path, where: str, params: Mapping[str, Any], after: tuple[int, int] | None = None,
         arms: Sequence[str] = ()) -> tuple[Any, Any, tuple[int, int]]:
    """Impressions, play events and reward per arm and member, in chunks of rows.

    SQLite builds each chunk as text (``group_concat``) and Arrow parses it, so no
    Python object is made per row; chunks are read by several threads (SQLite runs a
    statement without holding the GIL). With ``arms`` (the arms ``where`` admits),
    each arm's members come as a text of their own, so no row carries its arm; with
    none, each row names its arm (``NULL`` read as ``''``). Each arm's rows are then
    counted or summed by member on a dictionary of its members. The row ranges are
    fixed first, so rows appended during the scan are not half-counted.

    With ``after`` (the marks a previous scan returned), only decisions and feedback
    appended since are read. Returns two Arrow tables -- ``arm``, ``unit_id``,
    ``impressions``; ``arm``, ``unit_id``, ``plays``, ``reward``; one row per arm and
    member -- and the marks: the last row of each table at the time of the scan (every
    row up to them is counted or irrelevant).
    """
    empty = _table(SHOWN), _table(FED), (0, 0) if after is None else after
    if not path.exists():
        return empty
    play = f"(CASE WHEN {PLAY} THEN 1 ELSE 0 END)"
    fed_row = f"d.unit_id || char(30) || {play} || char(30) || f.reward"
    arm_params = {f"scan_arm{i}": arm for i, arm in enumerate(arms)}
    if arms:
        shown_cols = ", ".join(_lines(f"CASE WHEN d.arm = :{name} THEN d.unit_id END") for name in arm_params)
        fed_cols = ", ".join(_lines(f"CASE WHEN d.arm = :{name} THEN {fed_row} END") for name in arm_params)
    else:
        shown_cols = _lines("COALESCE(d.arm, '') || char(30) || d.unit_id")
        fed_cols = _lines(f"COALESCE(d.arm, '') || char(30) || {fed_row}")
    shown_sql = f"SELECT {shown_cols} FROM decisions d WHERE d.rowid >= :lo AND d.rowid < :hi AND {where}"
    fed_sql = (f"SELECT {fed_cols} FROM feedback f JOIN decisions d ON d.decision_id = f.decision_id "
               f"WHERE f.rowid >= :lo AND f.rowid < :hi AND ({PLAY} OR f.reward != 0) AND {where} "
               "AND d.rowid <= :last_decision AND f.ts >= :early AND f.ts < :feedback_until")
    window = {"since": params["since"], "until": params["until"], "early": params["since"] - DAY,
              "feedback_until": params["feedback_until"]}
    # The rows that can matter, found on the time indexes: decisions of the window, and feedback
    # from the window's start (less a day of clock skew) to its end; each table on its own thread.
    ranges = {"decisions": "SELECT MIN(rowid), MAX(rowid) FROM decisions WHERE ts >= :since AND ts < :until",
              "feedback": "SELECT MIN(rowid), MAX(rowid) FROM feedback WHERE ts >= :early AND ts < :feedback_until"}

    def query(sql: str, values: Mapping[str, Any]) -> Any:
        with _reader(path) as conn:
            return conn.execute(sql, values).fetchone()

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(os.cpu_count() or 1, 4))) as pool:
        try:
            marks = query("SELECT (SELECT COALESCE(MAX(rowid), 0) FROM decisions), "
                          "(SELECT COALESCE(MAX(rowid), 0) FROM feedback)", {})
            if after is not None:
                bounds = {"decisions": (after[0] + 1, marks[0]), "feedback": (after[1] + 1, marks[1])}
            else:
                found = dict(zip(ranges, pool.map(lambda sql: query(sql, window), ranges.values()), strict=True))
                # Rows appended since the marks were taken are left to the next scan.
                bounds = {table: (lo, hi if hi is None else min(hi, mark))
                          for (table, (lo, hi)), mark in zip(found.items(), marks, strict=True)}
        except sqlite3.Error as exc:
            if "no such table" in str(exc):
                return empty
            raise StorageError(f"cannot read the event log {path}: {exc}", path=str(path)) from exc
        if after is not None and (marks[0] < after[0] or marks[1] < after[1]):
            raise StorageError(f"the event log {path} holds fewer rows than when it was last read: it was replaced",
                               path=str(path))
        values = {**params, **arm_params, "last_decision": marks[0], "early": params["since"] - DAY}
        jobs = [(table, sql, start, min(start + CHUNK_ROWS, bounds[table][1] + 1))
                for table, sql in (("decisions", shown_sql), ("feedback", fed_sql)) if bounds[table][0] is not None
                for start in range(bounds[table][0], bounds[table][1] + 1, CHUNK_ROWS)]

        def run(job: tuple[str, str, int, int]) -> tuple[str, list[tuple[str, Any]]]:
            table, sql, start, stop = job
            try:
                with _reader(path) as conn:
                    texts = conn.execute(sql, {**values, "lo": start, "hi": stop}).fetchone()
            except sqlite3.Error as exc:
                raise StorageError(f"cannot read the event log {path}: {exc}", path=str(path)) from exc
            names = ["unit_id"] if table == "decisions" else ["unit_id", *FED]
            if arms:
                return table, [(arm, _parse(text, names)) for arm, text in zip(arms, texts, strict=True)
                               if text is not None]
            (text,) = texts
            return table, [] if text is None else _split_arms(_parse(text, ["arm", *names]))

        pieces: dict[str, dict[str, list[Any]]] = {"decisions": {}, "feedback": {}}
        for table, parts in pool.map(run, jobs):
            for arm, part in parts:
                pieces[table].setdefault(arm, []).append(part)
        shown = list(pool.map(lambda item: _group(item[0], item[1], ()), pieces["decisions"].items()))
        fed = list(pool.map(lambda item: _group(item[0], item[1], FED), pieces["feedback"].items()))
        return _concat(shown, SHOWN), _concat(fed, FED), marks


def _lines(value: str) -> str:
    """SQL of the values of ``value`` (``NULL`` ones left out) as lines, each ended by a newline, in bytes
    (``NULL`` if there is none): Python takes them as they are, without decoding them."""
    return f"CAST(group_concat({value}, char(10)) || char(10) AS BLOB)"


def _parse(text: bytes, names: list[str]) -> Any:
    """Arrow columns ``names`` of lines of fields (the last line ended too, so an empty one is kept)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    return pacsv.read_csv(  # one thread: the chunks are parsed on several already
        io.BytesIO(text), read_options=pacsv.ReadOptions(column_names=names, use_threads=False),
        parse_options=pacsv.ParseOptions(delimiter=_FIELD, quote_char=False, double_quote=False,
                                         ignore_empty_lines=False),
        convert_options=pacsv.ConvertOptions(column_types={name: pa.float64() if name in FED else pa.string()
                                                           for name in names}))


def _split_arms(table: Any) -> list[tuple[str, Any]]:
    """An Arrow table with an ``arm`` column as (arm, the other columns of its rows), arms in order of appearance."""
    import pyarrow.compute as pc

    arm = table["arm"]
    rest = table.drop_columns(["arm"])
    return [(name, rest.filter(pc.equal(arm, name))) for name in pc.unique(arm).to_pylist()]


def _group(arm: str, parts: list[Any], columns: Sequence[str]) -> Any:
    """Rows of one arm (Arrow tables with ``unit_id`` and ``columns``) summed by member; with no
    ``columns``, counted as ``impressions``. Members in the order they were first seen."""
    import pyarrow as pa

    table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    encoded = table["unit_id"].combine_chunks().dictionary_encode()
    units = encoded.dictionary
    at = encoded.indices.to_numpy()
    n = len(units)
    sums = {name: np.bincount(at, weights=table[name].to_numpy(), minlength=n) for name in columns} if columns \
        else {"impressions": np.bincount(at, minlength=n).astype(np.float64)}
    return pa.table({"arm": pa.repeat(pa.scalar(arm, pa.string()), n), "unit_id": units,
                     **{name: pa.array(value) for name, value in sums.items()}})


def _table(columns: Sequence[str]) -> Any:
    import pyarrow as pa

    return pa.table({"arm": pa.array([], pa.string()), "unit_id": pa.array([], pa.string()),
                     **{name: pa.array([], pa.float64()) for name in columns}})


def _concat(tables: list[Any], columns: Sequence[str]) -> Any:
    import pyarrow as pa

    return pa.concat_tables(tables) if tables else _table(columns)


def _by_arm(table: Any) -> dict[str, Any]:
    """An Arrow table of sums as one table per arm, arms in order of appearance."""
    import pyarrow.compute as pc

    if not len(table):
        return {}
    arm = table["arm"].combine_chunks()
    ends = np.flatnonzero(pc.not_equal(arm[1:], arm[:-1]).to_numpy(zero_copy_only=False)) + 1
    starts = [0, *ends.tolist()]
    stops = [*ends.tolist(), len(table)]
    names = [arm[a].as_py() for a in starts]
    if len(set(names)) < len(names):  # an arm's rows apart: gathered
        return {name: rows.combine_chunks() for name, rows in _split_arms(table)}
    return {name: table.slice(a, b - a).combine_chunks() for name, a, b in zip(names, starts, stops, strict=True)}


def _add(old: Any, new: Any, columns: Sequence[str]) -> Any:
    """Two tables of sums (as :func:`scan` returns) added member by member."""
    import pyarrow as pa

    if not len(new):
        return old
    if not len(old):
        return new
    both = pa.concat_tables([old, new])
    parts: dict[str, list[Any]] = {}
    for arm, rows in _split_arms(both):
        parts.setdefault(arm, []).append(rows)
    return _concat([_group(arm, rows, columns) for arm, rows in parts.items()], columns)


def cached_scan(folder: Path, path: Path, where: str, params: Mapping[str, Any], arms: Sequence[str] = ()
                ) -> tuple[Any, Any]:
    """:func:`scan` that keeps its sums in ``folder`` and reads only the rows appended since the last call."""
    import pyarrow.parquet as pq

    key = {"format": 2, "log": str(path.resolve()), "where": where, "arms": list(arms),
           "params": {k: v for k, v in sorted(params.items()) if k != "feedback_until"}}
    state_file = folder / "state.json"
    after: tuple[int, int] | None = None
    old: tuple[Any, Any] | None = None
    try:
        state = json.loads(state_file.read_text())
        if state["key"] == json.loads(json.dumps(key)):
            old = (pq.read_table(folder / state["shown"]), pq.read_table(folder / state["fed"]))
            after = (int(state["marks"][0]), int(state["marks"][1]))
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no usable cache: read everything
    try:
        shown, fed, marks = scan(path, where, params, after, arms)
    except StorageError:
        if after is None:
            raise
        after, old = None, None  # the log was replaced: read it all again
        shown, fed, marks = scan(path, where, params, arms=arms)
    if old is not None:
        shown, fed = _add(old[0], shown, SHOWN), _add(old[1], fed, FED)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stamp = f"{marks[0]}-{marks[1]}-{os.getpid()}"
        pq.write_table(shown, folder / f"shown-{stamp}.parquet")
        pq.write_table(fed, folder / f"fed-{stamp}.parquet")
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


@contextmanager
def _reader(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30, check_same_thread=False)
    try:
        yield conn
    finally:
        conn.close()
