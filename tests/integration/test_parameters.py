"""Run parameters: types, defaults, required, help, environment, and bad values refused up front."""

from __future__ import annotations

import pytest

from matinee import Flow, Parameter
from matinee.core.runtime.runner import Runner
from matinee.core.store import open_store
from matinee.errors import FlowError, ParameterError

TYPED = """
from matinee import FlowSpec, JSONType, Parameter, step

class F(FlowSpec):
    '''A flow with one parameter of each kind.'''

    name = Parameter("name", default="world", help="who to greet")
    count = Parameter("count", default=3, help="how many times")
    ratio = Parameter("ratio", default=0.5)
    flag = Parameter("flag", default=False)
    config = Parameter("config", default='{"depth": 2}', type=JSONType)
    size = Parameter("size", type=int, default="5")
    scale = Parameter("scale", type=float, default=1)
    learning_rate = Parameter("learning-rate", default=0.01, help="step size")

    @step
    def start(self):
        self.seen = {
            attr: (getattr(self, attr), type(getattr(self, attr)).__name__)
            for attr in ("name", "count", "ratio", "flag", "config", "size", "scale", "learning_rate")
        }
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    F()
"""

REQUIRED = """
from matinee import FlowSpec, Parameter, step

class F(FlowSpec):
    dataset = Parameter("dataset", required=True, help="which data set")
    epochs = Parameter("epochs", default=1)

    @step
    def start(self):
        self.got = (self.dataset, self.epochs)
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    F()
"""


def seen() -> dict:
    """What the latest run's start step saw: ``{attribute: (value, type name)}``."""
    return Flow("F").latest_run["start"].task.data.seen


def test_types_are_inferred_from_defaults(write_flow, run_flow) -> None:
    proc = run_flow(write_flow(TYPED), "run")
    assert proc.returncode == 0, proc.stderr
    assert seen() == {
        "name": ("world", "str"),
        "count": (3, "int"),
        "ratio": (0.5, "float"),
        "flag": (False, "bool"),
        "config": ({"depth": 2}, "dict"),
        "size": (5, "int"),
        "scale": (1.0, "float"),  # the default is converted to the declared type
        "learning_rate": (0.01, "float"),
    }
    assert Flow("F").latest_run.params == {
        "name": "world", "count": 3, "ratio": 0.5, "flag": False, "config": {"depth": 2},
        "size": 5, "scale": 1, "learning-rate": 0.01,
    }


def test_values_from_the_command_line_are_converted(write_flow, run_flow) -> None:
    proc = run_flow(
        write_flow(TYPED), "run",
        "--name", "matinee", "--count", "12", "--ratio", "2", "--flag", "--config", '{"depth": [1, 2]}',
        "--size", "-4", "--scale", "3", "--learning-rate", "1e-3",
    )
    assert proc.returncode == 0, proc.stderr
    assert seen() == {
        "name": ("matinee", "str"),
        "count": (12, "int"),
        "ratio": (2.0, "float"),
        "flag": (True, "bool"),
        "config": ({"depth": [1, 2]}, "dict"),
        "size": (-4, "int"),
        "scale": (3.0, "float"),
        "learning_rate": (0.001, "float"),
    }
    params = Flow("F").latest_run.params
    assert params["count"] == 12 and params["config"] == {"depth": [1, 2]} and params["flag"] is True


@pytest.mark.parametrize(
    ("raw", "value"),
    [("true", True), ("False", False), ("yes", True), ("0", False), ("on", True), ("n", False)],
)
def test_bool_values(write_flow, run_flow, raw: str, value: bool) -> None:
    proc = run_flow(write_flow(TYPED), "run", f"--flag={raw}")
    assert proc.returncode == 0, proc.stderr
    assert seen()["flag"] == (value, "bool")


def test_environment_overrides_the_default_and_the_command_line_wins(write_flow, run_flow) -> None:
    path = write_flow(TYPED)
    env = {"MATINEE_RUN_COUNT": "9", "MATINEE_RUN_LEARNING_RATE": "0.25", "METAFLOW_RUN_NAME": "mf"}
    assert run_flow(path, "run", env=env).returncode == 0
    got = seen()
    assert got["count"] == (9, "int")
    assert got["learning_rate"] == (0.25, "float")
    assert got["name"] == ("mf", "str")
    assert run_flow(path, "run", "--count", "4", env=env).returncode == 0
    assert seen()["count"] == (4, "int")


def test_required_parameter(write_flow, run_flow) -> None:
    path = write_flow(REQUIRED)
    proc = run_flow(path, "run", "--dataset", "movies")
    assert proc.returncode == 0, proc.stderr
    assert Flow("F").latest_run["start"].task.data.got == ("movies", 1)
    assert run_flow(path, "run", env={"MATINEE_RUN_DATASET": "env-set"}).returncode == 0
    assert Flow("F").latest_run["start"].task.data.got == ("env-set", 1)


