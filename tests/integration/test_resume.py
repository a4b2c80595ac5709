"""Resume: clone what the origin run finished, by reference, and re-run the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from matinee import Flow, Run
from matinee.core.runtime.runner import Runner
from matinee.core.store import open_store
from matinee.errors import FlowError, NotFoundError, ParameterError, RunFailed

EXECUTORS = ["inline", "process"]
STEPS = ["start", "two", "three", "four", "five", "end"]

SIX_STEPS = """
import os
from matinee import FlowSpec, Parameter, current, step

def mark(name):
    with open(os.environ["COUNTER_FILE"], "a") as fh:
        fh.write(name + "\\n")
    if os.environ.get("CRASH_AT") == name:
        os._exit(17)

class F(FlowSpec):
    seed = Parameter("seed", default=7)

    @step
    def start(self):
        mark("start")
        self.data = list(range(self.seed, self.seed + 500))
        self.next(self.two)

    @step
    def two(self):
        mark("two")
        self.doubled = [x * 2 for x in self.data]
        self.next(self.three)

    @step
    def three(self):
        mark("three")
        self.total = sum(self.doubled)
        self.next(self.four)

    @step
    def four(self):
        mark("four")
        self.scaled = self.total * 3
        self.origin_seen = current.origin_run_id
        self.next(self.five)

    @step
    def five(self):
        mark("five")
        self.label = f"seed={self.seed} scaled={self.scaled}"
        self.next(self.end)

    @step
    def end(self):
        mark("end")
        self.final = (self.seed, self.total, self.scaled, self.label)

if __name__ == "__main__":
    F()
"""


@pytest.fixture
def counter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file every step appends its name to (also seen by subprocesses and forked workers)."""
    path = tmp_path / "counter.txt"
    monkeypatch.setenv("COUNTER_FILE", str(path))
    monkeypatch.delenv("CRASH_AT", raising=False)
    return path


def ran(counter: Path) -> list[str]:
    return counter.read_text().splitlines() if counter.exists() else []


def blob_files(home: Path) -> set[str]:
    return {p.name for p in (home / "blobs").glob("??/*")}


def keys(task) -> dict[str, str]:
    return {name: artifact.key for name, artifact in task.artifacts.items()}


@pytest.mark.parametrize("executor", EXECUTORS)
def test_resume_reruns_only_from_the_failed_step(write_flow, run_flow, counter: Path, home: Path, executor: str) -> None:
    path = write_flow(SIX_STEPS)
    crashed = run_flow(path, "run", "--executor", executor, env={"CRASH_AT": "four"})
    assert crashed.returncode == (17 if executor == "inline" else 1)
    assert ran(counter) == ["start", "two", "three", "four"]
    origin = Flow("F").latest_run
    assert origin.status == "failed"
    blobs_before = blob_files(home)

    resumed_proc = run_flow(path, "resume", "--executor", executor)
    assert resumed_proc.returncode == 0, resumed_proc.stderr
    assert ran(counter) == ["start", "two", "three", "four", "four", "five", "end"]
    assert f"cloned from task {origin['start'].task.id} of run {origin.id}" in resumed_proc.stdout

    resumed = Flow("F").latest_run
    assert resumed.id != origin.id and resumed.successful
    assert resumed.origin_run_id == origin.id
    assert f"resumed-from:{origin.id}" in resumed.system_tags
    for step_name in ("start", "two", "three"):
        old, new = origin[step_name].task, resumed[step_name].task
        assert new.cloned_from == old.id
        assert new.id != old.id
        assert keys(new) == keys(old)
        assert set(keys(new).values()) <= blobs_before  # nothing stored again for cloned tasks
        assert new.attempts == []
    for step_name in ("four", "five", "end"):
        assert resumed[step_name].task.cloned_from is None
    assert resumed.data.origin_seen == str(origin.id)

    counter.unlink()
    assert run_flow(path, "run", "--executor", executor).returncode == 0
    assert ran(counter) == STEPS
    fresh = Flow("F").latest_run
    fresh_keys, resumed_keys = keys(fresh.end_task), keys(resumed.end_task)
    del fresh_keys["origin_seen"], resumed_keys["origin_seen"]
    assert fresh_keys == resumed_keys
    assert fresh.data.final == resumed.data.final == (7, 2 * sum(range(7, 507)), 6 * sum(range(7, 507)), resumed.data.label)
    assert fresh.data.origin_seen is None


