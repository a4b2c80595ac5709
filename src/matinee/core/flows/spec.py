"""The flow API: :class:`FlowSpec`, :class:`Parameter`, :class:`IncludeFile`, :class:`JSONType`.

It follows Metaflow's, so a Metaflow flow runs with only its import changed.
Every attribute a step sets on ``self`` (except names starting with ``_``) is an
artifact: stored after the step, content-addressed, and handed to the next
steps, which load it lazily on first access.
"""

from __future__ import annotations

import builtins
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matinee.errors import FlowError, MergeError, ParameterError

if TYPE_CHECKING:
    from matinee.core.artifacts.store import ArtifactRef
    from matinee.core.flows.graph import FlowGraph
    from matinee.core.runtime.state import TaskState


class JSONType:
    """Parameter type for JSON values: ``Parameter("cfg", type=JSONType, default='{"a": 1}')``."""


_TYPES: dict[Any, str] = {str: "str", int: "int", float: "float", bool: "bool", JSONType: "json"}
_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}


class Parameter:
    """A run parameter, set on the command line: ``python flow.py run --alpha 0.5``.

    Parameters
    ----------
    name
        The option name (``--name``); the value is read as the class attribute.
    default
        Used when the option is not given. Its type sets the parameter's type
        unless ``type`` is given. May be a callable taking no arguments.
    type
        ``str``, ``int``, ``float``, ``bool`` or :class:`JSONType`.
    help
        Shown by ``python flow.py run --help``.
    required
        Fail before anything runs when no value is given.

    The environment variable ``MATINEE_RUN_<NAME>`` (upper case, dashes as
    underscores; ``METAFLOW_RUN_<NAME>`` is read too) overrides the default.

    Examples
    --------
    >>> from matinee import FlowSpec, Parameter, step
    >>> class Train(FlowSpec):
    ...     alpha = Parameter("alpha", default=0.01, help="learning rate")
    ...     @step
    ...     def start(self):
    ...         print(self.alpha)
    ...         self.next(self.end)
    ...     @step
    ...     def end(self):
    ...         pass
    """

    def __init__(
        self,
        name: str,
        default: Any = None,
        type: Any = None,
        help: str | None = None,
        required: bool = False,
        show_default: bool = True,
        **_ignored: Any,
    ) -> None:
        self.name = name
        self.default = default
        self.help = help or ""
        self.required = required
        self.show_default = show_default
        self.attr = name.replace("-", "_")
        if type is None:
            probe = default() if callable(default) else default
            type = builtins.type(probe) if probe is not None else str
        if type not in _TYPES:
            raise FlowError(
                f"parameter {name!r} has type {getattr(type, '__name__', type)}; "
                "use str, int, float, bool or JSONType",
                parameter=name,
            )
        self.type = type

    @property
    def type_name(self) -> str:
        return _TYPES[self.type]

    def __set_name__(self, owner: type, attr: str) -> None:
        self.attr = attr

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        state = instance.__dict__.get("_task")
        if state is None:
            raise FlowError(f"parameter {self.name!r} has a value only while the flow runs", parameter=self.name)
        return state.load(self.attr)

    def __set__(self, instance: Any, value: Any) -> None:
        raise FlowError(f"parameter {self.name!r} is read-only inside the flow", parameter=self.name)

    def resolve(self, given: dict[str, Any]) -> Any:
        """The value for a run: given on the command line, else the environment, else the default."""
        if self.name in given:
            return self.convert(given[self.name])
        for prefix in ("MATINEE_RUN_", "METAFLOW_RUN_"):
            env = os.environ.get(prefix + self.name.upper().replace("-", "_"))
            if env is not None:
                return self.convert(env)
        if self.required and self.default is None:
            raise ParameterError(
                f"missing required parameter --{self.name}: give it on the command line "
                f"(--{self.name} VALUE) or as MATINEE_RUN_{self.name.upper().replace('-', '_')}",
                parameter=self.name,
            )
        default = self.default() if callable(self.default) else self.default
        return self.convert(default) if default is not None else None

    def convert(self, raw: Any) -> Any:
        """Convert a command-line string (or a Python value) to the parameter's type."""
        kind = self.type_name
        try:
            if kind == "json":
                return json.loads(raw) if isinstance(raw, str) else raw
            if not isinstance(raw, str):
                return raw if kind != "float" else float(raw)
            if kind == "bool":
                if raw.lower() in _TRUE:
                    return True
                if raw.lower() in _FALSE:
                    return False
                raise ValueError(raw)
            return self.type(raw)
        except (ValueError, TypeError):
            expected = {"json": "JSON", "bool": "true or false", "int": "a whole number", "float": "a number"}
            raise ParameterError(
                f"parameter --{self.name} expects {expected.get(kind, kind)}, not {raw!r}", parameter=self.name
            ) from None