def test_help_lists_parameters(write_flow, run_flow) -> None:
    proc = run_flow(write_flow(TYPED), "run", "--help")
    assert proc.returncode == 0
    out = " ".join(proc.stdout.split())  # argparse wraps lines
    assert "--name STR who to greet (default: 'world')" in out
    assert "--count INT how many times (default: 3)" in out
    assert "--flag [BOOL]" in out
    assert "--config JSON" in out
    assert "--learning-rate FLOAT, --learning_rate FLOAT step size (default: 0.01)" in out
    required = run_flow(write_flow(REQUIRED, "required.py"), "run", "--help")
    assert "--dataset STR which data set (required)" in " ".join(required.stdout.split())
    assert open_store().metadata.list_runs() == []


BAD = [
    pytest.param(TYPED, ["--nope", "1"], "unknown parameter --nope; this flow's parameters: --name, --count", id="unknown"),
    pytest.param(TYPED, ["--count", "x"], "parameter --count expects a whole number, not 'x'", id="int"),
    pytest.param(TYPED, ["--count", "2.5"], "parameter --count expects a whole number, not '2.5'", id="int-from-float"),
    pytest.param(TYPED, ["--ratio", "abc"], "parameter --ratio expects a number, not 'abc'", id="float"),
    pytest.param(TYPED, ["--flag", "maybe"], "parameter --flag expects true or false, not 'maybe'", id="bool"),
    pytest.param(TYPED, ["--config", "{bad"], "parameter --config expects JSON, not '{bad'", id="json"),
    pytest.param(
        REQUIRED, [], "missing required parameter --dataset: give it on the command line (--dataset VALUE) "
        "or as MATINEE_RUN_DATASET", id="missing-required",
    ),
    pytest.param(REQUIRED, ["--dataset"], "argument --dataset: expected one argument", id="missing-value"),
]


@pytest.mark.parametrize(("source", "args", "message"), BAD)
def test_bad_parameters_fail_before_anything_runs(write_flow, run_flow, source: str, args: list[str], message: str) -> None:
    proc = run_flow(write_flow(source), "run", *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 or message.startswith("argument"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert open_store().metadata.list_runs() == []


def test_bad_environment_value_names_the_parameter(write_flow, run_flow) -> None:
    proc = run_flow(write_flow(TYPED), "run", env={"MATINEE_RUN_COUNT": "many"})
    assert proc.returncode == 2
    assert proc.stderr == "error: parameter --count expects a whole number, not 'many'\n"
    assert open_store().metadata.list_runs() == []


@pytest.mark.parametrize(
    ("params", "parameter", "message"),
    [
        ({"nope": 1}, "nope", "unknown parameter --nope"),
        ({"count": "many"}, "count", "parameter --count expects a whole number, not 'many'"),
        ({"config": "[1,"}, "config", "parameter --config expects JSON"),
    ],
)
def test_bad_parameters_in_python_create_no_run(load_flow, params: dict, parameter: str, message: str) -> None:
    cls = load_flow(TYPED)
    with pytest.raises(ParameterError) as info:
        Runner(cls, params=params, executor="inline", quiet=True).run()
    assert info.value.parameter == parameter
    assert message in str(info.value)
    assert open_store().metadata.list_runs() == []


def test_python_values_are_taken_as_given(load_flow) -> None:
    cls = load_flow(TYPED)
    run_id = Runner(cls, params={"count": 4, "config": {"k": [1]}, "ratio": 1}, executor="inline", quiet=True).run()
    got = Flow("F").latest_run["start"].task.data.seen
    assert Flow("F").latest_run.id == run_id
    assert got["count"] == (4, "int") and got["config"] == ({"k": [1]}, "dict") and got["ratio"] == (1.0, "float")


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: Parameter("p", default=[1, 2]), FlowError, "parameter 'p' has type list; use str, int, float, bool or JSONType"),
        (lambda: Parameter("p", type=dict), FlowError, "parameter 'p' has type dict"),
    ],
)
def test_unsupported_parameter_types_are_refused(make, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("reserved", ["tag", "max-workers", "executor", "origin-run-id"])
def test_reserved_parameter_names_are_refused(load_flow, reserved: str) -> None:
    cls = load_flow(
        f"""
        from matinee import FlowSpec, Parameter, step

        class F(FlowSpec):
            p = Parameter("{reserved}", default="x")

            @step
            def start(self):
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    with pytest.raises(FlowError, match=f"parameter name '{reserved}' is reserved by the run command"):
        Runner(cls, executor="inline", quiet=True).run()


def test_parameters_are_read_only_inside_a_step(load_flow) -> None:
    cls = load_flow(
        """
        from matinee import FlowSpec, Parameter, step

        class F(FlowSpec):
            count = Parameter("count", default=1)

            @step
            def start(self):
                try:
                    self.count = 2
                except Exception as exc:
                    self.error = f"{type(exc).__name__}: {exc}"
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    Runner(cls, executor="inline", quiet=True).run()
    data = Flow("F").latest_run.data
    assert data.error == "FlowError: parameter 'count' is read-only inside the flow"
    assert data.count == 1
