"""The client: flows, runs, steps, tasks, artifacts, metrics, tracked runs and namespaces.

The tests marked ``both_dialects`` run twice, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import matinee
from matinee import Flow, NotFoundError, Run, Step, Task, namespace
from matinee.core.client import default_namespace, get_namespace
from matinee.core.runtime.runner import Runner
from matinee.errors import NamespaceError, ParameterError, RunFailed

#: Run the test once on SQLite and once on PostgreSQL (see ``metadata_url`` in tests/_postgres.py).
both_dialects = pytest.mark.usefixtures("metadata_url")

FLOW = """
from matinee import FlowSpec, Parameter, current, step

class F(FlowSpec):
    fail = Parameter("fail", default=False)

    @step
    def start(self):
        self.model = {"weights": [0.1, 0.2]}
        self.items = ["a", "b", "c"]
        for epoch in range(5):
            current.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
        current.log_params({"optimizer": "sgd", "layers": [2, 3]})
        self.next(self.each, foreach="items")

    @step
    def each(self):
        self.upper = self.input.upper()
        current.log_metric("branch", float(self.index), step=self.index)
        current.log_metrics({"acc": 0.5 + self.index / 10, "f1": 0.25}, step=100 + self.index)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.uppers = [i.upper for i in inputs]
        self.merge_artifacts(inputs, exclude=["upper"])
        self.next(self.end)

    @step
    def end(self):
        if self.fail:
            raise RuntimeError("failed on purpose")
        self.score = len(self.uppers)
"""


@pytest.fixture
def load_flow(load_flow):
    """The shared loader, with this module's flow as the default source."""
    return lambda source=FLOW: load_flow(source)


@pytest.fixture
def made_runs(load_flow) -> list[int]:
    """Four run ids, oldest first: a success, a failure, a tagged success, a failure (both executors)."""
    cls = load_flow()
    ids = [Runner(cls, executor="inline", quiet=True).run()]
    with pytest.raises(RunFailed) as info:
        Runner(cls, params={"fail": True}, executor="process", quiet=True).run()
    ids.append(info.value.run_id)
    ids.append(Runner(cls, executor="process", tags=("best", "v2"), quiet=True).run())
    with pytest.raises(RunFailed) as info:
        Runner(cls, params={"fail": True}, executor="inline", quiet=True).run()
    ids.append(info.value.run_id)
    return ids


@both_dialects
def test_flow_runs_latest_and_latest_successful(made_runs: list[int]) -> None:
    flow = Flow("F")
    assert [r.id for r in flow.runs()] == list(reversed(made_runs))
    assert [r.id for r in flow] == list(reversed(made_runs))
    assert flow.latest_run.id == made_runs[3]
    assert not flow.latest_run.successful and flow.latest_run.finished
    assert flow.latest_successful_run.id == made_runs[2]
    assert [r.id for r in flow.runs("best")] == [made_runs[2]]
    assert [r.id for r in flow.runs("executor:process")] == made_runs[1:3][::-1]


def test_run_data_status_tags_and_steps(made_runs: list[int]) -> None:
    run = Run(f"F/{made_runs[2]}")
    assert run.pathspec == f"F/{made_runs[2]}"
    assert run.successful and run.finished and run.status == "completed"
    assert run.error is None
    assert run.tags == {"best", "v2"}
    assert {"user:tester", "executor:process"} <= run.system_tags
    assert run.user == "tester"
    assert run.finished_at >= run.created_at
    assert run.code_hash and len(run.code_hash) == 64
    assert run.data.score == 3
    assert run.data.uppers == ["A", "B", "C"]
    assert run.data.model == {"weights": [0.1, 0.2]}
    assert run["start"].task.data.items == ["a", "b", "c"]
    assert [s.name for s in run.steps()] == ["start", "each", "join", "end"]
    assert "each" in run and "nope" not in run
    assert run.params == {"fail": False, "optimizer": "sgd", "layers": [2, 3]}
    artifact = run["start"].task["model"]
    assert artifact.data == {"weights": [0.1, 0.2]} and artifact.codec == "pickle" and artifact.size > 0
    assert sorted(run["start"].task.artifacts) == ["fail", "items", "model"]


def test_foreach_step_tasks(made_runs: list[int]) -> None:
    step = Step(f"F/{made_runs[0]}/each")
    tasks = list(step.tasks())
    assert len(tasks) == 3
    assert sorted((t.index, t.data.upper) for t in tasks) == [(0, "A"), (1, "B"), (2, "C")]
    assert all(t.successful and t.finished for t in tasks)
    again = Task(tasks[1].pathspec)
    assert again.id == tasks[1].id and again.data.upper == tasks[1].data.upper
    assert step[tasks[0].id].id == tasks[0].id


def test_failed_run_and_task_exception(made_runs: list[int]) -> None:
    run = Run(f"F/{made_runs[1]}")
    assert run.status == "failed" and run.finished and not run.successful
    assert "RuntimeError: failed on purpose" in run.error
    end = run["end"].task
    assert end.exception == "RuntimeError: failed on purpose"
    assert "raise RuntimeError" in end.traceback
    assert not end.successful
    assert run["join"].task.exception is None
    assert run.data is not None and "score" not in run.data
    assert "RuntimeError: failed on purpose" in end.stderr