@pytest.mark.parametrize("executor", EXECUTORS)
def test_resume_from_an_earlier_step(write_flow, run_flow, counter: Path, executor: str) -> None:
    path = write_flow(SIX_STEPS)
    assert run_flow(path, "run", "--executor", executor).returncode == 0
    origin = Flow("F").latest_run
    counter.unlink()
    proc = run_flow(path, "resume", "three", "--executor", executor)
    assert proc.returncode == 0, proc.stderr
    assert ran(counter) == ["three", "four", "five", "end"]
    resumed = Flow("F").latest_run
    assert resumed.origin_run_id == origin.id
    assert [resumed[s].task.cloned_from for s in STEPS] == [origin["start"].task.id, origin["two"].task.id, None, None, None, None]
    assert resumed.data.final == origin.data.final


def test_resume_of_a_completed_run_clones_everything(load_six, counter: Path) -> None:
    cls = load_six()
    origin = Runner(cls, executor="inline", quiet=True).run()
    counter.unlink()
    resumed = Runner(cls, executor="inline", quiet=True, resume=True).run()
    assert ran(counter) == []
    run = Run(f"F/{resumed}")
    assert run.successful
    assert all(run[s].task.cloned_from is not None for s in STEPS)
    assert keys(run.end_task) == keys(Run(f"F/{origin}").end_task)


def test_origin_run_id_picks_the_run_to_resume(write_flow, run_flow, counter: Path) -> None:
    path = write_flow(SIX_STEPS)
    for seed in ("1", "2"):
        proc = run_flow(path, "run", "--seed", seed, "--executor", "inline", env={"CRASH_AT": "five"})
        assert proc.returncode == 17
    first, second = sorted(Flow("F").runs(), key=lambda r: r.id)

    proc = run_flow(path, "resume")  # default: your latest run
    assert proc.returncode == 0, proc.stderr
    latest = Flow("F").latest_run
    assert latest.origin_run_id == second.id
    assert latest.data.final[0] == 2

    proc = run_flow(path, "resume", "--origin-run-id", str(first.id))
    assert proc.returncode == 0, proc.stderr
    latest = Flow("F").latest_run
    assert latest.origin_run_id == first.id
    assert latest.data.final[0] == 1
    assert latest.params == {"seed": 1}
    assert latest["four"].task.cloned_from == first["four"].task.id


@pytest.fixture
def load_six(load_flow):
    """Import a flow module (SIX_STEPS unless other source is given) and return its class ``F``."""
    return lambda source=SIX_STEPS: load_flow(source)


FOREACH = """
import os
from matinee import FlowSpec, step

class F(FlowSpec):
    @step
    def start(self):
        self.items = list(range(6))
        self.next(self.each, foreach="items")

    @step
    def each(self):
        if str(self.input) == os.environ.get("FAIL_ITEM"):
            raise RuntimeError(f"item {self.input} fails")
        with open(os.environ["COUNTER_FILE"], "a") as fh:
            fh.write(f"each{self.input}\\n")
        self.square = self.input ** 2
        self.next(self.join)

    @step
    def join(self, inputs):
        self.squares = [i.square for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass
"""


