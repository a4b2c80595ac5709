"""The Ray executor: flows whose tasks run as Ray tasks on a local Ray bound to 127.0.0.1.

One local Ray serves the whole test session (starting one takes seconds); runs in
this process reuse it, and flows run from the command line connect to it with
``--ray-address``. A local Ray listens on every interface and binds its agent to
the external address, so these tests run only where loopback is the sole
interface that is up: inside ``unshare -n sh -c "ip link set lo up && ..."``, as CI does.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from matinee import Flow, Run
from matinee.core.runtime.runner import Runner
from matinee.errors import ConfigError, RunFailed

REPO = Path(__file__).resolve().parents[2]


def _interfaces_up() -> list[str]:
    """Network interfaces other than loopback that are up, in this process's network namespace.

    Asked of the kernel through a socket (``/sys/class/net`` shows the namespace that
    mounted ``/sys``, not necessarily this one).
    """
    import fcntl
    import socket
    import struct

    up = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            if name == "lo":
                continue
            request = struct.pack("16sh14x", name.encode()[:15], 0)
            try:
                flags = struct.unpack("16sh14x", fcntl.ioctl(sock.fileno(), 0x8913, request))[1]  # SIOCGIFFLAGS
            except OSError:
                continue
            if flags & 0x1:  # IFF_UP
                up.append(name)
    return up


def _ray_skip_reason() -> str | None:
    if importlib.util.find_spec("ray") is None:
        return "ray is not installed (pip install 'matinee[ray]')"
    try:
        up = _interfaces_up()
    except (OSError, AttributeError) as exc:
        return f"cannot list the network interfaces ({exc}): not starting Ray"
    if up:
        return (f"a non-loopback network interface is up ({', '.join(up)}): a local Ray would listen on it; "
                "run inside a loopback-only namespace: unshare -n sh -c 'ip link set lo up && pytest ...'")
    return None


SKIP_REASON = _ray_skip_reason()
needs_ray = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """One local Ray for the session; the Ray executor reuses it, the CLI connects to its address."""
    import ray

    from matinee.core.executors.ray import start_local_ray

    context = start_local_ray(ray, num_cpus=2)
    yield context.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture
def on_ray(ray_address: str) -> str:
    return ray_address


def run(cls: type, max_workers: int = 2, **params: object) -> Run:
    run_id = Runner(cls, params=params, executor="ray", max_workers=max_workers, quiet=True).run()
    return Run(f"{cls.__name__}/{run_id}")


# -- the shape of flows -------------------------------------------------------------


@needs_ray
def test_linear_flow_on_ray(load_flow, on_ray) -> None:
    cls = load_flow(
        """
        import os, sys
        from matinee import FlowSpec, current, step

        class F(FlowSpec):
            @step
            def start(self):
                self.x = 1
                self.pid = os.getpid()
                print("hello from start")
                print("to stderr", file=sys.stderr)
                os.system("echo from a child process")
                current.log_metric("m", 3.0)
                self.next(self.middle)

            @step
            def middle(self):
                self.x += 1
                self.next(self.end)

            @step
            def end(self):
                self.total = self.x * 10
        """
    )
    result = run(cls)
    assert result.successful
    assert "executor:ray" in result.system_tags
    assert result.data.total == 20
    start = result["start"].task
    assert start.data.pid != __import__("os").getpid()  # ran in a Ray worker, not here
    assert start.stdout == "hello from start\nfrom a child process\n"
    assert start.stderr == "to stderr\n"
    assert result.metric("m").last == 3.0


class _TimedStream:
    """A text stream that records when each line was written."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        self.lines += [(time.monotonic(), line) for line in text.splitlines()]
        return len(text)

    def flush(self) -> None:
        pass