def test_metrics_are_series(made_runs: list[int]) -> None:
    run = Run(f"F/{made_runs[0]}")
    loss = run.metric("loss")
    assert loss.steps == [0, 1, 2, 3, 4]
    assert loss.values == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    assert loss.last == 0.2 and len(loss) == 5
    assert all(t > 0 for t in loss.timestamps)
    branch = run.metric("branch")
    assert sorted(zip(branch.steps, branch.values, strict=True)) == [(0, 0.0), (1, 1.0), (2, 2.0)]
    assert sorted(run.metrics) == ["acc", "branch", "f1", "loss"]
    assert sorted(run.metric("acc").values) == [0.5, 0.6, 0.7]
    assert sorted(run.metric("acc").steps) == [100, 101, 102]
    assert run.metric("nothing").values == []
    frame = loss.to_pandas()
    assert list(frame.columns) == ["step", "value", "timestamp"] and len(frame) == 5
    start_task = run["start"].task
    assert list(start_task.metrics) == ["loss"]
    task1 = next(t for t in run["each"].tasks() if t.index == 1)
    assert task1.metrics["acc"].values == [0.6] and task1.metrics["branch"].steps == [1]


@both_dialects
def test_start_run_records_metrics_params_and_tags() -> None:
    with matinee.start_run("tuning", tags=["sweep"], params={"lr": 0.1}) as tracked:
        for i in range(10):
            tracked.log_metric("loss", 10.0 - i, step=i)
        tracked.log_metrics({"auc": 0.9, "ndcg": 0.4}, step=9)
        tracked.log_params({"batch": 32, "opt": {"name": "adam"}})
        tracked.set_tags("best")
    run = Run(tracked.pathspec)
    assert run.successful and run.finished
    assert run.tags == {"sweep", "best"}
    assert "kind:tracking" in run.system_tags
    assert run.params == {"lr": 0.1, "batch": 32, "opt": {"name": "adam"}}
    assert run.metric("loss").values == [10.0 - i for i in range(10)]
    assert run.metric("loss").steps == list(range(10))
    assert run.metric("auc").values == [0.9] and run.metric("ndcg").steps == [9]
    assert Flow("tuning").latest_run.id == run.id


def test_start_run_is_failed_when_the_block_raises() -> None:
    with pytest.raises(ZeroDivisionError), matinee.start_run("tuning") as tracked:
        tracked.log_metric("loss", 1.0, step=0)
        1 / 0  # noqa: B018
    run = Run(tracked.pathspec)
    assert run.status == "failed" and run.finished
    assert run.error == "ZeroDivisionError: division by zero"
    assert run.metric("loss").values == [1.0]  # flushed even though the block failed
    assert Flow("tuning").latest_successful_run is None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.log_metric("loss", "high"), "metric 'loss' must be a number, not str 'high'"),
        (lambda r: r.log_metric("loss", True), "metric 'loss' must be a number"),
        (lambda r: r.log_metric("", 1.0), "a metric name must be a non-empty string"),
        (lambda r: r.log_metric("loss", 1.0, step=1.5), "the step of metric 'loss' must be a whole number"),
        (lambda r: r.log_metrics([("loss", 1.0)]), "log_metrics takes a dict of name -> value, not list"),
        (lambda r: r.log_batch([("loss", 1.0)]), "log_batch takes (name, value, step) tuples"),
    ],
)
def test_bad_metric_calls(call, message: str) -> None:
    with matinee.start_run("tuning") as tracked:
        with pytest.raises(ParameterError) as info:
            call(tracked)
        assert message in str(info.value)
    assert Run(tracked.pathspec).metrics == {}


@pytest.mark.parametrize("name", ["", "a/b", None])
def test_start_run_refuses_bad_names(name) -> None:
    with pytest.raises(ParameterError, match="a run name must be a non-empty string without '/'"):
        matinee.start_run(name)


@both_dialects
def test_log_batch_of_many_points_is_all_readable() -> None:
    points = [("loss", 1.0 / (i + 1), i) for i in range(5000)]
    with matinee.start_run("batched") as tracked:
        tracked.log_batch(points)
        tracked.log_batch([("acc", 0.5, None)])
    series = Run(tracked.pathspec).metric("loss")
    assert len(series) == 5000
    assert series.steps == list(range(5000))
    assert series.values == [p[1] for p in points]
    assert Run(tracked.pathspec).metric("acc").steps == [None]


CRASH = """
import os, sys
import matinee

run = matinee.start_run("crashy")
print(run.pathspec, flush=True)
for i in range(2500):
    run.log_metric("m", float(i), step=i)
if sys.argv[1] == "crash":
    os._exit(0)
"""