@pytest.mark.parametrize("executor", EXECUTORS)
def test_resume_a_foreach_clones_the_branches_that_succeeded(
    load_six, counter: Path, monkeypatch: pytest.MonkeyPatch, executor: str
) -> None:
    cls = load_six(FOREACH)
    monkeypatch.setenv("FAIL_ITEM", "3")
    with pytest.raises(RunFailed, match="item 3 fails") as info:
        Runner(cls, executor=executor, max_workers=2, quiet=True).run()
    origin = Run(f"F/{info.value.run_id}")
    done_before = {t.index: t for t in origin["each"].tasks() if t.successful}
    assert {0, 1, 2} <= set(done_before) and 3 not in done_before
    assert sorted(ran(counter)) == sorted(f"each{i}" for i in done_before)

    monkeypatch.delenv("FAIL_ITEM")
    counter.unlink()
    resumed = Run(f"F/{Runner(cls, executor=executor, max_workers=2, quiet=True, resume=True).run()}")
    assert resumed.successful
    assert resumed.data.squares == [0, 1, 4, 9, 16, 25]
    assert sorted(ran(counter)) == sorted(f"each{i}" for i in range(6) if i not in done_before)
    branches = {t.index: t for t in resumed["each"].tasks()}
    assert sorted(branches) == list(range(6))
    for index, task in branches.items():
        if index in done_before:
            assert task.cloned_from == done_before[index].id
            assert keys(task) == keys(done_before[index])
        else:
            assert task.cloned_from is None
    assert resumed["start"].task.cloned_from == origin["start"].task.id
    assert resumed["join"].task.cloned_from is None


def test_resume_rejects_new_parameters_on_the_command_line(write_flow, run_flow, counter: Path) -> None:
    path = write_flow(SIX_STEPS)
    assert run_flow(path, "run", "--executor", "inline", env={"CRASH_AT": "two"}).returncode == 17
    for args in (["--seed", "5"], ["--seed=5"]):
        proc = run_flow(path, "resume", *args)
        assert proc.returncode == 2
        assert proc.stderr == (
            "error: resume reuses the origin run's parameters, so --seed cannot be given; "
            "start a new run to change them (flow.py run --seed ...)\n"
        )
    assert len(open_store().metadata.list_runs("F")) == 1


def test_resume_rejects_new_parameters_in_python(load_six, counter: Path) -> None:
    cls = load_six()
    Runner(cls, executor="inline", quiet=True).run()
    with pytest.raises(ParameterError, match="resume reuses the origin run's parameters; start a new run") as info:
        Runner(cls, params={"seed": 5}, resume=True, quiet=True).run()
    assert info.value.parameter == "seed"
    assert len(open_store().metadata.list_runs("F")) == 1


@pytest.mark.parametrize(
    ("setup", "args", "error", "message"),
    [
        ("none", {}, NotFoundError, "no earlier run of F to resume; run it first"),
        ("ok", {"origin_run_id": 99}, NotFoundError, "run F/99 does not exist"),
        ("ok", {"resume_step": "nope"}, FlowError, "cannot resume from unknown step 'nope'"),
        ("start", {}, FlowError, "its start step did not finish, so its parameters (seed) are unknown"),
    ],
    ids=["no-earlier-run", "unknown-origin", "unknown-step", "start-never-finished"],
)
def test_resume_errors(load_six, counter: Path, monkeypatch, setup: str, args: dict, error: type, message: str) -> None:
    cls = load_six(SIX_STEPS.replace('mark("start")', 'mark("start")\n        if os.environ.get("FAIL_START"): raise ValueError("no")'))
    if setup == "ok":
        Runner(cls, executor="inline", quiet=True).run()
    elif setup == "start":
        monkeypatch.setenv("FAIL_START", "1")
        with pytest.raises(RunFailed):
            Runner(cls, executor="inline", quiet=True).run()
        monkeypatch.delenv("FAIL_START")
    runs_before = len(open_store().metadata.list_runs())
    with pytest.raises(error) as info:
        Runner(cls, resume=True, quiet=True, **args).run()
    assert message in str(info.value)
    assert len(open_store().metadata.list_runs()) == runs_before


def test_resume_on_the_command_line_reports_errors_in_one_line(write_flow, run_flow, counter: Path) -> None:
    path = write_flow(SIX_STEPS)
    proc = run_flow(path, "resume")
    assert proc.returncode == 2
    assert proc.stderr == "error: no earlier run of F to resume; run it first\n"
