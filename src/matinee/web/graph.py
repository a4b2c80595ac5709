"""A run's step graph, from its tasks: layers, an SVG picture and a text rendering.

The graph is read from what the run recorded, not from the flow's source:
each task's ``input_paths`` (the task ids it read from) give the edges between
steps that ran, and each finished task's ``transition`` (``{"steps": [...],
"foreach": attr, "num": n}``) adds the steps it was going to run next, so a
failed run still shows the steps it never reached (as ``pending``).

Steps are laid out in layers by their longest distance from the start (a flow
graph has no cycles), ordered inside a layer by the mean position of their
parents to keep edges from crossing.

Examples
--------
>>> tasks = [
...     {"id": 1, "step_name": "start", "input_paths": "[]", "status": "completed",
...      "transition": '{"steps": ["work"], "foreach": "items", "num": 2}', "started_at": 0.0, "finished_at": 1.0},
...     {"id": 2, "step_name": "work", "input_paths": "[1]", "status": "completed",
...      "transition": '{"steps": ["end"], "foreach": null, "num": null}', "started_at": 1.0, "finished_at": 2.0},
...     {"id": 3, "step_name": "work", "input_paths": "[1]", "status": "failed",
...      "transition": None, "started_at": 1.0, "finished_at": 2.5},
... ]
>>> graph = layout(tasks)
>>> [[n.label for n in layer] for layer in graph.layers]
[['start'], ['work x 2'], ['end']]
>>> graph.node("work").status, graph.node("end").status
('failed', 'pending')
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

__all__ = ["STATUS_COLORS", "Edge", "Graph", "Node", "layout", "to_svg", "to_text"]

#: Fill and stroke of a step's box, by status.
STATUS_COLORS = {
    "completed": ("#e7f5ec", "#2f9e5b"),
    "running": ("#e6f0fb", "#2f6fbd"),
    "failed": ("#fbe9e9", "#c43d3d"),
    "pending": ("#f2f2f2", "#9a9a9a"),
}
#: When a step's tasks disagree, the status shown is the first of these that any task has.
_PRECEDENCE = ("failed", "running", "completed", "pending")

_BOX_W, _BOX_H, _GAP_X, _GAP_Y, _MARGIN = 190, 56, 36, 64, 16


@dataclass
class Node:
    """One step: its tasks, their combined status and the time from the first start to the last finish."""

    step: str
    tasks: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    started_at: float | None = None
    finished_at: float | None = None
    foreach: bool = False
    first_task: int = 0
    layer: int = 0
    position: int = 0

    @property
    def status(self) -> str:
        for status in _PRECEDENCE:
            if self.statuses.get(status):
                return status
        return next(iter(self.statuses), "pending")

    @property
    def seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return max(self.finished_at - self.started_at, 0.0)

    @property
    def label(self) -> str:
        """The step's name, with ``x N`` when it ran as N tasks of a foreach."""
        return f"{self.step} x {self.tasks}" if self.tasks > 1 or self.foreach else self.step

    @property
    def detail(self) -> str:
        """Status, time and (when the tasks disagree) how many tasks had each status."""
        parts = [self.status]
        if self.seconds is not None:
            parts.append(duration(self.seconds))
        if len(self.statuses) > 1:
            parts.append(", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items())))
        return " · ".join(parts)


@dataclass(frozen=True)
class Edge:
    """An edge between two steps; ``foreach`` when the source fans out into the target."""

    source: str
    target: str
    foreach: bool = False


@dataclass
class Graph:
    """Steps in layers (top to bottom) and the edges between them."""

    layers: list[list[Node]]
    edges: list[Edge]

    @property
    def nodes(self) -> list[Node]:
        return [node for layer in self.layers for node in layer]

    def node(self, step: str) -> Node:
        for node in self.nodes:
            if node.step == step:
                return node
        raise KeyError(step)

    def targets(self, step: str) -> list[str]:
        return [e.target for e in self.edges if e.source == step]


def duration(seconds: float) -> str:
    """``0.42s``, ``12.3s``, ``4m05s``, ``2h03m``."""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def _json(value: Any, default: Any) -> Any:
    if value is None or value == "":
        return default
    if isinstance(value, (str, bytes)):
        try:
            return json.loads(value)
        except ValueError:
            return default
    return value


def layout(tasks: Iterable[Mapping[str, Any]]) -> Graph:
    """Lay out the steps of a run from its task rows (``MetadataStore.list_tasks``).

    Parameters
    ----------
    tasks
        Rows with ``id``, ``step_name``, ``input_paths`` (JSON list of task ids),
        ``status``, ``transition`` (JSON or None), ``started_at``, ``finished_at``.

    Returns
    -------
    Graph
        The steps in layers, each with its status and timing, and the edges.
    """
    rows = sorted(tasks, key=lambda t: int(t["id"]))
    nodes: dict[str, Node] = {}
    step_of: dict[int, str] = {}
    edges: dict[tuple[str, str], bool] = {}
    for row in rows:
        step = str(row["step_name"])
        node = nodes.setdefault(step, Node(step, first_task=int(row["id"])))
        node.tasks += 1
        status = str(row["status"])
        node.statuses[status] = node.statuses.get(status, 0) + 1
        if row.get("started_at") is not None:
            start = float(row["started_at"])
            node.started_at = start if node.started_at is None else min(node.started_at, start)
        if row.get("finished_at") is not None:
            end = float(row["finished_at"])
            node.finished_at = end if node.finished_at is None else max(node.finished_at, end)
        step_of[int(row["id"])] = step
    for row in rows:
        step = str(row["step_name"])
        for parent in _json(row.get("input_paths"), []):
            source = step_of.get(int(parent)) if isinstance(parent, (int, str)) and str(parent).isdigit() else None
            if source is not None and source != step:
                edges.setdefault((source, step), False)
        transition = _json(row.get("transition"), None)
        if isinstance(transition, dict):
            fan = bool(transition.get("foreach"))
            for target in transition.get("steps") or []:
                target = str(target)
                if target not in nodes:
                    nodes[target] = Node(target, first_task=1 << 62)
                edges[(step, target)] = edges.get((step, target), False) or fan
                if fan:
                    nodes[target].foreach = True
    for node in nodes.values():
        if not node.statuses:
            node.statuses["pending"] = 1
            node.tasks = 0
    _assign_layers(nodes, list(edges))
    layers: dict[int, list[Node]] = {}
    for node in nodes.values():
        layers.setdefault(node.layer, []).append(node)
    ordered = [sorted(layers[i], key=lambda n: n.first_task) for i in sorted(layers)]
    _order(ordered, list(edges))
    return Graph(ordered, [Edge(s, t, fan) for (s, t), fan in edges.items()])


def _assign_layers(nodes: dict[str, Node], edges: Sequence[tuple[str, str]]) -> None:
    """Longest path from a root; a back edge (there should be none) is ignored."""
    parents: dict[str, list[str]] = {name: [] for name in nodes}
    for source, target in edges:
        parents[target].append(source)
    done: dict[str, int] = {}
    visiting: set[str] = set()

    def depth(name: str) -> int:
        if name in done:
            return done[name]
        visiting.add(name)
        level = 0
        for parent in parents[name]:
            if parent not in visiting:
                level = max(level, depth(parent) + 1)
        visiting.discard(name)
        done[name] = level
        return level

    for name in sorted(nodes, key=lambda n: nodes[n].first_task):
        nodes[name].layer = depth(name)


def _order(layers: list[list[Node]], edges: Sequence[tuple[str, str]]) -> None:
    """Order each layer by the mean position of its parents in the layer above (one pass, top down)."""
    position: dict[str, float] = {}
    for layer in layers:
        def key(node: Node) -> tuple[float, int]:
            above = [position[s] for s, t in edges if t == node.step and s in position]
            return (sum(above) / len(above) if above else float(node.first_task), node.first_task)

        layer.sort(key=key)
        for i, node in enumerate(layer):
            node.position = i
            position[node.step] = i - (len(layer) - 1) / 2


def to_svg(graph: Graph) -> str:
    """The graph as an SVG picture (boxes coloured by status, text escaped, a tooltip per step)."""
    widest = max((len(layer) for layer in graph.layers), default=1)
    width = widest * _BOX_W + (widest - 1) * _GAP_X + 2 * _MARGIN
    height = len(graph.layers) * _BOX_H + max(len(graph.layers) - 1, 0) * _GAP_Y + 2 * _MARGIN
    where: dict[str, tuple[float, float]] = {}
    for i, layer in enumerate(graph.layers):
        row_width = len(layer) * _BOX_W + (len(layer) - 1) * _GAP_X
        left = (width - row_width) / 2
        for j, node in enumerate(layer):
            where[node.step] = (left + j * (_BOX_W + _GAP_X), _MARGIN + i * (_BOX_H + _GAP_Y))
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="flow-graph" role="img" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" font-family="system-ui, -apple-system, Segoe UI, sans-serif">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7"'
        ' orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#777"/></marker></defs>',
    ]
    for edge in graph.edges:
        if edge.source not in where or edge.target not in where:
            continue
        x1, y1 = where[edge.source]
        x2, y2 = where[edge.target]
        x1, y1, x2 = x1 + _BOX_W / 2, y1 + _BOX_H, x2 + _BOX_W / 2
        if y2 <= y1:  # an edge that does not go down (should not happen): a straight line
            out.append(f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" stroke="#999"/>')
            continue
        mid = (y1 + y2) / 2
        dash = ' stroke-dasharray="5 3"' if edge.foreach else ""
        out.append(
            f'<path class="edge" d="M {x1:.0f} {y1:.0f} C {x1:.0f} {mid:.0f}, {x2:.0f} {mid:.0f}, {x2:.0f} {y2 - 2:.0f}"'
            f' fill="none" stroke="#777" stroke-width="1.4"{dash} marker-end="url(#arrow)">'
            f"<title>{escape(edge.source)} → {escape(edge.target)}{' (foreach)' if edge.foreach else ''}</title></path>"
        )
    for node in graph.nodes:
        x, y = where[node.step]
        fill, stroke = STATUS_COLORS.get(node.status, STATUS_COLORS["pending"])
        tip = f"{node.step}: {node.tasks} task{'s' if node.tasks != 1 else ''}, {node.detail}"
        out.append(
            f'<g class="step status-{escape(node.status)}" data-step="{escape(node.step)}">'
            f"<title>{escape(tip)}</title>"
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{_BOX_W}" height="{_BOX_H}" rx="8" fill="{fill}"'
            f' stroke="{stroke}" stroke-width="1.6"/>'
            f'<text x="{x + _BOX_W / 2:.0f}" y="{y + 23:.0f}" text-anchor="middle" font-size="14"'
            f' font-weight="600" fill="#1d1d1f">{escape(_clip(node.label, 24))}</text>'
            f'<text x="{x + _BOX_W / 2:.0f}" y="{y + 42:.0f}" text-anchor="middle" font-size="12"'
            f' fill="{stroke}">{escape(_clip(node.detail, 30))}</text></g>'
        )
    out.append("</svg>")
    return "".join(out)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def to_text(graph: Graph) -> str:
    """The graph as plain text, one line per step, layers top to bottom.

    Each line holds the layer number, the step (``step x N`` for a foreach fan-out),
    its status and time, and the steps it leads to.
    """
    width = max((len(n.label) for n in graph.nodes), default=4)
    lines = []
    for i, layer in enumerate(graph.layers, 1):
        for j, node in enumerate(layer):
            prefix = f"{i:>2}  " if j == 0 else "    "
            targets = graph.targets(node.step)
            arrow = ""
            if targets:
                fan = any(e.foreach for e in graph.edges if e.source == node.step)
                arrow = f"  -> {', '.join(targets)}{' (foreach)' if fan else ''}"
            lines.append(f"{prefix}{node.label:<{width}}  {node.detail}{arrow}")
    return "\n".join(lines)