@pytest.mark.parametrize(("how", "at_least"), [("crash", 2000), ("clean", 2500)])
def test_metrics_survive_a_crash_up_to_the_last_flush(tmp_path: Path, how: str, at_least: int) -> None:
    script = tmp_path / "track.py"
    script.write_text(CRASH)
    proc = subprocess.run([sys.executable, str(script), how], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    run = Run(proc.stdout.strip())
    series = run.metric("m")
    assert len(series) >= at_least
    assert series.steps == list(range(len(series)))  # a prefix, in order, nothing twice
    if how == "clean":
        assert len(series) == 2500
    assert run.finished and not run.successful  # never ended: reported failed once its process is gone


FLOW_CRASH = """
import os
from matinee import FlowSpec, current, step

class F(FlowSpec):
    @step
    def start(self):
        for i in range(2500):
            current.log_metric("m", float(i), step=i)
        os._exit(5)
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    F()
"""


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_metrics_logged_in_a_step_survive_its_process_dying(write_flow, run_flow, executor: str) -> None:
    proc = run_flow(write_flow(FLOW_CRASH), "run", "--executor", executor)
    assert proc.returncode in (1, 5)
    run = Flow("F").latest_run
    assert run.status == "failed"
    series = run.metric("m")
    assert len(series) >= 2000
    assert series.steps == list(range(len(series)))


OTHER_USER = """
from matinee import FlowSpec, step

class F(FlowSpec):
    @step
    def start(self):
        self.owner = "other"
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    F()
"""


def test_namespaces(write_flow, run_flow) -> None:
    path = write_flow(OTHER_USER)
    assert run_flow(path, "run", env={"MATINEE_USER": "other"}).returncode == 0
    assert get_namespace() == "user:tester"
    flow = Flow("F")
    assert list(flow.runs()) == []
    assert flow.latest_run is None
    with pytest.raises(NamespaceError, match=r"run F/1 is not in namespace user:tester; use namespace\(None\)"):
        Run("F/1")
    with pytest.raises(NamespaceError):
        Task(f"F/1/start/{1}")

    namespace(None)
    assert [r.id for r in flow.runs()] == [1]
    assert Run("F/1").data.owner == "other"
    assert Run("F/1").user == "other"

    namespace("user:other")
    assert flow.latest_run.data.owner == "other"
    assert Run("F/1")["start"].task.data.owner == "other"

    namespace("user:someone-else")
    assert flow.latest_run is None

    assert default_namespace() == "user:tester"
    with pytest.raises(NamespaceError):
        Run("F/1")


def test_own_runs_are_visible_next_to_others(write_flow, run_flow) -> None:
    path = write_flow(OTHER_USER)
    assert run_flow(path, "run", env={"MATINEE_USER": "other"}).returncode == 0
    assert run_flow(path, "run").returncode == 0
    assert [r.user for r in Flow("F").runs()] == ["tester"]
    namespace(None)
    assert [r.user for r in Flow("F").runs()] == ["tester", "other"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda ids: Flow("Nope"), "no flow named 'Nope' has run in this store"),
        (lambda ids: Run("F"), "run pathspec 'F' must look like Flow/run_id"),
        (lambda ids: Run("F/1/start"), "run pathspec 'F/1/start' must look like Flow/run_id"),
        (lambda ids: Run("F/abc"), "the run id in 'F/abc' must be a number, not 'abc'"),
        (lambda ids: Run("F/999"), "run F/999 does not exist"),
        (lambda ids: Run(f"Other/{ids[0]}"), f"run Other/{1} does not exist"),
        (lambda ids: Step(f"F/{ids[0]}/nope"), f"step F/{1}/nope has no tasks"),
        (lambda ids: Step("F//start"), "step pathspec 'F//start' must look like Flow/run_id/step"),
        (lambda ids: Task(f"F/{ids[0]}/start/xyz"), "the task id in 'F/1/start/xyz' must be a number"),
        (lambda ids: Task(f"F/{ids[0]}/start/99999"), "task F/1/start/99999 does not exist"),
        (lambda ids: Task(f"F/{ids[0]}/end/{Run(f'F/{ids[0]}')['start'].task.id}"), "task F/1/end/1 does not exist"),
        (lambda ids: Run(f"F/{ids[0]}")["start"].task["nope"], "task F/1/start/1 has no artifact 'nope'"),
    ],
)
def test_bad_pathspecs(load_flow, make, message: str) -> None:
    ids = [Runner(load_flow(), executor="inline", quiet=True).run()]
    assert ids == [1]
    with pytest.raises(NotFoundError) as info:
        make(ids)
    assert message in str(info.value)


def test_missing_artifact_attribute_lists_what_exists(load_flow) -> None:
    Runner(load_flow(), executor="inline", quiet=True).run()
    with pytest.raises(AttributeError, match=r"task F/1/start/1 has no artifact 'nope'; it has: fail, items, model"):
        Run("F/1")["start"].task.data.nope  # noqa: B018


def test_flow_runs_pages_through_many_runs_newest_first(home: Path) -> None:
    for i in range(130):  # more than the first two pages (20, then 100)
        with matinee.start_run("Paged") as run:
            run.log_params({"i": i})
    runs = list(Flow("Paged").runs())
    ids = [r.id for r in runs]
    assert len(ids) == 130 and ids == sorted(ids, reverse=True)
    assert Flow("Paged").latest_run.id == ids[0]