class IncludeFile(Parameter):
    """A parameter naming a local file whose contents become an artifact.

    The file is read once when the run starts; steps see its text (or bytes
    with ``is_text=False``), and the run keeps it even if the file changes later.
    """

    def __init__(
        self,
        name: str,
        default: str | None = None,
        is_text: bool = True,
        encoding: str = "utf-8",
        help: str | None = None,
        required: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, default=default, type=str, help=help, required=required, **kwargs)
        self.is_text = is_text
        self.encoding = encoding

    def convert(self, raw: Any) -> Any:
        if raw is None:
            return None
        path = Path(str(raw)).expanduser()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ParameterError(
                f"parameter --{self.name}: cannot read file {str(raw)!r} ({exc.strerror or exc})",
                parameter=self.name,
            ) from None
        try:
            return data.decode(self.encoding) if self.is_text else data
        except UnicodeDecodeError:
            raise ParameterError(
                f"parameter --{self.name}: {raw} is not {self.encoding} text; use IncludeFile(..., is_text=False)",
                parameter=self.name,
            ) from None


def _positional(value: Any) -> bool:
    """Whether ``value[i]`` is its i-th item, as a foreach branch reads it."""
    if isinstance(value, (list, tuple, range)):
        return True
    return type(value).__name__ == "ndarray" and type(value).__module__ == "numpy"


