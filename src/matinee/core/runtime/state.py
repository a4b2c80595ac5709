"""The artifact state of one running task, behind ``self`` of a step."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from matinee.core.artifacts.store import ArtifactRef, ArtifactStore
from matinee.errors import ArtifactError

if TYPE_CHECKING:
    from matinee.core.flows.graph import FlowGraph, StepNode
    from matinee.core.storage.metadata import MetadataStore

_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None), range)

#: Foreach iterables already loaded in this process, by content key.
_foreach_cache: dict[str, Any] = {}


class TaskState:
    """Inherited artifact references, values loaded so far, and the step's transition."""

    def __init__(
        self,
        store: ArtifactStore,
        metadata: MetadataStore,
        graph: FlowGraph,
        node: StepNode,
        refs: dict[str, ArtifactRef],
        foreach_stack: list[list[Any]],
    ) -> None:
        self.store = store
        self.metadata = metadata
        self.graph = graph
        self.node = node
        self.step = node.name
        self.refs = dict(refs)
        self.values: dict[str, Any] = {}
        self.foreach_stack = foreach_stack
        self.transition: dict[str, Any] | None = None

    def load(self, name: str) -> Any:
        """The value of inherited artifact ``name``, loaded once."""
        if name not in self.values:
            self.values[name] = self.store.load(self.refs[name])
        return self.values[name]

    def foreach_input(self, depth: int = -1) -> Any:
        """The item of the enclosing foreach (innermost by default) that this task works on."""
        if not self.foreach_stack:
            return None
        split_step, index, _num, split_task = self.foreach_stack[depth]
        attr = self.graph[split_step].foreach_param
        assert attr is not None
        ref = self.metadata.task_artifacts(split_task)[attr]
        items = _foreach_cache.get(ref.key)
        if items is None:
            items = _foreach_cache[ref.key] = self.store.load(ref)
        return items[index]

    def collect(self, flow: Any) -> dict[str, ArtifactRef]:
        """References to every artifact of the task: inherited, loaded or newly set."""
        refs = dict(self.refs)
        for name, value in vars(flow).items():
            if name.startswith("_"):
                continue
            if name in refs and self.values.get(name, refs) is value and _immutable(value):
                continue
            try:
                refs[name] = self.store.save(value)
            except ArtifactError as exc:
                raise ArtifactError(f"step {self.step}, artifact {name}: {exc.message}", step=self.step, artifact=name) from exc
        return refs


def _immutable(value: Any, depth: int = 0) -> bool:
    if isinstance(value, _IMMUTABLE):
        return True
    if isinstance(value, (tuple, frozenset)) and depth < 3:
        return all(_immutable(v, depth + 1) for v in value)
    return False
