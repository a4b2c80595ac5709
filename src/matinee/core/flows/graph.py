"""The step graph of a flow: built from the source, validated before anything runs.

Each step's transitions are read from its last statement, which must be a
``self.next(...)`` call (``end`` has none). The graph is then checked: start and
end exist, every target exists, every step is reachable, there is no cycle, only
join steps (those taking ``inputs``) have several incoming transitions, every
split is closed by exactly one join, and nothing is left unjoined at ``end``.
Every message names the step and says how to fix it.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from matinee.core.flows.decorators import step_decorators
from matinee.errors import GraphError

#: A node's position: the splits it is inside, each with the branch it is on.
Stack = tuple[tuple[str, str], ...]


@dataclass
class StepNode:
    """One step of the graph."""

    name: str
    func: Callable[..., Any]
    type: str = "linear"  # how it transitions: linear | split | foreach | end
    out_funcs: list[str] = field(default_factory=list)
    in_funcs: list[str] = field(default_factory=list)
    foreach_param: str | None = None
    is_join: bool = False
    lineno: int = 0
    doc: str = ""
    decorators: dict[str, dict[str, Any]] = field(default_factory=dict)
    split_stack: Stack = ()
    matching_join: str | None = None

    @property
    def kind(self) -> str:
        """A label for humans: start, join, split, foreach, linear or end."""
        if self.is_join:
            return "join" if self.type == "linear" else f"join, {self.type}"
        return "start" if self.name == "start" and self.type == "linear" else self.type


class FlowGraph:
    """The validated graph of a :class:`~matinee.FlowSpec` subclass."""

    def __init__(self, flow_cls: type) -> None:
        self.name = flow_cls.__name__
        self.nodes: dict[str, StepNode] = {}
        for attr in dir(flow_cls):
            func = getattr(flow_cls, attr, None)
            if callable(func) and getattr(func, "_matinee_step", False):
                self.nodes[attr] = _parse_step(self.name, attr, func)
        self._validate()

    def __getitem__(self, name: str) -> StepNode:
        return self.nodes[name]

    def __contains__(self, name: object) -> bool:
        return name in self.nodes

    def __iter__(self) -> Iterator[StepNode]:
        """Steps in a topological order, start first."""
        return iter(self.nodes[n] for n in self._order)

    def downstream(self, name: str) -> set[str]:
        """``name`` and every step reachable from it."""
        seen, todo = set(), [name]
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(self.nodes[current].out_funcs)
        return seen

    @property
    def has_parallelism(self) -> bool:
        return any(n.type in ("split", "foreach") for n in self.nodes.values())

    # -- validation -----------------------------------------------------------
    def _validate(self) -> None:
        flow = self.name
        for required in ("start", "end"):
            if required not in self.nodes:
                raise GraphError(
                    f"flow {flow} has no {required} step: add a method named {required} decorated with @step",
                    step=required,
                )
        for node in self.nodes.values():
            for target in node.out_funcs:
                if target not in self.nodes:
                    raise GraphError(
                        f"step {node.name} (line {node.lineno}) transitions to unknown step {target!r}; "
                        f"known steps: {', '.join(sorted(self.nodes))}",
                        step=node.name,
                    )
                self.nodes[target].in_funcs.append(node.name)
        if self.nodes["start"].is_join:
            raise GraphError("the start step cannot be a join: remove its inputs argument", step="start")
        if self.nodes["end"].out_funcs:
            raise GraphError("the end step must not call self.next(): it ends the flow", step="end")
        for node in self.nodes.values():
            if node.name != "end" and not node.out_funcs:
                raise GraphError(
                    f"step {node.name} (line {node.lineno}) never transitions: "
                    f"end it with self.next(self.<next step>)",
                    step=node.name,
                )
        unreachable = sorted(set(self.nodes) - self.downstream("start"))
        if unreachable:
            raise GraphError(
                f"step {unreachable[0]} is never reached from start: transition to it or remove it",
                step=unreachable[0],
            )
        self._order = self._topological_order()
        self._match_splits()

    def _topological_order(self) -> list[str]:
        indegree = {name: len(node.in_funcs) for name, node in self.nodes.items()}
        ready, order = ["start"], []
        while ready:
            name = ready.pop()
            order.append(name)
            for target in self.nodes[name].out_funcs:
                indegree[target] -= 1
                if indegree[target] == 0:
                    ready.append(target)
        if len(order) != len(self.nodes):
            cycle = self._find_cycle()
            raise GraphError(
                f"steps form a cycle: {' -> '.join(cycle)}; flows must be acyclic "
                "(use foreach to repeat work)",
                step=cycle[0],
            )
        return order

    def _find_cycle(self) -> list[str]:
        path: list[str] = []
        state: dict[str, int] = {}

        def visit(name: str) -> list[str] | None:
            state[name] = 1
            path.append(name)
            for target in self.nodes[name].out_funcs:
                if state.get(target) == 1:
                    return path[path.index(target) :] + [target]
                if target not in state and (found := visit(target)):
                    return found
            path.pop()
            state[name] = 2
            return None

        return visit("start") or ["?"]

    def _match_splits(self) -> None:
        for name in self._order:
            node = self.nodes[name]
            if name == "start":
                node.split_stack = ()
            elif node.is_join:
                node.split_stack = self._join_stack(node)
            else:
                stacks = {self._child_stack(self.nodes[p], name) for p in node.in_funcs}
                if len(stacks) > 1:
                    raise GraphError(
                        f"step {name} is reached from {', '.join(node.in_funcs)}: to merge branches, "
                        f"make it a join by giving it an inputs argument (def {name}(self, inputs))",
                        step=name,
                    )
                node.split_stack = stacks.pop()
        end = self.nodes["end"]
        if end.split_stack:
            split = end.split_stack[-1][0]
            raise GraphError(
                f"the split at step {split} is never joined before end: add a join step "
                f"(a step taking inputs) after its branches",
                step=split,
            )

    def _child_stack(self, parent: StepNode, child: str) -> Stack:
        if parent.type == "split":
            return (*parent.split_stack, (parent.name, child))
        if parent.type == "foreach":
            return (*parent.split_stack, (parent.name, "*"))
        return parent.split_stack

    def _join_stack(self, node: StepNode) -> Stack:
        name = node.name
        stacks = [self._child_stack(self.nodes[p], name) for p in node.in_funcs]
        if not all(stacks):
            raise GraphError(
                f"join step {name} has no matching split: a step taking inputs must close a "
                f"split (self.next(self.a, self.b)) or a foreach; remove inputs or add the split",
                step=name,
            )
        outer = {s[:-1] for s in stacks}
        splits = {s[-1][0] for s in stacks}
        if len(outer) > 1 or len(splits) > 1:
            raise GraphError(
                f"join step {name} joins branches of different splits ({', '.join(sorted(splits))}); "
                "join each split separately, innermost first",
                step=name,
            )
        split = self.nodes[splits.pop()]
        branches = [s[-1][1] for s in stacks]
        if split.type == "foreach":
            if len(branches) != 1:
                raise GraphError(
                    f"join step {name} closes the foreach at {split.name} but is reached from "
                    f"{', '.join(node.in_funcs)}; a foreach has exactly one branch",
                    step=name,
                )
        elif sorted(branches) != sorted(split.out_funcs):
            missing = sorted(set(split.out_funcs) - set(branches))
            raise GraphError(
                f"join step {name} does not join every branch of the split at {split.name}: "
                f"branch {', '.join(missing) or '(repeated)'} must lead to it as well",
                step=name,
            )
        if split.matching_join not in (None, name):
            raise GraphError(f"the split at {split.name} is joined twice", step=name)
        split.matching_join = name
        return stacks[0][:-1]


def _parse_step(flow: str, name: str, func: Callable[..., Any]) -> StepNode:
    """Read a step's transitions from the ``self.next(...)`` call that ends it."""
    node = StepNode(name=name, func=func, doc=inspect.getdoc(func) or "", decorators=step_decorators(func))
    params = list(inspect.signature(func).parameters)
    node.is_join = len(params) >= 2
    if len(params) > 2:
        raise GraphError(
            f"step {name} takes {len(params)} arguments; a step takes self, and a join step self and inputs",
            step=name,
        )
    try:
        source = textwrap.dedent(inspect.getsource(func))
        node.lineno = inspect.getsourcelines(func)[1]
    except (OSError, TypeError) as exc:
        raise GraphError(f"cannot read the source of step {name}: {exc}", step=name) from exc
    tree = ast.parse(source)
    fdef = next(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    tail = fdef.body[-1]
    call = tail.value if isinstance(tail, ast.Expr) else None
    is_next = (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "next"
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id == "self"
    )
    for statement in fdef.body[:-1] if is_next else fdef.body:
        _reject_inner_next(name, statement)
    if not is_next:
        node.type = "end" if name == "end" else "linear"
        return node
    assert isinstance(call, ast.Call)
    for arg in call.args:
        if not (isinstance(arg, ast.Attribute) and isinstance(arg.value, ast.Name) and arg.value.id == "self"):
            raise GraphError(
                f"step {name} (line {node.lineno + arg.lineno - 1}): self.next() takes steps as "
                f"self.<step name>, e.g. self.next(self.train)",
                step=name,
            )
        node.out_funcs.append(arg.attr)
    for kw in call.keywords:
        if kw.arg != "foreach" or not (isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str)):
            raise GraphError(
                f"step {name}: self.next() takes only foreach=\"<attribute name>\" as a keyword",
                step=name,
            )
        node.foreach_param = kw.value.value
    if node.foreach_param is not None:
        if len(node.out_funcs) != 1:
            raise GraphError(f"step {name}: a foreach transitions to exactly one step", step=name)
        node.type = "foreach"
    elif len(node.out_funcs) > 1:
        node.type = "split"
    if not node.out_funcs:
        raise GraphError(f"step {name}: self.next() needs at least one step", step=name)
    return node


def _reject_inner_next(name: str, fdef: ast.AST) -> None:
    for inner in ast.walk(fdef):
        if (
            isinstance(inner, ast.Call)
            and isinstance(inner.func, ast.Attribute)
            and inner.func.attr == "next"
            and isinstance(inner.func.value, ast.Name)
            and inner.func.value.id == "self"
        ):
            raise GraphError(
                f"step {name}: self.next() must be the last statement of the step, "
                "not inside an if, loop or with block",
                step=name,
            )