@needs_ray
def test_output_of_a_running_task_on_a_local_ray_is_shown_live(load_flow, on_ray) -> None:
    cls = load_flow(
        """
        import time
        from matinee import FlowSpec, step

        class F(FlowSpec):
            @step
            def start(self):
                print("before the wait", flush=True)
                time.sleep(2)
                print("after the wait")
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    out = _TimedStream()
    saved, sys.stdout = sys.stdout, out  # type: ignore[assignment]
    try:
        result = run(cls)
    finally:
        sys.stdout = saved
    when = {line.split("] ", 1)[1]: at for at, line in out.lines if line.startswith("[")}
    assert when["after the wait"] - when["before the wait"] > 1.0
    assert result["start"].task.stdout == "before the wait\nafter the wait\n"


@needs_ray
def test_branch_join_and_merge_artifacts_on_ray(load_flow, on_ray) -> None:
    cls = load_flow(
        """
        from matinee import FlowSpec, step

        class F(FlowSpec):
            @step
            def start(self):
                self.shared = "same"
                self.next(self.a, self.b)

            @step
            def a(self):
                self.from_a = 1
                self.next(self.join)

            @step
            def b(self):
                self.from_b = 2
                self.next(self.join)

            @step
            def join(self, inputs):
                self.both = inputs.a.from_a + inputs.b.from_b
                self.merge_artifacts(inputs)
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    result = run(cls)
    assert result.successful
    data = result.data
    assert (data.both, data.from_a, data.from_b, data.shared) == (3, 1, 2, "same")


FOREACH_TIMES = """
import time
from matinee import FlowSpec, step

class F(FlowSpec):
    @step
    def start(self):
        self.items = list(range(4))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        self.began = time.time()
        time.sleep(0.3)
        self.ended = time.time()
        self.square = self.input ** 2
        self.next(self.join)

    @step
    def join(self, inputs):
        self.squares = [i.square for i in inputs]
        self.spans = [(i.began, i.ended) for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    events = sorted([(b, 1) for b, _ in spans] + [(e, -1) for _, e in spans])
    now = most = 0
    for _, delta in events:
        now += delta
        most = max(most, now)
    return most


@needs_ray
def test_foreach_respects_the_concurrency_limit(load_flow, on_ray) -> None:
    result = run(load_flow(FOREACH_TIMES), max_workers=1)
    assert result.successful
    assert result.data.squares == [0, 1, 4, 9]
    assert _most_at_once(result.data.spans) == 1
    assert len(list(result["work"].tasks())) == 4


@needs_ray
def test_nested_foreach_on_ray(load_flow, on_ray) -> None:
    cls = load_flow(
        """
        from matinee import FlowSpec, step

        class F(FlowSpec):
            @step
            def start(self):
                self.outer = ["a", "b"]
                self.next(self.split_inner, foreach="outer")

            @step
            def split_inner(self):
                self.letter = self.input
                self.inner = [1, 2, 3]
                self.next(self.leaf, foreach="inner")

            @step
            def leaf(self):
                self.label = f"{self.letter}{self.input}"
                self.next(self.join_inner)

            @step
            def join_inner(self, inputs):
                self.labels = [i.label for i in inputs]
                self.next(self.join_outer)

            @step
            def join_outer(self, inputs):
                self.all_labels = [i.labels for i in inputs]
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    result = run(cls)
    assert result.successful
    assert result.data.all_labels == [["a1", "a2", "a3"], ["b1", "b2", "b3"]]
    assert len(list(result["leaf"].tasks())) == 6


@needs_ray
def test_artifacts_are_readable_afterwards_through_the_client(load_flow, on_ray) -> None:
    import numpy as np

    cls = load_flow(
        """
        import numpy as np
        from matinee import FlowSpec, Parameter, step

        class F(FlowSpec):
            size = Parameter("size", default=1000)

            @step
            def start(self):
                self.vector = np.arange(self.size, dtype=np.float64)
                self.config = {"name": "grid", "values": [1, 2]}
                self.next(self.end)

            @step
            def end(self):
                self.mean = float(self.vector.mean())
        """
    )
    result = run(cls, size=500)
    latest = Flow("F").latest_successful_run
    assert latest is not None and latest.id == result.id
    np.testing.assert_array_equal(latest["start"].task.data.vector, np.arange(500, dtype=np.float64))
    assert latest.data.config == {"name": "grid", "values": [1, 2]}
    assert latest.data.mean == 249.5
    assert latest.params["size"] == 500


@needs_ray
def test_a_step_on_ray_registers_a_model_in_the_runs_registry(load_flow, on_ray) -> None:
    import matinee

    cls = load_flow(
        """
        from matinee import FlowSpec, current, step

        class F(FlowSpec):
            @step
            def start(self):
                self.model = {"weights": [0.5, 0.25]}
                current.register_model("ranker", "model", metrics={"auc": 0.7})
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    result = run(cls)
    assert result.successful
    assert matinee.load_model("ranker/1") == {"weights": [0.5, 0.25]}


# -- resources ------------------------------------------------------------------------


@needs_ray
def test_resources_become_the_ray_resource_request(load_flow, on_ray) -> None:
    cls = load_flow(
        """
        from matinee import FlowSpec, resources, step

        def assigned():
            import ray
            return ray.get_runtime_context().get_assigned_resources()

        class F(FlowSpec):
            @step
            def start(self):
                self.plain = assigned()
                self.next(self.sized)

            @resources(cpu=0.5, memory=64)
            @step
            def sized(self):
                self.sized_request = assigned()
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    result = run(cls)
    assert result.data.plain == {"CPU": 1.0}
    assert result.data.sized_request == {"CPU": 0.5, "memory": 64 * 1024 * 1024}


def test_ray_options_from_resources() -> None:
    from matinee import resources
    from matinee.core.executors.ray import ray_options

    def decorated(**settings: object) -> dict:
        fn = resources(**settings)(lambda self: None)
        return ray_options(fn._matinee_decorators)

    assert ray_options({}) == {"num_cpus": 1}
    assert decorated(cpu=2, gpu=1, memory=2048) == {"num_cpus": 2.0, "num_gpus": 1.0, "memory": 2048 * 2**20}
    assert decorated(cpu=4) == {"num_cpus": 4.0, "memory": 4096 * 2**20}  # @resources' default memory


@needs_ray
def test_a_step_asking_for_more_than_the_local_ray_has_fails_at_once(load_flow, on_ray) -> None:
    cls = load_flow(
        """
        from matinee import FlowSpec, resources, step

        class F(FlowSpec):
            @step
            def start(self):
                self.next(self.train)

            @resources(gpu=1, memory=100)
            @step
            def train(self):
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    started = time.monotonic()
    with pytest.raises(RunFailed, match=r"ResourcesUnavailable: step train asks for gpu=1; this Ray has 2 CPU"):
        run(cls)
    assert time.monotonic() - started < 10


# -- failures ------------------------------------------------------------------------

RETRY = """
import os, signal
from matinee import FlowSpec, Parameter, current, retry, step

class F(FlowSpec):
    counter = Parameter("counter", default="")
    how = Parameter("how", default="raise")

    @step
    def start(self):
        self.next(self.work)

    @retry(times=2, minutes_between_retries=0)
    @step
    def work(self):
        with open(self.counter, "a") as fh:
            fh.write(f"{current.retry_count}\\n")
        print(f"attempt {current.retry_count}", flush=True)
        if current.retry_count == 0:
            if self.how == "exit":
                os._exit(3)
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("first attempt fails")
        self.retry_count_seen = current.retry_count
        self.next(self.end)

    @step
    def end(self):
        pass
"""


@needs_ray
@pytest.mark.parametrize("how", ["raise", "exit", "kill"])
def test_retry_after_an_exception_or_a_dead_worker(load_flow, on_ray, tmp_path: Path, how: str) -> None:
    counter = tmp_path / "counter.txt"
    result = run(load_flow(RETRY), counter=str(counter), how=how)
    assert result.successful
    assert counter.read_text().splitlines() == ["0", "1"]
    task = result["work"].task
    assert task.data.retry_count_seen == 1
    assert [(a["attempt"], a["status"]) for a in task.attempts] == [(0, "failed"), (1, "completed")]
    first = task.attempts[0]["exception"]
    if how == "raise":
        assert first == "RuntimeError: first attempt fails"
    else:
        assert first.startswith("ProcessDied: the task's Ray worker died (WorkerCrashedError")
    assert task.stdout == "attempt 1\n"


@needs_ray
def test_a_dead_worker_without_retry_fails_the_run_with_the_cause(load_flow, on_ray, tmp_path: Path) -> None:
    source = RETRY.replace("    @retry(times=2, minutes_between_retries=0)\n", "")
    with pytest.raises(RunFailed, match="ProcessDied: the task's Ray worker died") as info:
        run(load_flow(source), counter=str(tmp_path / "c.txt"), how="exit")
    failed = Run(f"F/{info.value.run_id}")
    assert failed.status == "failed"
    task = failed["work"].task
    assert task.status == "failed"
    assert task.exception.startswith("ProcessDied")
    assert task.stdout == "attempt 0\n"  # read back from the worker's capture file on this node


TIMEOUT = """
import signal, time
from matinee import FlowSpec, Parameter, catch, step, timeout

class F(FlowSpec):
    block = Parameter("block", default=False)

    @step
    def start(self):
        self.next(self.work)

    {decorators}
    @timeout(seconds={seconds})
    @step
    def work(self):
        if self.block:
            signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGALRM}})
        time.sleep(30)
        self.next(self.end)

    @step
    def end(self):
        pass
