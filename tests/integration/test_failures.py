"""Failing steps: exceptions, dying processes, retries, @catch, @timeout, a forgotten self.next."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from matinee import Flow, Run
from matinee.core.runtime.runner import Runner
from matinee.errors import RunFailed

EXECUTORS = ["inline", "process"]


def flow_source(body: str, imports: str = "") -> str:
    """A flow ``start -> work -> end`` whose ``work`` step has the given body."""
    return (
        "import os, signal, sys, time\n"
        "from matinee import FlowSpec, catch, current, retry, step, timeout\n"
        f"{imports}\n\n"
        "class F(FlowSpec):\n"
        "    @step\n"
        "    def start(self):\n"
        "        self.before = 'set in start'\n"
        "        self.next(self.work)\n\n"
        f"{textwrap.indent(textwrap.dedent(body).strip(), '    ')}\n\n"
        "    @step\n"
        "    def end(self):\n"
        "        pass\n\n"
        "if __name__ == '__main__':\n"
        "    F()\n"
    )


RAISES = flow_source(
    """
    @step
    def work(self):
        print("about to fail")
        helper(42)
        self.next(self.end)
    """,
    imports="def helper(n):\n    raise ValueError(f'boom {n}')",
)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_step_that_raises_fails_the_run(write_flow, run_flow, executor: str) -> None:
    proc = run_flow(write_flow(RAISES), "run", "--executor", executor)
    assert proc.returncode == 1
    failed = Flow("F").latest_run
    assert failed.status == "failed" and failed.finished and not failed.successful
    assert "step work" in failed.error and "ValueError: boom 42" in failed.error
    task = failed["work"].task
    assert task.status == "failed"
    assert task.exception == "ValueError: boom 42"
    assert "raise ValueError(f'boom {n}')" in task.traceback
    assert "helper(42)" in task.traceback
    assert "execute_attempt" not in task.traceback  # matinee's own frames are trimmed
    prefix = f"[{failed.id}/work/{task.id}] "
    assert f"{prefix}Traceback (most recent call last):" in proc.stderr
    assert f"{prefix}ValueError: boom 42" in proc.stderr
    assert f"error: run F/{failed.id} failed: step work" in proc.stderr
    assert "ValueError: boom 42" in task.stderr
    assert task.stdout == "about to fail\n"
    assert "end" not in failed
    assert failed["start"].task.successful


@pytest.mark.parametrize(
    ("body", "cause"),
    [
        ("os._exit(3)", "ProcessDied: the task's process exited with code 3"),
        ("os.kill(os.getpid(), signal.SIGKILL)", "ProcessDied: the task's process was killed by signal 9 (SIGKILL)"),
    ],
    ids=["os-exit-3", "sigkill"],
)
def test_a_dying_task_process_fails_the_run_under_the_process_executor(
    write_flow, run_flow, body: str, cause: str
) -> None:
    source = flow_source(
        f"""
        @step
        def work(self):
            print("going down", flush=True)
            {body}
            self.next(self.end)
        """
    )
    proc = run_flow(write_flow(source), "run", "--executor", "process")
    assert proc.returncode == 1
    failed = Flow("F").latest_run
    assert failed.status == "failed"
    assert cause in failed.error
    task = failed["work"].task
    assert task.status == "failed"
    assert task.exception == cause
    assert task.stdout == "going down\n"
    assert cause in proc.stderr


@pytest.mark.parametrize(
    ("body", "returncode"),
    [("os._exit(3)", 3), ("os.kill(os.getpid(), signal.SIGKILL)", -9)],
    ids=["os-exit-3", "sigkill"],
)
def test_a_runner_killed_inline_leaves_no_run_running(write_flow, run_flow, body: str, returncode: int) -> None:
    source = flow_source(
        f"""
        @step
        def work(self):
            {body}
            self.next(self.end)
        """
    )
    proc = run_flow(write_flow(source), "run", "--executor", "inline")
    assert proc.returncode == returncode
    runs = list(Flow("F").runs())
    assert [r.status for r in runs] == ["failed"]
    dead = Run(runs[0].pathspec)
    assert dead.status == "failed" and dead.finished and not dead.successful
    assert "ended without finishing the run" in dead.error
    assert dead["work"].task.status == "failed"
    assert dead["start"].task.status == "completed"
    assert Flow("F").latest_successful_run is None


RETRY = flow_source(
    """
    @retry(times=2, minutes_between_retries=0)
    @step
    def work(self):
        counter = os.environ["COUNTER_FILE"]
        with open(counter, "a") as fh:
            fh.write(f"{current.retry_count}\\n")
        with open(counter) as fh:
            attempts = len(fh.read().splitlines())
        if attempts < int(os.environ.get("SUCCEED_ON", "3")):
            raise RuntimeError(f"attempt {attempts} fails")
        self.retry_count_seen = current.retry_count
        self.next(self.end)
    """
)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_retry_succeeds_on_the_third_attempt(
    load_flow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executor: str
) -> None:
    counter = tmp_path / "counter.txt"
    monkeypatch.setenv("COUNTER_FILE", str(counter))
    run_id = Runner(load_flow(RETRY), executor=executor, quiet=True).run()
    assert counter.read_text().splitlines() == ["0", "1", "2"]
    result = Run(f"F/{run_id}")
    assert result.successful
    task = result["work"].task
    assert task.data.retry_count_seen == 2
    assert [(a["attempt"], a["status"]) for a in task.attempts] == [(0, "failed"), (1, "failed"), (2, "completed")]
    assert [a["exception"] for a in task.attempts[:2]] == ["RuntimeError: attempt 1 fails", "RuntimeError: attempt 2 fails"]
    assert task.exception is None
    assert len(list(result["work"].tasks())) == 1


@pytest.mark.parametrize("executor", EXECUTORS)
def test_retry_gives_up_after_its_times(
    load_flow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executor: str
) -> None:
    counter = tmp_path / "counter.txt"
    monkeypatch.setenv("COUNTER_FILE", str(counter))
    monkeypatch.setenv("SUCCEED_ON", "4")
    with pytest.raises(RunFailed, match="RuntimeError: attempt 3 fails") as info:
        Runner(load_flow(RETRY), executor=executor, quiet=True).run()
    assert counter.read_text().splitlines() == ["0", "1", "2"]
    task = Run(f"F/{info.value.run_id}")["work"].task
    assert len(task.attempts) == 3
    assert task.exception == "RuntimeError: attempt 3 fails"


CATCH = flow_source(
    """
    @catch(var="err")
    @step
    def work(self):
        self.partial = "lost with the failed attempt"
        raise KeyError("missing thing")
        self.next(self.end)
    """
)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_catch_stores_the_exception_and_the_flow_continues(load_flow, executor: str) -> None:
    run_id = Runner(load_flow(CATCH), executor=executor, quiet=True).run()
    result = Run(f"F/{run_id}")
    assert result.successful
    err = result.data.err
    assert err.type == "KeyError"
    assert "missing thing" in err.message
    assert str(err) == f"KeyError: {err.message}"
    assert result.data.before == "set in start"
    assert "partial" not in result.data
    task = result["work"].task
    assert task.successful
    assert task.attempts[-1]["status"] == "failed"
    assert "KeyError" in task.attempts[-1]["exception"]


def test_catch_without_var_and_with_retry(load_flow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = tmp_path / "counter.txt"
    monkeypatch.setenv("COUNTER_FILE", str(counter))
    source = flow_source(
        """
        @catch
        @retry(times=1, minutes_between_retries=0)
        @step
        def work(self):
            with open(os.environ["COUNTER_FILE"], "a") as fh:
                fh.write("x")
            raise RuntimeError("always")
            self.next(self.end)
        """
    )
    run_id = Runner(load_flow(source), executor="inline", quiet=True).run()
    assert counter.read_text() == "xx"  # retried once, then caught
    result = Run(f"F/{run_id}")
    assert result.successful
    assert result["work"].task.data.before == "set in start"


TIMEOUT = flow_source(
    """
    @timeout(seconds=1)
    @step
    def work(self):
        time.sleep(30)
        self.next(self.end)
    """
)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_timeout_fails_a_slow_step_quickly(load_flow, executor: str) -> None:
    started = time.monotonic()
    with pytest.raises(RunFailed, match=r"TimeoutError: step work timed out after 1 s \(@timeout\)") as info:
        Runner(load_flow(TIMEOUT), executor=executor, quiet=True).run()
    assert time.monotonic() - started < 8
    failed = Run(f"F/{info.value.run_id}")
    assert failed.status == "failed"
    assert failed["work"].task.exception.startswith("TimeoutError: step work timed out")


@pytest.mark.parametrize("executor", EXECUTORS)
def test_timeout_from_the_command_line(write_flow, run_flow, executor: str) -> None:
    started = time.monotonic()
    proc = run_flow(write_flow(TIMEOUT), "run", "--executor", executor)
    assert time.monotonic() - started < 10
    assert proc.returncode == 1
    assert "TimeoutError: step work timed out after 1 s" in proc.stderr
    assert Flow("F").latest_run.status == "failed"


@pytest.mark.parametrize("executor", EXECUTORS)
def test_timeout_with_catch(load_flow, executor: str) -> None:
    source = flow_source(
        """
        @catch(var="err")
        @timeout(seconds=1)
        @step
        def work(self):
            time.sleep(30)
            self.next(self.end)
        """
    )
    started = time.monotonic()
    run_id = Runner(load_flow(source), executor=executor, quiet=True).run()
    assert time.monotonic() - started < 8
    err = Run(f"F/{run_id}").data.err
    assert err.type == "TimeoutError"
    assert "timed out after 1 s" in err.message


def test_process_worker_that_ignores_its_timeout_is_killed(load_flow, monkeypatch: pytest.MonkeyPatch) -> None:
    from matinee.core.executors import process

    monkeypatch.setattr(process, "KILL_GRACE", 0.5)  # the runner is this process: keep the test short
    source = flow_source(
        """
        @timeout(seconds=0.2)
        @step
        def work(self):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(30)
            self.next(self.end)
        """
    )
    started = time.monotonic()
    with pytest.raises(RunFailed, match="TimeoutError: step work exceeded its @timeout and was killed"):
        Runner(load_flow(source), executor="process", quiet=True).run()
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_step_that_returns_before_self_next_fails_clearly(load_flow, executor: str) -> None:
    source = flow_source(
        """
        @step
        def work(self):
            if self.before:
                return
            self.next(self.end)
        """
    )
    with pytest.raises(RunFailed) as info:
        Runner(load_flow(source), executor=executor, quiet=True).run()
    message = "step work finished without calling self.next(); end it with self.next(self.end)"
    assert message in str(info.value)
    assert Run(f"F/{info.value.run_id}")["work"].task.exception == f"FlowError: {message}"


def test_a_step_without_self_next_is_refused_before_running(write_flow, run_flow) -> None:
    source = flow_source(
        """
        @step
        def work(self):
            self.x = 1
        """
    )
    proc = run_flow(write_flow(source), "run")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: step work (line ")
    assert "never transitions: end it with self.next(self.<next step>)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("executor", EXECUTORS)
def test_an_artifact_that_cannot_be_stored_fails_the_step_naming_it(load_flow, executor: str) -> None:
    source = flow_source(
        """
        @step
        def work(self):
            import threading
            self.fine = [1, 2]
            self.lock = threading.Lock()
            self.next(self.end)
        """
    )
    with pytest.raises(RunFailed) as info:
        Runner(load_flow(source), executor=executor, quiet=True).run()
    task = Run(f"F/{info.value.run_id}")["work"].task
    assert task.exception.startswith("ArtifactError: step work, artifact lock: cannot store a value of type lock")
    assert "keep it out of self" in task.exception
    assert task.artifacts == {}  # nothing of a failed task is recorded
