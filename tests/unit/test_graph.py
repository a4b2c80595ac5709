"""Graph building and validation: every malformed flow is refused, naming the step."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from matinee.core.flows.graph import FlowGraph
from matinee.core.runtime.runner import Runner
from matinee.core.store import open_store
from matinee.errors import GraphError, RunFailed

HEADER = "from matinee import FlowSpec, step\n\n\nclass F(FlowSpec):\n"


@pytest.fixture
def flow_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write the steps given (a class body) to a real module file and return the class F.

    A body without an ``end`` step (and no ``# no end step`` mark) gets the plain one appended.
    """

    def load(body: str) -> type:
        body = textwrap.dedent(body)
        if "def end(" not in body and "# no end step" not in body:
            body += END
        name = f"graph_{uuid.uuid4().hex[:10]}"
        path = tmp_path / f"{name}.py"
        path.write_text(HEADER + textwrap.indent(body, "    "))
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        return module.F

    return load


END = """
@step
def end(self):
    pass
"""

MALFORMED = [
    pytest.param(
        """
        @step
        def first(self):
            self.next(self.end)
        """,
        "start", "has no start step", id="no-start",
    ),
    pytest.param(
        """
        # no end step
        @step
        def start(self):
            self.next(self.finish)
        @step
        def finish(self):
            self.next(self.start)
        """,
        "end", "has no end step", id="no-end",
    ),
    pytest.param(
        """
        @step
        def start(self):
            self.next(self.middle)
        @step
        def middle(self):
            self.x = 1
        """,
        "middle", "step middle (line", id="never-transitions",
    ),
    pytest.param(
        """
        @step
        def start(self):
            self.x = 1
            if self.x:
                self.next(self.end)
        """,
        "start", "self.next() must be the last statement", id="next-inside-if",
    ),
    pytest.param(
        """
        @step
        def start(self):
            self.x = 1
            if self.x:
                self.next(self.other)
            self.next(self.end)
        @step
        def other(self):
            self.next(self.end)
        """,
        "start", "self.next() must be the last statement", id="next-inside-if-before-the-last-next",
    ),
    pytest.param(
        """
        @step
        def start(self):
            self.next(self.end)
            self.next(self.end)
        """,
        "start", "self.next() must be the last statement", id="next-twice",
    ),
    pytest.param(
        """
        @step
        def start(self):
            for _ in range(2):
                self.next(self.end)
            self.y = 2
        """,
        "start", "self.next() must be the last statement", id="next-inside-loop",
    ),
    pytest.param(
        """
        @step
        def start(self):
            self.next(self.joiner)
        @step
        def joiner(self, inputs):
            self.next(self.end)
        """,
        "joiner", "join step joiner has no matching split", id="join-without-split",
    ),
    pytest.param(
        """
        @step
        def start(self):
            self.next(self.a, self.b)
        @step
        def a(self):
            self.next(self.merge)
        @step
        def b(self):
            self.next(self.merge)
        @step
        def merge(self):
            self.next(self.end)
        """,
        "merge", "step merge is reached from a, b", id="non-join-reached-from-two-branches",
    ),
    pytest.param(
        """
        @step
        def start(self):
            self.next(self.trian)
        @step
        def train(self):
            self.next(self.end)
        """,
        "start", "transitions to unknown step 'trian'", id="unknown-step",
    ),
    pytest.param(
        """
        @step
        def start(self):
            self.next(self.a)
        @step
        def a(self):
            self.next(self.b)
        @step
        def b(self):
            self.next(self.a, self.end)
        """,
        "a", "steps form a cycle: a -> b -> a", id="cycle",
    ),
    pytest.param(
        """
        @step
        def start(self):
            self.next(self.start)
        """,
        "end", "step end is never reached from start", id="self-loop-leaves-end-unreachable",
    ),
    pytest.param(
        """
        @step
        def start(self):
            self.next(self.start, self.end)
        """,
        "start", "steps form a cycle: start -> start", id="self-loop",
    ),
    pytest.param(
        """
        @step
        def start(self):
            self.next(self.end)
        @step
        def orphan(self):
            self.next(self.end)
        """,
        "orphan", "step orphan is never reached from start", id="unreachable",
    ),
    pytest.param(
        """
        @step
        def start(self):
            self.items = [1, 2]
            self.next(self.a, self.b, foreach="items")
        @step
        def a(self):
            self.next(self.join)
        @step
        def b(self):
            self.next(self.join)
        @step
        def join(self, inputs):
            self.next(self.end)
        """,
        "start", "step start: a foreach transitions to exactly one step", id="foreach-two-targets",
    ),
    pytest.param(
        """
        @step
        def start(self):
            self.next(self.end)
        @step
        def end(self):
            self.next(self.start)
        """,
        "end", "the end step must not call self.next()", id="end-calls-next",
    ),
    pytest.param(
        """
        @step
        def start(self):
            self.items = [1, 2]
            self.next(self.each, foreach="items")
        @step
        def each(self):
            self.next(self.end)
        """,
        "start", "the split at step start is never joined before end", id="foreach-never-joined",
    ),
    pytest.param(
        """
        @step
        def start(self):
            self.next(self.a, self.b)
        @step
        def a(self):
            self.next(self.join)
        @step
        def b(self):
            self.next(self.join)
        @step
        def join(self, inputs):
            self.items = [1]
            self.next(self.each, foreach="items")
        @step
        def each(self):
            self.next(self.end)
        """,
        "join", "the split at step join is never joined before end", id="inner-foreach-never-joined",
    ),
    pytest.param(
        """
        @step
        def start(self):
            self.next(self.a, self.b, self.c)
        @step
        def a(self):
            self.next(self.ab)
        @step
        def b(self):
            self.next(self.ab)
        @step
        def c(self):
            self.next(self.all)
        @step
        def ab(self, inputs):
            self.next(self.all)
        @step
        def all(self, inputs):
            self.next(self.end)
        """,
        "ab", "join step ab does not join every branch of the split at start: branch c", id="join-misses-branch",
    ),
    pytest.param(
        """
        @step
        def start(self, inputs):
            self.next(self.end)
        """,
        "start", "the start step cannot be a join", id="start-is-join",
    ),
    pytest.param(
        """
        @step
        def start(self):
            self.next(self.a)
        @step
        def a(self, inputs, extra):
            self.next(self.end)
        """,
        "a", "step a takes 3 arguments", id="too-many-arguments",
    ),
    pytest.param(
        """
        @step
        def start(self):
            target = self.end
            self.next(target)
        """,
        "start", "self.next() takes steps as self.<step name>", id="next-with-variable",
    ),
    pytest.param(
        """
        @step
        def start(self):
            self.items = [1]
            self.next(self.end, num_parallel=2)
        """,
        "start", "takes only foreach=", id="next-with-unknown-keyword",
    ),
]