"""


@needs_ray
def test_timeout_fails_a_slow_step(load_flow, on_ray) -> None:
    started = time.monotonic()
    with pytest.raises(RunFailed, match=r"TimeoutError: step work timed out after 1 s \(@timeout\)") as info:
        run(load_flow(TIMEOUT.format(decorators="", seconds=1)))
    assert time.monotonic() - started < 10
    assert Run(f"F/{info.value.run_id}")["work"].task.exception.startswith("TimeoutError: step work timed out")


@needs_ray
def test_a_ray_task_that_ignores_its_timeout_is_cancelled(load_flow, on_ray, monkeypatch) -> None:
    from matinee.core.executors import ray as ray_executor

    monkeypatch.setattr(ray_executor, "KILL_GRACE", 0.5)
    started = time.monotonic()
    with pytest.raises(RunFailed, match="TimeoutError: step work exceeded its @timeout and was killed") as info:
        run(load_flow(TIMEOUT.format(decorators="", seconds=0.3)), block=True)
    assert time.monotonic() - started < 10
    assert Run(f"F/{info.value.run_id}")["work"].task.status == "failed"


@needs_ray
def test_a_timeout_counts_from_the_start_not_from_the_queue(load_flow, on_ray, monkeypatch) -> None:
    from matinee.core.executors import ray as ray_executor

    monkeypatch.setattr(ray_executor, "KILL_GRACE", 0.2)
    cls = load_flow(
        """
        import time
        from matinee import FlowSpec, resources, step, timeout

        class F(FlowSpec):
            @step
            def start(self):
                self.items = [1, 2]
                self.next(self.work, foreach="items")

            @resources(cpu=2, memory=10)
            @timeout(seconds=2.5)
            @step
            def work(self):
                time.sleep(1.5)  # the second waits in Ray's queue while the first holds both CPUs
                self.next(self.join)

            @step
            def join(self, inputs):
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    assert run(cls, max_workers=2).successful


