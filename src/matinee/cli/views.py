"""Gathering what the CLI shows (plain data, also the --json output) and rendering it."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Sequence
from typing import Any

from matinee.core.client import Flow, Run, Step, Task, get_namespace, namespace
from matinee.errors import NotFoundError


def when(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def _duration(run: Run) -> str:
    end = run.finished_at
    return f"{end - run.created_at:.2f}s" if end else ""


def run_row(run: Run) -> dict[str, Any]:
    return {
        "run": run.pathspec,
        "status": run.status,
        "user": run.user,
        "created": when(run.created_at),
        "duration": _duration(run),
        "tags": sorted(run.tags),
        "error": run.error,
    }


def list_runs(flow: str | None, *, limit: int, tags: Sequence[str], all_users: bool) -> list[dict[str, Any]]:
    from matinee.core.store import open_store

    saved = get_namespace()
    if all_users:
        namespace(None)
    try:
        names = [flow] if flow else [r["flow_name"] for r in open_store().metadata.list_flows()]
        found: list[Run] = []
        for name in names:
            for run in Flow(name).runs(*tags):
                found.append(run)
        found.sort(key=lambda r: r.id, reverse=True)
        return [run_row(r) for r in found[:limit]]
    finally:
        namespace(saved)


def _objects(pathspec: str) -> Iterator[Task]:
    """Every task under a run, step or task pathspec."""
    parts = pathspec.strip("/").split("/")
    if len(parts) == 4:
        yield Task(pathspec)
    elif len(parts) == 3:
        yield from Step(pathspec).tasks()
    elif len(parts) == 2:
        for step in Run(pathspec).steps():
            yield from step.tasks()
    else:
        raise NotFoundError(f"{pathspec!r} is not a run, step or task: use Flow/RUN[/STEP[/TASK]]", pathspec=pathspec)


def describe(pathspec: str) -> dict[str, Any]:
    parts = pathspec.strip("/").split("/")
    if len(parts) == 1:
        flow = Flow(parts[0])
        return {"kind": "flow", "flow": flow.name, "runs": [run_row(r) for r in flow.runs()][:20]}
    if len(parts) == 2:
        run = Run(pathspec)
        steps = []
        for step in run.steps():
            tasks = list(step.tasks())
            steps.append({
                "step": step.name,
                "tasks": len(tasks),
                "status": ", ".join(sorted({t.status for t in tasks})),
                "cloned": sum(1 for t in tasks if t.cloned_from),
            })
        return {"kind": "run", **run_row(run), "params": run.params, "system_tags": sorted(run.system_tags),
                "origin_run_id": run.origin_run_id, "code_hash": run.code_hash, "steps": steps,
                "metrics": sorted(run.metrics)}
    if len(parts) == 3:
        step = Step(pathspec)
        return {"kind": "step", "step": step.pathspec, "tasks": [task_row(t) for t in step.tasks()]}
    if len(parts) == 4:
        task = Task(pathspec)
        return {"kind": "task", **task_row(task), "artifacts": list_artifacts(pathspec),
                "attempts": [{"attempt": a["attempt"], "status": a["status"], "exception": a["exception"]}
                             for a in task.attempts], "traceback": task.traceback}
    raise NotFoundError(f"{pathspec!r} is not a pathspec: use Flow[/RUN[/STEP[/TASK]]]", pathspec=pathspec)


def task_row(task: Task) -> dict[str, Any]:
    return {"task": task.pathspec, "status": task.status, "index": task.index,
            "cloned_from": task.cloned_from, "exception": task.exception}


def collect_logs(pathspec: str, stream: str | None) -> list[dict[str, Any]]:
    out = []
    for task in _objects(pathspec):
        entry: dict[str, Any] = {"task": task.pathspec}
        if stream in (None, "stdout"):
            entry["stdout"] = task.stdout
        if stream in (None, "stderr"):
            entry["stderr"] = task.stderr
        out.append(entry)
    return out


def list_artifacts(pathspec: str) -> list[dict[str, Any]]:
    return [
        {"task": task.pathspec, "name": a.name, "codec": a.codec, "size": a.size, "key": a.key}
        for task in _objects(pathspec)
        for a in task.artifacts.values()
    ]


def metric_rows(pathspec: str, name: str | None) -> list[dict[str, Any]]:
    run = Run(pathspec)
    if name:
        series = run.metric(name)
        if not len(series):
            raise NotFoundError(f"run {run.pathspec} has no metric {name!r}; it has: {', '.join(run.metrics) or 'none'}")
        return [{"step": s, "value": v, "time": when(t)} for s, v, t in zip(series.steps, series.values, series.timestamps, strict=True)]
    return [
        {"name": n, "points": len(s), "last": s.last, "min": _extreme(min, s.values), "max": _extreme(max, s.values),
         "last_step": s.steps[-1]}
        for n, s in sorted(run.metrics.items())
    ]


def _extreme(pick: Any, values: list[float]) -> float:
    """``min`` or ``max`` of the numbers among ``values`` (NaN points skipped); NaN when all are NaN."""
    numbers = [v for v in values if v == v]
    return pick(numbers) if numbers else math.nan


def run_graph(pathspec: str) -> dict[str, Any]:
    """The step graph of run ``Flow/RUN`` as plain data: layers of steps (status, tasks, seconds) and edges."""
    from matinee.core.store import open_store
    from matinee.web.graph import layout

    if len(pathspec.strip("/").split("/")) != 2:
        raise NotFoundError(f"{pathspec!r} is not a run: --graph needs Flow/RUN", pathspec=pathspec)
    run = Run(pathspec)
    graph = layout(open_store().metadata.list_tasks(run.id))
    return {
        "run": run.pathspec,
        "status": run.status,
        "layers": [[{"step": n.step, "label": n.label, "status": n.status, "tasks": n.tasks, "seconds": n.seconds,
                     "statuses": n.statuses, "next": graph.targets(n.step)} for n in layer] for layer in graph.layers],
        "edges": [{"from": e.source, "to": e.target, "foreach": e.foreach} for e in graph.edges],
    }


# -- rendering -------------------------------------------------------------------------
def _console() -> Any:
    from rich.console import Console

    return Console(soft_wrap=False)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(map(str, value))
    return str(value)


def _short(column: str, value: Any) -> Any:
    """Sizes in human units, content keys shortened (``--json`` keeps them whole)."""
    if column == "size" and isinstance(value, int):
        return size(value)
    if column == "key" and isinstance(value, str):
        return value[:12]
    return value


def print_table(rows: list[dict[str, Any]], columns: list[str], title: str | None = None) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold", justify="right" if column in ("size", "points", "value") else "left")
    for row in rows:
        table.add_row(*(_cell(_short(c, row.get(c))) for c in columns))
    _console().print(table)
    if not rows:
        _console().print("(none)")


def print_runs(rows: list[dict[str, Any]]) -> None:
    print_table(rows, ["run", "status", "user", "created", "duration", "tags"], title="Runs")


def print_description(info: dict[str, Any]) -> None:
    kind = info["kind"]
    console = _console()
    if kind == "flow":
        print_table(info["runs"], ["run", "status", "user", "created", "duration", "tags"], title=f"Flow {info['flow']}")
    elif kind == "run":
        console.print(f"[bold]Run {info['run']}[/bold]  {info['status']}  by {info['user']}  {info['created']}  ({info['duration']})")
        if info["error"]:
            console.print(f"error: {info['error']}", markup=False)
        if info["origin_run_id"]:
            console.print(f"resumed from run {info['origin_run_id']}")
        console.print(f"parameters: {info['params'] or '{}'}", markup=False)
        console.print(f"tags: {', '.join(info['tags']) or '-'}   system: {', '.join(info['system_tags'])}", markup=False)
        if info["metrics"]:
            console.print(f"metrics: {', '.join(info['metrics'])}", markup=False)
        print_table(info["steps"], ["step", "tasks", "status", "cloned"], title="Steps")
    elif kind == "step":
        print_table(info["tasks"], ["task", "status", "index", "cloned_from", "exception"], title=f"Step {info['step']}")
    else:
        console.print(f"[bold]Task {info['task']}[/bold]  {info['status']}")
        if info["cloned_from"]:
            console.print(f"cloned from task {info['cloned_from']}")
        print_table(info["attempts"], ["attempt", "status", "exception"], title="Attempts")
        print_table(info["artifacts"], ["name", "codec", "size", "key"], title="Artifacts")
        if info["traceback"]:
            console.print(info["traceback"], markup=False, highlight=False)


_STATUS_STYLE = {"completed": "green", "failed": "bold red", "running": "cyan", "pending": "dim"}


def print_graph(info: dict[str, Any]) -> None:
    """Draw a run's step graph: layers top to bottom, each step with its status and time, ``step x N`` for a foreach."""
    from rich.text import Text

    from matinee.web.graph import duration

    console = _console()
    console.print(Text.assemble(("Run ", "bold"), (info["run"], "bold"), "  ", (info["status"], _STATUS_STYLE.get(info["status"], ""))))
    if not info["layers"]:
        console.print("(no steps: this run was tracked outside a flow)")
        return
    width = max((len(n["label"]) for layer in info["layers"] for n in layer), default=4)
    for i, layer in enumerate(info["layers"]):
        if i:
            console.print(Text("    |", style="dim"))
            console.print(Text("    v", style="dim"))
        for node in layer:
            line = Text("    ")
            line.append(f"{node['label']:<{width}}", style="bold")
            line.append("  ")
            line.append(f"{node['status']:<9}", style=_STATUS_STYLE.get(node["status"], ""))
            if node["seconds"] is not None:
                line.append(f"  {duration(node['seconds']):>7}")
            if len(node["statuses"]) > 1:
                line.append("  (" + ", ".join(f"{n} {s}" for s, n in sorted(node["statuses"].items())) + ")")
            if node["next"]:
                fan = any(e["foreach"] for e in info["edges"] if e["from"] == node["step"])
                line.append(f"  -> {', '.join(node['next'])}" + (" (foreach)" if fan else ""), style="dim")
            console.print(line)