def body_of(case_id: str) -> str:
    return next(str(case.values[0]) for case in MALFORMED if case.id == case_id)


@pytest.mark.parametrize(("body", "step", "message"), MALFORMED)
def test_malformed_graph_is_refused_naming_the_step(flow_class, body: str, step: str, message: str) -> None:
    cls = flow_class(body)
    with pytest.raises(GraphError) as info:
        FlowGraph(cls)
    assert info.value.step == step
    assert message in str(info.value)
    assert step in str(info.value)


def test_unknown_step_message_lists_known_steps(flow_class) -> None:
    cls = flow_class(body_of("unknown-step"))
    with pytest.raises(GraphError, match=r"known steps: end, start, train"):
        FlowGraph(cls)


def test_graph_error_is_raised_by_the_flow_class_too(flow_class) -> None:
    cls = flow_class(body_of("never-transitions"))
    with pytest.raises(GraphError, match="never transitions"):
        cls._graph()
    with pytest.raises(GraphError):
        Runner(cls, quiet=True)


def test_linear_graph(flow_class) -> None:
    graph = FlowGraph(
        flow_class(
            """
            @step
            def start(self):
                self.next(self.b)
            @step
            def b(self):
                \"\"\"Second step.\"\"\"
                self.next(self.c)
            @step
            def c(self):
                self.next(self.end)
            """
        )
    )
    assert [n.name for n in graph] == ["start", "b", "c", "end"]
    assert [n.type for n in graph] == ["linear", "linear", "linear", "end"]
    assert graph["b"].in_funcs == ["start"] and graph["b"].out_funcs == ["c"]
    assert graph["b"].doc == "Second step."
    assert not graph.has_parallelism
    assert all(n.split_stack == () for n in graph)
    assert graph.downstream("c") == {"c", "end"}


def test_static_split_and_join(flow_class) -> None:
    graph = FlowGraph(
        flow_class(
            """
            @step
            def start(self):
                self.next(self.a, self.b)
            @step
            def a(self):
                self.next(self.join)
            @step
            def b(self):
                self.next(self.join)
            @step
            def join(self, inputs):
                self.next(self.end)
            """
        )
    )
    assert graph["start"].type == "split"
    assert graph["start"].out_funcs == ["a", "b"]
    assert graph["start"].matching_join == "join"
    assert graph["join"].is_join and graph["join"].kind == "join"
    assert sorted(graph["join"].in_funcs) == ["a", "b"]
    assert graph["a"].split_stack == (("start", "a"),)
    assert graph["b"].split_stack == (("start", "b"),)
    assert graph["join"].split_stack == () and graph["end"].split_stack == ()
    assert graph.has_parallelism
    order = [n.name for n in graph]
    assert order[0] == "start" and order[-2:] == ["join", "end"]


