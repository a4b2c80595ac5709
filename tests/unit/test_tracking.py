"""Tracking: batched metric writes, validation, ``matinee.start_run`` and the flush at exit."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import matinee
from matinee.core.storage.metadata import COMPLETED, FAILED, RUNNING, MetadataStore
from matinee.core.store import open_store
from matinee.core.tracking.tracker import MetricBuffer
from matinee.errors import ParameterError


@pytest.fixture
def meta(tmp_path: Path) -> Iterator[MetadataStore]:
    store = MetadataStore.open(f"sqlite:///{tmp_path / 'meta.db'}")
    yield store
    store.close()


@pytest.fixture
def run_id(meta: MetadataStore) -> int:
    return meta.create_run("Tracked", "u", kind="tracking")


def stored(meta: MetadataStore, run_id: int, name: str | None = None) -> list[tuple[str, int | None, float]]:
    return [(m["name"], m["step"], m["value"]) for m in meta.metrics(run_id, name)]


# -- batching ---------------------------------------------------------------------


def test_nothing_is_written_before_max_points(meta: MetadataStore, run_id: int) -> None:
    buffer = MetricBuffer(meta, run_id, max_points=5, max_seconds=3600)
    for i in range(4):
        buffer.log_metric("loss", 1.0 / (i + 1), step=i)
    assert stored(meta, run_id) == []
    buffer.log_metric("loss", 0.2, step=4)  # the fifth point fills the batch
    assert [s for _, s, _ in stored(meta, run_id)] == [0, 1, 2, 3, 4]
    buffer.log_metric("loss", 0.1, step=5)
    assert len(stored(meta, run_id)) == 5
    buffer.flush()
    assert stored(meta, run_id)[-1] == ("loss", 5, 0.1)


def test_a_batch_is_written_once_max_seconds_have_passed(meta: MetadataStore, run_id: int) -> None:
    start = time.monotonic()
    buffer = MetricBuffer(meta, run_id, max_points=1000, max_seconds=0.5)
    buffer.log_metric("a", 1.0)
    early = stored(meta, run_id)
    if time.monotonic() - start < 0.5:  # unless the machine stalled for half a second
        assert early == []
    time.sleep(0.55)
    buffer.log_metric("a", 2.0)
    assert stored(meta, run_id) == [("a", None, 1.0), ("a", None, 2.0)]


def test_flush_writes_everything_and_an_empty_flush_writes_nothing(meta: MetadataStore, run_id: int) -> None:
    buffer = MetricBuffer(meta, run_id, max_points=10_000, max_seconds=3600)
    buffer.log_metrics({"loss": 0.5, "acc": 0.75}, step=3)
    buffer.log_batch([("loss", 0.4, 4), ("acc", 0.8, 4)])
    buffer.log_batch(("lr", 1e-3, s) for s in range(3))
    assert stored(meta, run_id) == []
    buffer.flush()
    buffer.flush()
    assert stored(meta, run_id, "loss") == [("loss", 3, 0.5), ("loss", 4, 0.4)]
    assert stored(meta, run_id, "acc") == [("acc", 3, 0.75), ("acc", 4, 0.8)]
    assert stored(meta, run_id, "lr") == [("lr", 0, 1e-3), ("lr", 1, 1e-3), ("lr", 2, 1e-3)]


def test_a_task_buffer_records_its_task(meta: MetadataStore, run_id: int) -> None:
    task_id = meta.create_task(run_id, "train")
    buffer = MetricBuffer(meta, run_id, task_id)
    buffer.log_metric("x", 1)
    buffer.flush()
    assert meta.metrics(run_id)[0]["task_id"] == task_id


@pytest.mark.parametrize(
    "value", [3, 2.5, np.float32(0.5), np.int64(7), Fraction(1, 4), float("inf"), -float("inf")],
    ids=repr,
)
def test_numbers_of_any_real_type_are_stored_as_floats(meta: MetadataStore, run_id: int, value: Any) -> None:
    buffer = MetricBuffer(meta, run_id)
    buffer.log_metric("m", value, step=np.int32(2))  # type: ignore[arg-type]
    buffer.flush()
    assert stored(meta, run_id) == [("m", 2, float(value))]


# -- validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, value, step, message",
    [
        (1, 0.5, None, "a metric name must be a non-empty string, not 1"),
        ("", 0.5, None, "a metric name must be a non-empty string, not ''"),
        (None, 0.5, None, "a metric name must be a non-empty string, not None"),
        ("loss", "0.5", None, "metric 'loss' must be a number, not str '0.5'"),
        ("loss", True, None, "metric 'loss' must be a number, not bool True"),
        ("loss", None, None, "metric 'loss' must be a number, not NoneType None"),
        ("loss", Decimal("0.5"), None, "metric 'loss' must be a number, not Decimal"),
        ("loss", 1 + 2j, None, "metric 'loss' must be a number, not complex"),
        ("loss", 0.5, 1.5, "the step of metric 'loss' must be a whole number, not 1.5"),
        ("loss", 0.5, "3", "the step of metric 'loss' must be a whole number, not '3'"),
        ("loss", 0.5, True, "the step of metric 'loss' must be a whole number, not True"),
    ],
)
def test_bad_points_are_refused(
    meta: MetadataStore, run_id: int, name: Any, value: Any, step: Any, message: str
) -> None:
    buffer = MetricBuffer(meta, run_id, max_points=1)
    with pytest.raises(ParameterError) as info:
        buffer.log_metric(name, value, step)
    assert message in str(info.value)
    assert info.value.status == 400
    with pytest.raises(ParameterError, match="loss|metric name"):
        buffer.log_batch([(name, value, step)])
    buffer.flush()
    assert stored(meta, run_id) == []


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda b: b.log_metrics([("loss", 1.0)]), "log_metrics takes a dict of name -> value, not list"),
        (lambda b: b.log_batch([("loss", 1.0)]), "log_batch takes (name, value, step) tuples"),
        (lambda b: b.log_batch([1, 2]), "log_batch takes (name, value, step) tuples"),
    ],
)
def test_badly_shaped_calls_are_refused(meta: MetadataStore, run_id: int, call: Any, message: str) -> None:
    with pytest.raises(ParameterError) as info:
        call(MetricBuffer(meta, run_id))
    assert message in str(info.value)


def test_a_rejected_batch_records_none_of_its_points(meta: MetadataStore, run_id: int) -> None:
    buffer = MetricBuffer(meta, run_id)
    with pytest.raises(ParameterError, match="'acc'"):
        buffer.log_metrics({"loss": 0.5, "acc": "high", "lr": 0.1}, step=1)
    buffer.log_metric("ok", 1.0)
    buffer.flush()
    assert stored(meta, run_id) == [("ok", None, 1.0)]


def test_nan_and_infinities_are_recorded_and_read_back(any_meta: MetadataStore) -> None:
    """A diverged loss is logged, not refused: NaN (float or numpy) and both infinities round trip."""
    run_id = any_meta.create_run("Tracked", "u", kind="tracking")
    buffer = MetricBuffer(any_meta, run_id)
    buffer.log_metric("loss", 1.0, step=0)
    buffer.log_metric("loss", float("nan"), step=1)
    buffer.log_metrics({"loss": np.float32("nan"), "grad": math.inf}, step=2)
    buffer.log_batch([("grad", -math.inf, 3), ("grad", np.float64("inf"), 4)])
    buffer.flush()
    loss, grad = stored(any_meta, run_id, "loss"), stored(any_meta, run_id, "grad")
    assert loss[0] == ("loss", 0, 1.0) and [s for _, s, _ in loss] == [0, 1, 2]
    assert all(type(v) is float and math.isnan(v) for _, _, v in loss[1:])
    assert grad == [("grad", 2, math.inf), ("grad", 3, -math.inf), ("grad", 4, math.inf)]
    latest = any_meta.latest_metrics([run_id])[run_id]
    assert math.isnan(latest["loss"]) and latest["grad"] == math.inf


# -- start_run ------------------------------------------------------------------------


def test_start_run_completes_on_a_clean_exit() -> None:
    with matinee.start_run("tuning", params={"lr": 0.1, "layers": [8, 4]}, tags=["sweep", "v2"]) as run:
        for epoch in range(3):
            run.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
        run.log_params({"batch": 32})
        run.set_tags("best")
    assert run.pathspec == f"tuning/{run.id}"
    meta = open_store().metadata
    row = meta.get_run(run.id)
    assert row is not None
    assert (row["flow_name"], row["kind"], row["status"], row["error"]) == ("tuning", "tracking", COMPLETED, None)
    assert row["user_name"] == "tester"
    assert row["finished_at"] is not None
    assert meta.run_params(run.id) == {"lr": 0.1, "layers": [8, 4], "batch": 32}
    assert {t["tag"] for t in meta.run_tags(run.id)} == {"sweep", "v2", "best", "user:tester", "kind:tracking"}
    assert [m["value"] for m in meta.metrics(run.id, "loss")] == [1.0, 0.5, 1.0 / 3]


def test_a_diverged_run_reads_back_nan_through_the_client_and_the_cli() -> None:
    from click.testing import CliRunner

    from matinee.cli.main import cli

    with matinee.start_run("diverging") as run:
        for step, loss in enumerate([0.5, math.inf, math.nan]):
            run.log_metric("loss", loss, step=step)
    series = matinee.Run(f"diverging/{run.id}").metric("loss")
    assert series.values[:2] == [0.5, math.inf] and math.isnan(series.values[2])
    assert math.isnan(series.last)  # type: ignore[arg-type]
    table = CliRunner().invoke(cli, ["metrics", f"diverging/{run.id}"])
    assert table.exit_code == 0, table.output
    assert "nan" in table.output and "0.5" in table.output  # last nan; min and max of the numbers: 0.5, inf
    points = CliRunner().invoke(cli, ["metrics", f"diverging/{run.id}", "--name", "loss"])
    assert re.findall(r"\b(0\.5|inf|nan)\b", points.output) == ["0.5", "inf", "nan"]
    summary = json.loads(CliRunner().invoke(cli, ["metrics", f"diverging/{run.id}", "--json"]).output)
    assert {k: summary[0][k] for k in ("last", "min", "max")} == {"last": "NaN", "min": 0.5, "max": "Infinity"}


def test_start_run_fails_with_the_error_when_the_block_raises() -> None:
    with pytest.raises(ValueError, match="diverged"), matinee.start_run("tuning") as run:
        run.log_metric("loss", 10.0, step=0)
        raise ValueError("diverged")
    meta = open_store().metadata
    row = meta.get_run(run.id)
    assert row is not None
    assert (row["status"], row["error"]) == (FAILED, "ValueError: diverged")
    assert [m["value"] for m in meta.metrics(run.id)] == [10.0]  # flushed even on failure


def test_a_run_is_running_until_its_block_ends() -> None:
    with matinee.start_run("tuning") as run:
        assert open_store().metadata.get_run(run.id)["status"] == RUNNING  # type: ignore[index]
        run.end()
        run.end()  # ending twice is harmless
    assert open_store().metadata.get_run(run.id)["status"] == COMPLETED  # type: ignore[index]


def test_start_run_uses_the_settings_it_is_given(tmp_path: Path) -> None:
    settings = matinee.load_settings(home=str(tmp_path / "other"))
    with matinee.start_run("elsewhere", settings=settings) as run:
        run.log_metric("m", 1.0)
    assert (tmp_path / "other" / "matinee.db").is_file()
    assert open_store(settings).metadata.get_run(run.id)["flow_name"] == "elsewhere"  # type: ignore[index]
    assert open_store().metadata.list_runs() == []


@pytest.mark.parametrize(
    "name, message",
    [("", "non-empty string"), ("a/b", "without '/'"), (5, "not 5"), (None, "not None")],
)
def test_start_run_refuses_bad_names(name: Any, message: str) -> None:
    with pytest.raises(ParameterError, match=message) as info:
        matinee.start_run(name)
    assert info.value.parameter == "name"  # type: ignore[attr-defined]


# -- the flush at interpreter exit -----------------------------------------------------


def test_points_still_buffered_at_exit_are_written(home: Path) -> None:
    script = textwrap.dedent("""
        import matinee
        run = matinee.start_run("atexit-run")
        for i in range(10):
            run.log_metric("loss", float(i), step=i)
        print(run.id)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    run_id = int(done.stdout)
    meta = open_store().metadata
    assert [(m["step"], m["value"]) for m in meta.metrics(run_id, "loss")] == [(i, float(i)) for i in range(10)]
    assert (home / "matinee.db").is_file()


def test_points_are_lost_only_when_the_process_is_killed(home: Path) -> None:
    """The control for the test above: without the exit hook the points are gone."""
    script = textwrap.dedent("""
        import os, matinee
        run = matinee.start_run("killed-run")
        for i in range(10):
            run.log_metric("loss", float(i), step=i)
        print(run.id, flush=True)
        os._exit(0)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    run_id = int(done.stdout)
    meta = open_store().metadata
    assert meta.metrics(run_id) == []
    assert meta.get_run(run_id)["status"] == FAILED  # type: ignore[index]
