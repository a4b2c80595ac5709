"""Searching runs for the dashboard and the API: filters, sorting by a metric's latest value, paging.

Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine
from test_migrations import alembic_config

from matinee.core.storage.metadata import COMPLETED, FAILED, MetadataStore
from matinee.errors import ParameterError


@pytest.fixture
def meta(any_meta: MetadataStore) -> MetadataStore:
    """A fresh store of each dialect (the shared ``any_meta`` fixture)."""
    return any_meta


def test_latest_metric_is_the_highest_step_then_the_newest(meta: MetadataStore) -> None:
    run = meta.create_run("F", "u")
    meta.log_metrics([(run, None, "loss", 0, 5.0, 1.0), (run, None, "loss", 3, 2.0, 2.0),
                      (run, None, "loss", 1, 9.0, 3.0)])
    assert meta.latest_metrics([run]) == {run: {"loss": 2.0}}
    meta.log_metrics([(run, None, "loss", 2, 7.0, 4.0)])  # an older step logged late changes nothing
    assert meta.latest_metrics([run])[run]["loss"] == 2.0
    meta.log_metrics([(run, None, "loss", 3, 1.5, 5.0)])  # the same step, newer: replaces
    assert meta.latest_metrics([run])[run]["loss"] == 1.5
    meta.log_metrics([(run, None, "acc", None, 0.1, 1.0), (run, None, "acc", None, 0.3, 2.0)])
    assert meta.latest_metrics([run, 999]) == {run: {"loss": 1.5, "acc": 0.3}, 999: {}}
    assert meta.metric_names() == ["acc", "loss"] == meta.metric_names([run])
    assert meta.metric_names([999]) == []


def _runs(meta: MetadataStore) -> list[int]:
    ids = []
    for i in range(12):
        run = meta.create_run("Train" if i % 2 else "Score", "alice" if i < 6 else "bob",
                              tags=["nightly"] if i % 3 == 0 else [])
        meta.log_metrics([(run, None, "ndcg", 0, float(i % 5), 1.0), (run, None, "ndcg", 1, float(i), 2.0)])
        if i != 11:
            meta.finish_run(run, COMPLETED if i % 4 else FAILED)
        ids.append(run)
    return ids


def test_search_filters_each_way_and_counts_every_match(meta: MetadataStore) -> None:
    ids = _runs(meta)
    rows, total = meta.search_runs()
    assert total == 12 and [r["id"] for r in rows] == ids[::-1]
    assert meta.search_runs(flow="Train")[1] == 6
    assert {r["flow_name"] for r in meta.search_runs(flow="Train")[0]} == {"Train"}
    assert meta.search_runs(user="bob")[1] == 6
    assert [r["id"] for r in meta.search_runs(tag="nightly", order="asc")[0]] == [ids[i] for i in (0, 3, 6, 9)]
    assert all(r["tags"] == ["nightly"] for r in meta.search_runs(tag="nightly")[0])
    failed = meta.search_runs(status="failed")[0]
    assert [r["id"] for r in failed] == [ids[i] for i in (8, 4, 0)]
    assert meta.search_runs(status="running")[1] == 1
    assert meta.search_runs(flow="Train", user="bob", status="completed")[1] == 2  # runs 7 and 9
    now = time.time()
    assert meta.search_runs(since=now - 60, until=now + 60)[1] == 12
    assert meta.search_runs(since=now + 60)[1] == 0
    assert meta.search_runs(flow="' OR 1=1 --")[1] == 0  # a value, never SQL
    assert meta.search_runs(tag="%")[1] == 0


def test_search_sorts_by_a_metric_and_pages(meta: MetadataStore) -> None:
    ids = _runs(meta)
    other = meta.create_run("Train", "carol")  # no ndcg: not in the metric's order
    rows, total = meta.search_runs(sort="metric:ndcg", limit=3)
    assert total == 12 and [r["sort_value"] for r in rows] == [11.0, 10.0, 9.0]
    assert [r["id"] for r in rows] == [ids[11], ids[10], ids[9]]
    page2, _ = meta.search_runs(sort="metric:ndcg", limit=3, offset=3)
    assert [r["sort_value"] for r in page2] == [8.0, 7.0, 6.0]
    low, _ = meta.search_runs(sort="metric:ndcg", order="asc", limit=2, flow="Train")
    assert [r["sort_value"] for r in low] == [1.0, 3.0]
    assert other not in [r["id"] for r in meta.search_runs(sort="metric:ndcg", limit=100)[0]]
    assert meta.search_runs(sort="metric:missing") == ([], 0)
    assert [r["id"] for r in meta.search_runs(sort="created", order="asc", limit=2)[0]] == ids[:2]


def test_nan_and_infinities_round_trip_and_nan_sorts_after_every_number(meta: MetadataStore) -> None:
    nan, inf = math.nan, math.inf
    values = [2.0, nan, -inf, inf, nan, 0.5]
    ids = [meta.create_run("Train", "u") for _ in values]
    meta.log_metrics([(run, None, "loss", 0, value, 1.0) for run, value in zip(ids, values, strict=True)])
    meta.log_metrics([(ids[0], None, "loss", -1, nan, 0.5)])  # an earlier step: not the latest
    read = [r["value"] for r in meta.metrics(ids[0], "loss")]
    assert read[0] == 2.0 and math.isnan(read[1])
    assert [meta.latest_metrics([run])[run]["loss"] for run in (ids[2], ids[3])] == [-inf, inf]
    assert math.isnan(meta.latest_metrics([ids[1]])[ids[1]]["loss"])

    def order(**kwargs: object) -> list[int]:
        return [r["id"] for r in meta.search_runs(sort="metric:loss", **kwargs)[0]]  # type: ignore[arg-type]

    numbers_down, numbers_up = [ids[3], ids[0], ids[5], ids[2]], [ids[2], ids[5], ids[0], ids[3]]
    assert order() == [*numbers_down, ids[4], ids[1]]  # NaN last in either order, newest first when desc
    assert order(order="asc") == [*numbers_up, ids[1], ids[4]]
    rows, total = meta.search_runs(sort="metric:loss", limit=3, offset=2)
    assert total == 6 and [r["id"] for r in rows] == [ids[5], ids[2], ids[4]]
    assert math.isnan(rows[2]["sort_value"]) and rows[1]["sort_value"] == -inf
    assert order(offset=5) == [ids[1]] and order(offset=4, order="asc") == [ids[1], ids[4]]
    assert order(offset=6) == [] and order(offset=3, limit=1) == [ids[2]]
    assert order(flow="Train", limit=100, order="asc") == [*numbers_up, ids[1], ids[4]]
    meta.log_metrics([(ids[1], None, "loss", 1, 9.0, 2.0)])  # a later number replaces the NaN
    assert order(limit=2) == [ids[3], ids[1]]  # after +inf


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"order": "sideways"}, "order"), ({"status": "done"}, "status"), ({"sort": "name"}, "sort"),
    ({"sort": "metric:"}, "sort"), ({"limit": 0}, "limit"), ({"limit": 5000}, "limit"), ({"limit": "x"}, "limit"),
    ({"offset": -1}, "offset"), ({"limit": 2.5}, "limit"),
])
def test_search_refuses_bad_arguments_naming_them(meta: MetadataStore, kwargs: dict, field: str) -> None:
    with pytest.raises(ParameterError) as info:
        meta.search_runs(**kwargs)
    assert info.value.parameter == field


def test_deleting_a_run_deletes_its_latest_metrics(meta: MetadataStore) -> None:
    run = meta.create_run("F", "u")
    meta.log_metrics([(run, None, "m", 0, 1.0, 1.0)])
    meta.delete_runs([run])
    assert meta.latest_metrics([run]) == {run: {}}
    assert meta.search_runs(sort="metric:m") == ([], 0)


def test_the_migration_fills_latest_metrics_from_metrics_already_stored(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0003")
        connection.exec_driver_sql(
            "INSERT INTO runs (id, flow_name, status, user_name, created_at) VALUES (1, 'F', 'completed', 'u', 0)")
        connection.exec_driver_sql(
            "INSERT INTO metrics (run_id, name, step, value, ts) VALUES"
            " (1, 'loss', 0, 3.0, 1), (1, 'loss', 2, 1.0, 2), (1, 'loss', 1, 2.0, 3), (1, 'acc', NULL, 0.5, 1),"
            " (1, 'acc', NULL, 0.7, 2)")
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "head")
    engine.dispose()
    meta = MetadataStore.open(f"sqlite:///{path}")
    assert meta.latest_metrics([1]) == {1: {"loss": 1.0, "acc": 0.7}}
    assert meta.search_runs(sort="metric:loss")[1] == 1
    meta.close()