def test_foreach(flow_class) -> None:
    graph = FlowGraph(
        flow_class(
            """
            @step
            def start(self):
                self.items = [1, 2]
                self.next(self.each, foreach="items")
            @step
            def each(self):
                self.next(self.join)
            @step
            def join(self, inputs):
                self.next(self.end)
            """
        )
    )
    assert graph["start"].type == "foreach"
    assert graph["start"].foreach_param == "items"
    assert graph["start"].matching_join == "join"
    assert graph["each"].split_stack == (("start", "*"),)
    assert graph["join"].split_stack == ()


def test_nested_foreach(flow_class) -> None:
    graph = FlowGraph(
        flow_class(
            """
            @step
            def start(self):
                self.xs = [1, 2]
                self.next(self.outer, foreach="xs")
            @step
            def outer(self):
                self.ys = [1, 2]
                self.next(self.inner, foreach="ys")
            @step
            def inner(self):
                self.next(self.inner_join)
            @step
            def inner_join(self, inputs):
                self.next(self.outer_join)
            @step
            def outer_join(self, inputs):
                self.next(self.end)
            """
        )
    )
    assert graph["outer"].kind == "foreach"
    assert graph["start"].matching_join == "outer_join"
    assert graph["outer"].matching_join == "inner_join"
    assert graph["inner"].split_stack == (("start", "*"), ("outer", "*"))
    assert graph["inner_join"].split_stack == (("start", "*"),)
    assert graph["outer_join"].split_stack == ()


def test_split_inside_foreach(flow_class) -> None:
    graph = FlowGraph(
        flow_class(
            """
            @step
            def start(self):
                self.items = [1, 2]
                self.next(self.each, foreach="items")
            @step
            def each(self):
                self.next(self.a, self.b)
            @step
            def a(self):
                self.next(self.ab)
            @step
            def b(self):
                self.next(self.ab)
            @step
            def ab(self, inputs):
                self.next(self.join)
            @step
            def join(self, inputs):
                self.next(self.end)
            """
        )
    )
    assert graph["each"].type == "split" and graph["each"].matching_join == "ab"
    assert graph["start"].matching_join == "join"
    assert graph["a"].split_stack == (("start", "*"), ("each", "a"))
    assert graph["ab"].split_stack == (("start", "*"),)
    assert graph["join"].split_stack == ()


def test_join_step_may_itself_split_again(flow_class) -> None:
    graph = FlowGraph(
        flow_class(
            """
            @step
            def start(self):
                self.next(self.a, self.b)
            @step
            def a(self):
                self.next(self.join)
            @step
            def b(self):
                self.next(self.join)
            @step
            def join(self, inputs):
                self.items = [1]
                self.next(self.each, foreach="items")
            @step
            def each(self):
                self.next(self.join2)
            @step
            def join2(self, inputs):
                self.next(self.end)
            """
        )
    )
    assert graph["join"].kind == "join, foreach"
    assert graph["join"].matching_join == "join2"


def test_decorators_are_recorded_on_the_node(flow_class) -> None:
    graph = FlowGraph(
        flow_class(
            """
            from matinee import retry, catch
            @retry(times=4)
            @catch
            @step
            def start(self):
                self.next(self.end)
            """
        )
    )
    assert graph["start"].decorators["retry"]["times"] == 4
    assert graph["start"].decorators["retry"]["minutes_between_retries"] == 2
    assert graph["start"].decorators["catch"]["var"] is None
    assert graph["end"].decorators == {}


@pytest.mark.parametrize(
    ("value", "kind"),
    [("5", "int"), ("None", "NoneType"), ("'abc'", "str")],
)
@pytest.mark.parametrize("executor", ["inline", "process"])
def test_foreach_over_a_non_iterable_fails_before_any_branch(flow_class, executor: str, value: str, kind: str) -> None:
    cls = flow_class(
        f"""
        @step
        def start(self):
            self.items = {value}
            self.next(self.each, foreach="items")
        @step
        def each(self):
            self.next(self.join)
        @step
        def join(self, inputs):
            self.next(self.end)
        """
    )
    with pytest.raises(RunFailed) as info:
        Runner(cls, executor=executor, quiet=True).run()
    message = str(info.value)
    assert "step start" in message
    assert "foreach='items'" in message and "self.items" in message
    assert f"is a {kind}" in message
    metadata = open_store().metadata
    tasks = metadata.list_tasks(info.value.run_id)
    assert [t["step_name"] for t in tasks] == ["start"]
    assert tasks[0]["status"] == "failed"
    assert metadata.get_run(info.value.run_id)["status"] == "failed"


def test_foreach_over_an_empty_list_fails_naming_it(flow_class) -> None:
    cls = flow_class(
        """
        @step
        def start(self):
            self.items = []
            self.next(self.each, foreach="items")
        @step
        def each(self):
            self.next(self.join)
        @step
        def join(self, inputs):
            self.next(self.end)
        """
    )
    with pytest.raises(RunFailed, match=r"foreach over self.items has nothing to run"):
        Runner(cls, executor="inline", quiet=True).run()