@needs_ray
def test_timeout_with_catch(load_flow, on_ray) -> None:
    result = run(load_flow(TIMEOUT.format(decorators='@catch(var="err")', seconds=1)))
    assert result.successful
    assert result.data.err.type == "TimeoutError"
    assert "timed out after 1 s" in result.data.err.message


@needs_ray
def test_catch_stores_the_exception_and_the_flow_goes_on(load_flow, on_ray) -> None:
    cls = load_flow(
        """
        from matinee import FlowSpec, catch, step

        class F(FlowSpec):
            @step
            def start(self):
                self.before = "kept"
                self.next(self.work)

            @catch(var="err")
            @step
            def work(self):
                raise KeyError("missing thing")
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    result = run(cls)
    assert result.successful
    assert result.data.err.type == "KeyError"
    assert result.data.before == "kept"
    assert "KeyError" in result["work"].task.attempts[-1]["exception"]


@needs_ray
def test_resume_a_failed_ray_run(load_flow, on_ray, tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    cls = load_flow(
        """
        import os
        from matinee import FlowSpec, Parameter, step

        class F(FlowSpec):
            log = Parameter("log", default="")

            @step
            def start(self):
                open(self.log, "a").write("start\\n")
                self.items = [1, 2, 3]
                self.next(self.work, foreach="items")

            @step
            def work(self):
                open(self.log, "a").write(f"work {self.input}\\n")
                if self.input == 3 and not os.path.exists(self.log + ".fixed"):
                    raise ValueError("not yet")
                self.double = self.input * 2
                self.next(self.join)

            @step
            def join(self, inputs):
                self.doubles = [i.double for i in inputs]
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    with pytest.raises(RunFailed, match="ValueError: not yet") as info:
        run(cls, log=str(log))
    Path(str(log) + ".fixed").touch()
    log.write_text("")
    resumed_id = Runner(cls, executor="ray", origin_run_id=info.value.run_id, quiet=True).run()
    resumed = Run(f"F/{resumed_id}")
    assert resumed.successful
    assert resumed.origin_run_id == info.value.run_id
    assert resumed.data.doubles == [2, 4, 6]
    assert "start" not in log.read_text()  # cloned, not run again
    assert "work 3" in log.read_text()


# -- the command line, settings and the missing extra ------------------------------------

CLI_FLOW = """
from matinee import FlowSpec, step

class F(FlowSpec):
    @step
    def start(self):
        self.items = [1, 2, 3]
        self.next(self.square, foreach="items")

    @step
    def square(self):
        print("squaring", self.input)
        self.sq = self.input ** 2
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(i.sq for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        print("total", self.total)

if __name__ == "__main__":
    F()
"""


@needs_ray
def test_run_from_the_command_line_on_a_ray_address(write_flow, run_flow, on_ray: str, tmp_path: Path) -> None:
    id_file = tmp_path / "run_id.txt"
    proc = run_flow(write_flow(CLI_FLOW), "run", "--executor", "ray", "--ray-address", on_ray,
                    "--run-id-file", str(id_file), timeout=90)
    assert proc.returncode == 0, proc.stderr
    run_id = int(id_file.read_text())
    assert f"Run F/{run_id} starting (executor ray" in proc.stdout
    assert f"[{run_id}/end/" in proc.stdout and "] total 14" in proc.stdout
    assert "] squaring 2" in proc.stdout
    result = Run(f"F/{run_id}")
    assert result.data.total == 14
    assert "executor:ray" in result.system_tags


def test_the_ray_executor_without_ray_names_the_extra(load_flow, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    cls = load_flow(CLI_FLOW)
    with pytest.raises(ConfigError, match=r"pip install 'matinee\[ray\]'"):
        Runner(cls, executor="ray", quiet=True).run()
    assert Flow("F").latest_run.status == "failed"  # the run is not left running


def test_the_command_line_offers_ray(write_flow, run_flow, tmp_path: Path) -> None:
    proc = run_flow(write_flow(CLI_FLOW), "run", "--help")
    assert "--ray-address" in proc.stdout and "ray" in proc.stdout
    env = {"PYTHONPATH": str(tmp_path / "noray")}
    (tmp_path / "noray").mkdir()
    (tmp_path / "noray" / "ray.py").write_text("raise ImportError('no ray here')\n")
    proc = run_flow(write_flow(CLI_FLOW), "run", "--executor", "ray", env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: this needs the optional package 'ray': pip install 'matinee[ray]'"
    )


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
def test_an_address_where_no_ray_listens_fails_at_once(write_flow, run_flow) -> None:
    started = time.monotonic()
    proc = run_flow(write_flow(CLI_FLOW), "run", "--ray-address", "127.0.0.1:1", timeout=60)
    assert time.monotonic() - started < 20
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot reach the Ray cluster at 127.0.0.1:1: Connection refused")
    assert Flow("F").latest_run.status == "failed"


# -- the examples ----------------------------------------------------------------------


def _load_example(name: str, monkeypatch: pytest.MonkeyPatch) -> object:
    path = REPO / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


@needs_ray
def test_hyperparameter_grid_example_on_ray(on_ray, monkeypatch: pytest.MonkeyPatch) -> None:
    grid = [
        {"model": "MostPopular", "params": {}},
        {"model": "ItemKNN", "params": {"neighbors": 20}},
        {"model": "ItemKNN", "params": {"neighbors": 50}},
    ]
    module = _load_example("ray_grid_search", monkeypatch)
    result = run(module.GridSearchFlow, **{"sim-size": "tiny", "grid": json.dumps(grid)})  # type: ignore[attr-defined]
    assert "executor:ray" in result.system_tags
    board = result.data.leaderboard
    assert len(board) == 3
    assert board == sorted(board, key=lambda row: -row["ndcg@10"])
    assert result.data.best["model"] in {"MostPopular", "ItemKNN"}
    assert len(list(result["fit"].tasks())) == 3
    assert "ndcg@10" in result["fit"].task.stdout


@needs_ray
def test_batch_scoring_example_on_ray(on_ray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    module = _load_example("ray_batch_scoring", monkeypatch)
    out = tmp_path / "scores"
    params = {"sim-size": "tiny", "partitions": 3, "k": 5, "output": str(out)}
    result = run(module.BatchScoringFlow, **params)  # type: ignore[attr-defined]
    assert result.successful
    files = sorted(out.glob("*.parquet"))
    assert [f.name for f in files] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    scores = pd.concat([pd.read_parquet(f) for f in files])
    assert list(scores.columns) == ["user_id", "rank", "item_id", "score"]
    members = result.data.members
    assert scores["user_id"].nunique() == members
    assert scores.groupby("user_id")["rank"].max().eq(5).all()
    assert result.data.rows == len(scores) == members * 5


@pytest.mark.parametrize(
    ("name", "args"),
    [("ray_grid_search", ["--grid", '[{"model": "MostPopular"}, {"model": "EASE", "params": {"l2": 50}}]']),
     ("ray_batch_scoring", ["--partitions", "2", "--k", "3", "--output", "scores"])],
)
def test_the_ray_examples_run_with_the_default_executor(run_flow, tmp_path: Path, name: str, args: list[str]) -> None:
    proc = run_flow(REPO / "examples" / f"{name}.py", "run", "--sim-size", "tiny", *args, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(executor process," in proc.stdout
    if name == "ray_batch_scoring":
        assert sorted(p.name for p in (tmp_path / "scores").glob("*.parquet")) == ["part-00000.parquet",
                                                                                    "part-00001.parquet"]