class FlowSpec:
    """Base class of every flow.

    Subclass it, decorate methods with :func:`~matinee.step` (one named ``start``,
    one ``end``), and end each step with ``self.next(...)``. Running the file
    (``python flow.py run``) needs, at its bottom::

        if __name__ == "__main__":
            MyFlow()
    """

    _task: TaskState | None = None

    def __init__(self, use_cli: bool = True) -> None:
        if use_cli:
            from matinee.core.runtime.cli import main

            main(type(self))

    # -- class-level introspection ----------------------------------------------
    @classmethod
    def _graph(cls) -> FlowGraph:
        graph = cls.__dict__.get("_matinee_graph")
        if graph is None:
            from matinee.core.flows.graph import FlowGraph

            graph = FlowGraph(cls)
            cls._matinee_graph = graph  # type: ignore[attr-defined]
        return graph

    @classmethod
    def _parameters(cls) -> dict[str, Parameter]:
        """Parameters by attribute name, in definition order (base classes first)."""
        found: dict[str, Parameter] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if isinstance(value, Parameter):
                    found[attr] = value
        names = [p.name for p in found.values()]
        for reserved in ("max-workers", "tag", "executor", "ray-address", "origin-run-id", "help"):
            if reserved in names:
                raise FlowError(f"parameter name {reserved!r} is reserved by the run command; rename it")
        return found

    # -- the step API ------------------------------------------------------------
    def next(self, *steps: Callable[..., Any], foreach: str | None = None) -> None:
        """Transition to the next step(s): one, several (a split), or one per item (``foreach``)."""
        state = self._require_state("self.next()")
        names = []
        for target in steps:
            name = getattr(target, "__name__", None)
            if name is None or getattr(self, name, None) is None:
                raise FlowError(f"step {state.step}: self.next() takes steps such as self.end, not {target!r}")
            names.append(name)
        node = state.node
        if names != node.out_funcs or foreach != node.foreach_param:
            raise FlowError(
                f"step {state.step} called self.next({', '.join(names)}) but its last statement "
                f"transitions to {', '.join(node.out_funcs)}; transitions cannot depend on data",
                step=state.step,
            )
        if state.transition is not None:
            raise FlowError(f"step {state.step} called self.next() twice", step=state.step)
        count = None
        if foreach is not None:
            count = self._foreach_count(state.step, foreach)
        state.transition = {"steps": names, "foreach": foreach, "num": count}

    def _foreach_count(self, step: str, attr: str) -> int:
        try:
            value = getattr(self, attr)
        except AttributeError:
            raise FlowError(
                f"step {step}: foreach={attr!r} but self.{attr} was never set; set it before self.next()",
                step=step,
            ) from None
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise FlowError(
                f"step {step}: foreach={attr!r} needs a list, tuple or other iterable, "
                f"but self.{attr} is a {type(value).__name__}",
                step=step,
            )
        if not _positional(value):  # a set, generator, dict (its keys), Series (its values)...
            value = list(value)
            setattr(self, attr, value)
        count = len(value)
        if count == 0:
            raise FlowError(
                f"step {step}: foreach over self.{attr} has nothing to run (it is empty)", step=step
            )
        return count

    @property
    def input(self) -> Any:
        """In a foreach branch: this branch's item of the foreach iterable."""
        return self._require_state("self.input").foreach_input()

    @property
    def index(self) -> int | None:
        """In a foreach branch: this branch's position in the foreach iterable."""
        stack = self._require_state("self.index").foreach_stack
        return stack[-1][1] if stack else None

    def foreach_stack(self) -> list[tuple[int, int, Any]]:
        """``(index, number of splits, item)`` for each enclosing foreach, outermost first."""
        state = self._require_state("self.foreach_stack()")
        return [(frame[1], frame[2], state.foreach_input(depth)) for depth, frame in enumerate(state.foreach_stack)]

    def merge_artifacts(
        self,
        inputs: Inputs,
        exclude: Sequence[str] | None = None,
        include: Sequence[str] | None = None,
    ) -> None:
        """In a join step: carry over every artifact that all inputs agree on.

        Artifacts already set in this step win. An artifact whose value differs
        between inputs raises :class:`~matinee.errors.MergeError` unless it is set
        in this step first or left out with ``exclude``. ``include`` merges only
        the names given (and fails if an input lacks one of them).
        """
        state = self._require_state("merge_artifacts()")
        if not state.node.is_join:
            raise FlowError(f"step {state.step}: merge_artifacts() works only in a join step", step=state.step)
        if exclude and include:
            raise FlowError("merge_artifacts() takes exclude or include, not both")
        skip, only = set(exclude or ()), set(include or ())
        present = set(state.refs) | {k for k in vars(self) if not k.startswith("_")}
        values: dict[str, dict[str, ArtifactRef]] = {}
        for view in inputs:
            for name, ref in view._refs.items():
                if name in skip or (only and name not in only) or name.startswith("_"):
                    continue
                values.setdefault(name, {})[ref.key] = ref
        missing = sorted(only - set(values))
        if missing:
            raise MergeError(
                f"step {state.step}: merge_artifacts(include=...) names {', '.join(missing)}, "
                "which no input has",
                step=state.step,
            )
        conflicts = sorted(n for n, refs in values.items() if len(refs) > 1 and n not in present)
        if conflicts:
            raise MergeError(
                f"step {state.step}: artifacts {', '.join(conflicts)} differ between the inputs; set them in "
                f"this step before merging, or pass exclude={conflicts!r}",
                step=state.step,
                artifacts=conflicts,
            )
        for name, refs in values.items():
            if name not in present:
                state.refs[name] = next(iter(refs.values()))

    def _require_state(self, what: str) -> TaskState:
        state = self.__dict__.get("_task")
        if state is None:
            raise FlowError(f"{what} works only while the flow runs a step")
        return state

    # -- lazy artifacts --------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        state = self.__dict__.get("_task")
        if state is not None and name in state.refs:
            value = state.load(name)
            self.__dict__[name] = value
            return value
        raise AttributeError(f"flow {type(self).__name__} has no artifact or attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        state = self.__dict__.get("_task")
        found = name in self.__dict__
        self.__dict__.pop(name, None)
        if state is not None and name in state.refs:
            del state.refs[name]
        elif not found:
            raise AttributeError(name)


class InputView:
    """One input of a join step: a read-only view of one parent task's artifacts."""

    def __init__(self, state: TaskState, step: str, task_id: int) -> None:
        self._state = state
        self._step = step
        self._task_id = task_id
        self._refs = state.refs

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in ("input", "index"):
            return self._state.foreach_input() if name == "input" else self._state.foreach_stack[-1][1]
        if name in self._refs:
            return self._state.load(name)
        raise AttributeError(f"input {self._step}/{self._task_id} has no artifact {name!r}")

    def __repr__(self) -> str:
        return f"<input {self._step}/{self._task_id}>"


class Inputs(Sequence[InputView]):
    """The ``inputs`` of a join step: iterate, index, or name a static branch (``inputs.train_a``)."""

    def __init__(self, views: list[InputView]) -> None:
        self._views = views

    def __getitem__(self, i: Any) -> Any:
        return self._views[i]

    def __len__(self) -> int:
        return len(self._views)

    def __iter__(self) -> Iterator[InputView]:
        return iter(self._views)

    def __getattr__(self, name: str) -> InputView:
        if name.startswith("_"):
            raise AttributeError(name)
        for view in self._views:
            if view._step == name:
                return view
        raise AttributeError(f"no input from step {name!r}; inputs come from {[v._step for v in self._views]}")
