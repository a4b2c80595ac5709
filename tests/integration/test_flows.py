"""The flow API end to end: artifacts, branches, foreach, joins, current, CLI options, logs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from matinee import Flow, Run
from matinee.core.flows.current import current
from matinee.core.runtime.runner import Runner
from matinee.core.store import open_store
from matinee.errors import FlowError, RunFailed

EXECUTORS = ["inline", "process"]


def run(cls: type, executor: str, **params: object) -> Run:
    run_id = Runner(cls, params=params, executor=executor, quiet=True).run()
    return Run(f"{cls.__name__}/{run_id}")


def artifact_keys(result: Run, step_name: str) -> dict[str, str]:
    return {name: artifact.key for name, artifact in result[step_name].task.artifacts.items()}


def blob_files(home: Path) -> set[str]:
    return {p.name for p in (home / "blobs").glob("??/*")}


# -- artifacts, branches, foreach ------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
def test_artifacts_flow_between_steps(load_flow, executor: str) -> None:
    cls = load_flow(
        """
        from matinee import FlowSpec, step

        class F(FlowSpec):
            @step
            def start(self):
                self.x = 1
                self.names = ["a"]
                self._private = "not an artifact"
                self.next(self.middle)

            @step
            def middle(self):
                self.seen_x = self.x
                self.x += 1
                self.names = self.names + ["b"]
                self.next(self.end)

            @step
            def end(self):
                self.total = self.x + self.seen_x
                self.names_at_end = list(self.names)
        """
    )
    result = run(cls, executor)
    assert result.successful and result.finished
    assert result["start"].task.data.x == 1
    assert "_private" not in result["start"].task
    assert result["middle"].task.data.seen_x == 1
    assert result.data.x == 2
    assert result.data.total == 3
    assert result.data.names_at_end == ["a", "b"]
    assert [s.name for s in result] == ["start", "middle", "end"]


@pytest.mark.parametrize("executor", EXECUTORS)
def test_static_branches_and_join(load_flow, executor: str) -> None:
    cls = load_flow(
        """
        from matinee import FlowSpec, step

        class F(FlowSpec):
            @step
            def start(self):
                self.base = 10
                self.next(self.a, self.b)

            @step
            def a(self):
                self.x = self.base + 1
                self.next(self.join)

            @step
            def b(self):
                self.x = self.base + 2
                self.next(self.join)

            @step
            def join(self, inputs):
                self.by_name = (inputs.a.x, inputs.b.x)
                self.iterated = sorted(i.x for i in inputs)
                self.count = len(inputs)
                self.first = inputs[0].x
                self.base_from_input = inputs.b.base
                try:
                    inputs.c
                except AttributeError as exc:
                    self.missing = str(exc)
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    result = run(cls, executor)
    join = result["join"].task.data
    assert join.by_name == (11, 12)
    assert join.iterated == [11, 12]
    assert join.count == 2
    assert join.first == 11
    assert join.base_from_input == 10
    assert "no input from step 'c'" in join.missing and "'a'" in join.missing
    assert "x" not in result["join"].task  # a join starts without its inputs' artifacts
    assert result.data.by_name == (11, 12)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_foreach_input_and_index(load_flow, executor: str) -> None:
    cls = load_flow(
        """
        from matinee import FlowSpec, step

        class F(FlowSpec):
            @step
            def start(self):
                self.items = ["p", "q", "r"]
                self.next(self.each, foreach="items")

            @step
            def each(self):
                self.pair = (self.index, self.input)
                self.next(self.join)

            @step
            def join(self, inputs):
                self.pairs = [i.pair for i in inputs]
                self.inputs_seen = [(i.index, i.input) for i in inputs]
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    result = run(cls, executor)
    assert result.data.pairs == [(0, "p"), (1, "q"), (2, "r")]
    assert result.data.inputs_seen == [(0, "p"), (1, "q"), (2, "r")]
    tasks = list(result["each"].tasks())
    assert len(tasks) == 3
    assert sorted((t.index, t.data.pair) for t in tasks) == [(0, (0, "p")), (1, (1, "q")), (2, (2, "r"))]
    assert all(t.foreach_stack[0][2] == 3 for t in tasks)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_foreach_over_a_generator_and_a_range(load_flow, executor: str) -> None:
    cls = load_flow(
        """
        from matinee import FlowSpec, step

        class F(FlowSpec):
            @step
            def start(self):
                self.items = (n * n for n in range(4))
                self.next(self.each, foreach="items")

            @step
            def each(self):
                self.square = self.input
                self.next(self.join)

            @step
            def join(self, inputs):
                self.squares = [i.square for i in inputs]
                self.steps = range(2)
                self.next(self.again, foreach="steps")

            @step
            def again(self):
                self.n = self.input
                self.next(self.join2)

            @step
            def join2(self, inputs):
                self.ns = [i.n for i in inputs]
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    result = run(cls, executor)
    assert result["join"].task.data.squares == [0, 1, 4, 9]
    assert result["start"].task.data.items == [0, 1, 4, 9]
    assert result.data.ns == [0, 1]


@pytest.mark.parametrize("executor", EXECUTORS)
def test_nested_foreach_full_matrix(load_flow, executor: str) -> None:
    cls = load_flow(
        """
        from matinee import FlowSpec, step

        class F(FlowSpec):
            @step
            def start(self):
                self.xs = [1, 2, 3]
                self.next(self.outer, foreach="xs")

            @step
            def outer(self):
                self.x = self.input
                self.ys = [10, 20, 30, 40]
                self.next(self.inner, foreach="ys")

            @step
            def inner(self):
                self.cell = (self.x, self.input, self.x * self.input)
                self.stack = self.foreach_stack()
                self.next(self.inner_join)

            @step
            def inner_join(self, inputs):
                self.row = [i.cell[2] for i in inputs]
                self.merge_artifacts(inputs, exclude=["cell", "stack"])
                self.next(self.outer_join)

            @step
            def outer_join(self, inputs):
                self.matrix = [i.row for i in inputs]
                self.row_xs = [i.x for i in inputs]
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    result = run(cls, executor)
    assert result.data.matrix == [[10, 20, 30, 40], [20, 40, 60, 80], [30, 60, 90, 120]]
    assert result.data.row_xs == [1, 2, 3]
    inner = list(result["inner"].tasks())
    assert len(inner) == 12
    cells = {(t.foreach_stack[0][1], t.foreach_stack[1][1]): t.data for t in inner}
    assert sorted(cells) == [(i, j) for i in range(3) for j in range(4)]
    for (i, j), data in cells.items():
        x, y = [1, 2, 3][i], [10, 20, 30, 40][j]
        assert data.cell == (x, y, x * y)
        assert data.stack == [(i, 3, x), (j, 4, y)]
    assert len(list(result["inner_join"].tasks())) == 3
    assert len(list(result["outer"].tasks())) == 3


@pytest.mark.parametrize("executor", EXECUTORS)
def test_split_inside_foreach(load_flow, executor: str) -> None:
    cls = load_flow(
        """
        from matinee import FlowSpec, step

        class F(FlowSpec):
            @step
            def start(self):
                self.items = [1, 2]
                self.next(self.each, foreach="items")

            @step
            def each(self):
                self.next(self.double, self.triple)

            @step
            def double(self):
                self.v = self.input * 2
                self.next(self.both)

            @step
            def triple(self):
                self.v = self.input * 3
                self.next(self.both)

            @step
            def both(self, inputs):
                self.item = self.input
                self.total = inputs.double.v + inputs.triple.v
                self.next(self.join)

            @step
            def join(self, inputs):
                self.totals = [(i.item, i.total) for i in inputs]
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    result = run(cls, executor)
    assert result.data.totals == [(1, 5), (2, 10)]
    assert len(list(result["double"].tasks())) == 2
    assert len(list(result["both"].tasks())) == 2


# -- merge_artifacts --------------------------------------------------------------------

MERGE_FLOW = """
from matinee import FlowSpec, Parameter, step

class F(FlowSpec):
    mode = Parameter("mode", default="set")

    @step
    def start(self):
        self.common = "same"
        self.next(self.a, self.b)

    @step
    def a(self):
        self.differs = 1
        self.other = "a"
        self.shared = [1, 2]
        self.only_a = "A"
        self.next(self.join)

    @step
    def b(self):
        self.differs = 2
        self.other = "b"
        self.shared = [1, 2]
        self.next(self.join)

    @step
    def join(self, inputs):
        if self.mode == "set":
            self.differs = "join"
            self.other = "join"
            self.shared = "set in join"
            self.merge_artifacts(inputs)
        elif self.mode == "exclude":
            self.merge_artifacts(inputs, exclude=["differs", "other"])
        elif self.mode == "include":
            self.merge_artifacts(inputs, include=["common", "only_a"])
        elif self.mode == "include-missing":
            self.merge_artifacts(inputs, include=["common", "nope"])
        elif self.mode == "both":
            self.merge_artifacts(inputs, exclude=["differs"], include=["common"])
        else:
            self.merge_artifacts(inputs)
        self.next(self.end)

    @step
    def end(self):
        pass
"""


@pytest.mark.parametrize("executor", EXECUTORS)
def test_merge_artifacts_values_set_in_the_join_win(load_flow, executor: str) -> None:
    data = run(load_flow(MERGE_FLOW), executor, mode="set").data
    assert data.common == "same"
    assert data.only_a == "A"
    assert data.differs == "join"
    assert data.other == "join"
    assert data.shared == "set in join"


def test_merge_artifacts_exclude(load_flow) -> None:
    data = run(load_flow(MERGE_FLOW), "inline", mode="exclude").data
    assert (data.common, data.shared, data.only_a) == ("same", [1, 2], "A")
    assert "differs" not in data and "other" not in data


def test_merge_artifacts_include(load_flow) -> None:
    data = run(load_flow(MERGE_FLOW), "inline", mode="include").data
    assert (data.common, data.only_a) == ("same", "A")
    assert "shared" not in data and "differs" not in data


@pytest.mark.parametrize(
    ("mode", "error", "message"),
    [
        ("conflict", "MergeError", "step join: artifacts differs, other differ between the inputs"),
        ("include-missing", "MergeError", "merge_artifacts(include=...) names nope, which no input has"),
        ("both", "FlowError", "merge_artifacts() takes exclude or include, not both"),
    ],
)
@pytest.mark.parametrize("executor", EXECUTORS)
def test_merge_artifacts_errors(load_flow, executor: str, mode: str, error: str, message: str) -> None:
    cls = load_flow(MERGE_FLOW)
    with pytest.raises(RunFailed) as info:
        run(cls, executor, mode=mode)
    assert message in str(info.value)
    failed = Run(f"F/{info.value.run_id}")
    assert not failed.successful
    task = failed["join"].task
    assert task.exception.startswith(f"{error}: ")
    assert message in task.exception
    assert "end" not in failed


def test_merge_artifacts_outside_a_join_is_refused(load_flow) -> None:
    cls = load_flow(
        """
        from matinee import FlowSpec, step

        class F(FlowSpec):
            @step
            def start(self):
                self.merge_artifacts([])
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    with pytest.raises(RunFailed, match=r"step start: merge_artifacts\(\) works only in a join step"):
        run(cls, "inline")


# -- current ----------------------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
def test_current_inside_a_step(load_flow, executor: str) -> None:
    cls = load_flow(
        """
        from matinee import FlowSpec, current, step

        def identity():
            return {
                "flow_name": current.flow_name,
                "run_id": current.run_id,
                "step_name": current.step_name,
                "task_id": current.task_id,
                "pathspec": current.pathspec,
                "retry_count": current.retry_count,
                "origin_run_id": current.origin_run_id,
                "username": current.username,
                "namespace": current.namespace,
                "tags": sorted(current.tags),
                "running": current.is_running_flow,
            }

        class F(FlowSpec):
            @step
            def start(self):
                self.id_start = identity()
                self.next(self.end)

            @step
            def end(self):
                self.id_end = identity()
        """
    )
    run_id = Runner(cls, executor=executor, tags=("t1",), quiet=True).run()
    result = Run(f"F/{run_id}")
    for step_name, attr in (("start", "id_start"), ("end", "id_end")):
        task = result[step_name].task
        seen = getattr(task.data, attr)
        assert seen == {
            "flow_name": "F",
            "run_id": str(run_id),
            "step_name": step_name,
            "task_id": str(task.id),
            "pathspec": task.pathspec,
            "retry_count": 0,
            "origin_run_id": None,
            "username": "tester",
            "namespace": "user:tester",
            "tags": ["t1"],
            "running": True,
        }
    assert not current.is_running_flow
    assert current.pathspec is None


def test_current_tracking_calls_outside_a_step_point_at_start_run() -> None:
    with pytest.raises(FlowError, match=r"current.log_metric\(\) works only inside a running step.*start_run"):
        current.log_metric("loss", 1.0)


# -- IncludeFile, show, --tag, --run-id-file ------------------------------------------


def test_include_file_text_and_bytes(write_flow, run_flow, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("héllo\nworld\n", encoding="utf-8")
    raw = tmp_path / "raw.bin"
    raw.write_bytes(bytes(range(256)))
    (tmp_path / "default.txt").write_text("from the default file")
    path = write_flow(
        """
        from matinee import FlowSpec, IncludeFile, step

        class F(FlowSpec):
            notes = IncludeFile("notes", help="some text")
            raw = IncludeFile("raw", is_text=False)
            fallback = IncludeFile("fallback", default="default.txt")

            @step
            def start(self):
                self.notes_copy = self.notes
                self.raw_len = len(self.raw)
                self.next(self.end)

            @step
            def end(self):
                pass

        if __name__ == "__main__":
            F()
        """
    )
    proc = run_flow(path, "run", "--notes", str(notes), "--raw", str(raw))
    assert proc.returncode == 0, proc.stderr
    notes.write_text("changed")  # the run keeps what it read
    data = Flow("F").latest_run.data
    assert data.notes == "héllo\nworld\n" and isinstance(data.notes, str)
    assert data.notes_copy == "héllo\nworld\n"
    assert data.raw == bytes(range(256)) and isinstance(data.raw, bytes)
    assert data.raw_len == 256
    assert data.fallback == "from the default file"
    assert Flow("F").latest_run.params == {"notes": str(notes), "raw": str(raw), "fallback": "default.txt"}


def test_include_file_that_cannot_be_read(write_flow, run_flow, tmp_path: Path) -> None:
    path = write_flow(
        """
        from matinee import FlowSpec, IncludeFile, step

        class F(FlowSpec):
            notes = IncludeFile("notes")

            @step
            def start(self):
                self.next(self.end)

            @step
            def end(self):
                pass

        if __name__ == "__main__":
            F()
        """
    )
    proc = run_flow(path, "run", "--notes", str(tmp_path / "absent.txt"))
    assert proc.returncode == 2
    assert "parameter --notes: cannot read file" in proc.stderr and "absent.txt" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert open_store().metadata.list_runs() == []


def test_show_prints_steps_and_transitions(write_flow, run_flow) -> None:
    path = write_flow(
        '''
        from matinee import FlowSpec, Parameter, retry, step

        class F(FlowSpec):
            """Trains things."""

            alpha = Parameter("alpha", default=0.5, help="learning rate")

            @step
            def start(self):
                """Load the data."""
                self.items = [1, 2]
                self.next(self.each, foreach="items")

            @retry
            @step
            def each(self):
                self.next(self.join)

            @step
            def join(self, inputs):
                self.next(self.a, self.b)

            @step
            def a(self):
                self.next(self.join2)

            @step
            def b(self):
                self.next(self.join2)

            @step
            def join2(self, inputs):
                self.next(self.end)

            @step
            def end(self):
                pass

        if __name__ == "__main__":
            F()
        '''
    )
    proc = run_flow(path, "show")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("F\n")
    assert "Trains things." in out
    assert "--alpha (float, default 0.5): learning rate" in out
    assert "Step start (foreach)\n    Load the data.\n    => each for each item of items" in out
    assert "Step each (linear)\n    decorators: @retry\n    => join" in out
    assert "Step join (join, split)\n    => a and b" in out
    assert "Step join2 (join)" in out
    assert out.rstrip().endswith("Step end (end)")
    assert out.index("Step start") < out.index("Step each") < out.index("Step join ") < out.index("Step end")
    assert open_store().metadata.list_runs() == []


def test_show_refuses_a_malformed_flow(write_flow, run_flow) -> None:
    path = write_flow(
        """
        from matinee import FlowSpec, step

        class F(FlowSpec):
            @step
            def start(self):
                self.next(self.missing)

            @step
            def end(self):
                pass

        if __name__ == "__main__":
            F()
        """
    )
    proc = run_flow(path, "show")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: step start (line")
    assert "transitions to unknown step 'missing'" in proc.stderr
    assert "Traceback" not in proc.stderr


LINEAR = """
import sys
from matinee import FlowSpec, Parameter, step

class F(FlowSpec):
    fail = Parameter("fail", default=False)

    @step
    def start(self):
        print("out line 1")
        print("out line 2")
        print("err line", file=sys.stderr)
        self.next(self.end)

    @step
    def end(self):
        if self.fail:
            raise RuntimeError("asked to fail")

if __name__ == "__main__":
    F()
"""


def test_tags(write_flow, run_flow) -> None:
    path = write_flow(LINEAR)
    proc = run_flow(path, "run", "--tag", "exp:1", "--tag", "nightly", "--executor", "inline")
    assert proc.returncode == 0, proc.stderr
    assert run_flow(path, "run").returncode == 0
    runs = list(Flow("F").runs())
    assert len(runs) == 2
    newest, oldest = runs
    assert oldest.tags == {"exp:1", "nightly"}
    assert newest.tags == frozenset()
    assert {"user:tester", "executor:inline"} <= oldest.system_tags
    assert [r.id for r in Flow("F").runs("nightly")] == [oldest.id]
    assert [r.id for r in Flow("F").runs("nightly", "exp:1")] == [oldest.id]
    assert list(Flow("F").runs("nightly", "other")) == []


def test_run_id_file_on_success_and_failure(write_flow, run_flow, tmp_path: Path) -> None:
    path = write_flow(LINEAR)
    ok_file, bad_file = tmp_path / "ok.id", tmp_path / "bad.id"
    assert run_flow(path, "run", "--run-id-file", str(ok_file)).returncode == 0
    proc = run_flow(path, "run", "--fail", "true", "--run-id-file", str(bad_file))
    assert proc.returncode == 1
    good, bad = Run(f"F/{ok_file.read_text()}"), Run(f"F/{bad_file.read_text()}")
    assert good.successful
    assert not bad.successful and bad.finished
    assert bad.id == good.id + 1


@pytest.mark.parametrize("executor", EXECUTORS)
def test_task_output_is_streamed_with_a_prefix_and_stored(write_flow, run_flow, executor: str) -> None:
    path = write_flow(LINEAR)
    proc = run_flow(path, "run", "--executor", executor)
    assert proc.returncode == 0, proc.stderr
    result = Flow("F").latest_run
    task = result["start"].task
    prefix = f"[{result.id}/start/{task.id}] "
    assert f"{prefix}out line 1\n{prefix}out line 2\n" in proc.stdout
    assert f"{prefix}err line\n" in proc.stderr
    assert "err line" not in proc.stdout and "out line" not in proc.stderr
    assert task.stdout == "out line 1\nout line 2\n"
    assert task.stderr == "err line\n"
    assert result["end"].task.stdout == ""


def test_quiet_prints_only_the_steps_output(write_flow, run_flow) -> None:
    path = write_flow(LINEAR)
    proc = run_flow(path, "--quiet", "run")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and all(line.endswith(("out line 1", "out line 2")) for line in lines)


# -- content-addressed artifacts ---------------------------------------------------------

SAME_VALUES = """
import numpy as np
from matinee import FlowSpec, step

class F(FlowSpec):
    @step
    def start(self):
        self.array = np.arange(1000, dtype=np.float64).reshape(10, 100)
        self.table = {"a": list(range(100)), "b": "text" * 50}
        self.items = [1, 2, 3]
        self.next(self.each, foreach="items")

    @step
    def each(self):
        self.square = self.input ** 2
        self.copy = self.array * 1  # equal value, new object: stored once
        self.next(self.join)

    @step
    def join(self, inputs):
        self.squares = [i.square for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        self.total = sum(self.squares)
"""


@pytest.mark.parametrize("executor", EXECUTORS)
def test_identical_values_are_stored_once(load_flow, home: Path, executor: str) -> None:
    cls = load_flow(SAME_VALUES)
    first = run(cls, executor)
    after_first = blob_files(home)
    assert after_first  # something was stored
    second = run(cls, executor)
    assert blob_files(home) == after_first
    assert second.id != first.id
    for step_name in ("start", "join", "end"):
        assert artifact_keys(first, step_name) == artifact_keys(second, step_name)
    each = first["each"].task.artifacts
    assert each["copy"].key == first["start"].task.artifacts["array"].key
    assert second.data.total == 14


FRAME_FLOW = """
import numpy as np
import pandas as pd
from matinee import FlowSpec, step

def arrays():
    return {
        "float32": np.arange(12, dtype=np.float32).reshape(3, 4) / 3,
        "fortran": np.asfortranarray(np.arange(24, dtype=np.int64).reshape(4, 6)),
        "zero_d": np.array(3.25),
        "structured": np.array(
            [(1, 2.5, b"ab"), (-3, np.nan, b"xyz")], dtype=[("id", "<i4"), ("score", "<f8"), ("tag", "S3")]
        ),
        "strided": np.arange(40, dtype=np.int16).reshape(4, 10)[:, ::3],
        "empty": np.zeros((0, 5), dtype=np.uint8),
        "big_endian": np.arange(6, dtype=">i4"),
        "datetimes": np.array(["2024-01-01T00:00:00.000000001", "NaT"], dtype="datetime64[ns]"),
        "complex": np.array([1 + 2j, -0.5j]),
        "bools": np.array([True, False, True]),
        "unicode": np.array(["ab", "ünï"]),
    }

def frame():
    return pd.DataFrame(
        {
            "i32": np.arange(4, dtype="int32"),
            "u8": np.array([0, 1, 254, 255], dtype="uint8"),
            "f": [0.1, np.nan, 2.5, -1e300],
            "f32": np.array([1.5, 2.25, np.nan, 0], dtype="float32"),
            "s": ["a", "b", None, "d"],
            "cat": pd.Categorical(["x", "y", "x", "z"], categories=["z", "y", "x"], ordered=True),
            "ts": pd.date_range("2024-01-01", periods=4, freq="h", tz="UTC"),
            "td": pd.to_timedelta([1, 2, 3, 4], unit="s"),
            "b": [True, False, True, False],
            "nullable": pd.array([1, None, 3, 4], dtype="Int64"),
        },
        index=pd.Index(["w", "x", "y", "z"], name="key"),
    )

def multi():
    index = pd.MultiIndex.from_product([["a", "b"], [1, 2]], names=["letter", "number"])
    return pd.DataFrame({"v": [1.0, 2.0, 3.0, 4.0]}, index=index)

class F(FlowSpec):
    @step
    def start(self):
        for name, value in arrays().items():
            setattr(self, name, value)
        self.frame = frame()
        self.multi = multi()
        self.next(self.end)

    @step
    def end(self):
        self.end_saw_fortran = bool(self.fortran.flags.f_contiguous)
        self.end_frame_dtypes = {c: str(t) for c, t in self.frame.dtypes.items()}
"""


@pytest.mark.parametrize("executor", EXECUTORS)
def test_numpy_and_pandas_round_trip_exactly(load_flow, executor: str) -> None:
    cls = load_flow(FRAME_FLOW)
    module = sys.modules[cls.__module__]
    result = run(cls, executor)
    data = result.data
    for name, expected in module.arrays().items():
        loaded = getattr(data, name)
        assert type(loaded) is np.ndarray, name
        assert loaded.dtype == expected.dtype, name
        assert loaded.shape == expected.shape, name
        assert loaded.tobytes() == expected.tobytes(), name  # bit for bit, NaN and NaT included
        if expected.dtype.names is None:
            np.testing.assert_array_equal(loaded, expected, err_msg=name, strict=True)
    assert data.fortran.flags.f_contiguous and not data.fortran.flags.c_contiguous
    assert data.end_saw_fortran
    assert data.zero_d.ndim == 0 and data.zero_d.item() == 3.25
    assert data.structured.dtype.names == ("id", "score", "tag")
    assert result["start"].task.artifacts["fortran"].codec == "npy"
    assert result["start"].task.artifacts["frame"].codec == "arrow-df"

    expected = module.frame()
    pd.testing.assert_frame_equal(data.frame, expected, check_exact=True, check_index_type=True)
    assert data.frame.dtypes.to_dict() == expected.dtypes.to_dict()
    assert data.frame.index.name == "key"
    assert data.end_frame_dtypes == {c: str(t) for c, t in expected.dtypes.items()}
    pd.testing.assert_frame_equal(data.multi, module.multi(), check_exact=True, check_index_type=True)


EDGE_FRAMES = {
    "default-range-index": lambda: pd.DataFrame({"a": [1, 2, 3]}),
    "integer-column-labels": lambda: pd.DataFrame(np.arange(6).reshape(3, 2), index=pd.Index([7, 8, 9])),
    "object-dtype-strings": lambda: pd.DataFrame({"s": pd.Series(["a", "b"], dtype=object)}, index=pd.Index([0, 1])),
    "list-values": lambda: pd.DataFrame({"l": [[1, 2], [3]]}, index=pd.Index([0, 1])),
    "dict-values": lambda: pd.DataFrame({"d": [{"a": 1}, {"b": 2}]}, index=pd.Index([0, 1])),
    "int-and-str-labels": lambda: pd.DataFrame({1: [1], "1": [2]}, index=pd.Index([0])),
}


@pytest.mark.parametrize("case", list(EDGE_FRAMES))
def test_dataframe_edge_cases_round_trip_exactly(case: str) -> None:
    """A DataFrame comes back as it was saved: index class, labels, dtypes and values."""
    store = open_store().artifacts
    frame = EDGE_FRAMES[case]()
    loaded = store.load(store.save(frame))
    pd.testing.assert_frame_equal(loaded, frame, check_exact=True, check_index_type=True)
    assert [type(c) for c in loaded.columns] == [type(c) for c in frame.columns]
    for column in frame.columns:
        assert [type(v) for v in loaded[column]] == [type(v) for v in frame[column]]
        assert loaded[column].tolist() == frame[column].tolist()


FOREACH_OVER = """
import pandas as pd
from matinee import FlowSpec, step

class Over(FlowSpec):
    @step
    def start(self):
        self.things = {kind!s}
        self.next(self.each, foreach="things")

    @step
    def each(self):
        self.item = self.input
        self.next(self.join)

    @step
    def join(self, inputs):
        self.items = [i.item for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    Over()
"""


@pytest.mark.parametrize(
    "kind, expected",
    [
        ('{"a": 1, "b": 2}', ["a", "b"]),  # a dict: its keys, as iterating it gives
        ('pd.Series([10, 20], index=[5, 7])', [10, 20]),  # a Series: its values, not its labels
        ('(x * x for x in range(3))', [0, 1, 4]),  # a generator
        ('"abc"', None),  # a string is refused
    ],
)
def test_foreach_over_other_iterables(write_flow, run_flow, kind, expected):
    from matinee import Run

    result = run_flow(write_flow(FOREACH_OVER.replace("{kind!s}", kind)), "run")
    if expected is None:
        assert result.returncode == 1 and "needs a list, tuple or other iterable" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    assert Run("Over/1").data.items == expected


def test_user_tags_cannot_pose_as_system_tags(write_flow, run_flow):
    from matinee.core.store import open_store

    path = write_flow(FOREACH_OVER.replace("{kind!s}", "[1]"))
    result = run_flow(path, "run", "--tag", "user:bob")
    assert result.returncode == 2
    assert "looks like a system tag" in result.stderr and "Traceback" not in result.stderr
    assert open_store().metadata.list_runs() == []
