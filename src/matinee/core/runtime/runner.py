"""The runner: schedules a run's tasks, retries, catches, resumes and records the outcome.

Tasks become ready as their parents finish: a linear step's successor at once,
every branch of a split, one task per item of a foreach, and a join when all
the branches it closes are done. On ``resume``, a ready task whose twin finished
in the origin run (same step, same foreach position, every parent cloned too,
and not at or after the step being resumed) is cloned by reference instead of
run: its artifacts are not stored again.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from matinee.config import Settings
from matinee.core.flows.graph import FlowGraph
from matinee.core.flows.spec import FlowSpec, IncludeFile
from matinee.core.runtime.task import AttemptResult, RunContext, TaskSpec, finish_caught
from matinee.core.storage.metadata import COMPLETED, FAILED, RUNNING, check_user_tags, foreach_key
from matinee.core.store import Store, open_store
from matinee.errors import FlowError, NotFoundError, ParameterError, RunFailed

#: Seconds between heartbeats written while a run waits on its workers.
HEARTBEAT = 10.0


def resolve_parameters(flow_cls: type[FlowSpec], given: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check and convert the given parameters; returns (values by attribute, values to record)."""
    declared = flow_cls._parameters()
    by_name = {p.name: p for p in declared.values()}
    for name in given:
        if name not in by_name:
            known = ", ".join(f"--{n}" for n in by_name) or "none"
            raise ParameterError(f"unknown parameter --{name}; this flow's parameters: {known}", parameter=name)
    values, recorded = {}, {}
    for attr, param in declared.items():
        values[attr] = param.resolve(dict(given))
        # an included file is recorded by its path; its contents are an artifact
        recorded[param.name] = given.get(param.name, param.default) if isinstance(param, IncludeFile) else values[attr]
    return values, recorded


class Runner:
    """Runs (or resumes) one flow. Create, then call :meth:`run`."""

    def __init__(
        self,
        flow_cls: type[FlowSpec],
        *,
        params: Mapping[str, Any] | None = None,
        settings: Settings | None = None,
        executor: str | None = None,
        max_workers: int | None = None,
        ray_address: str | None = None,
        tags: tuple[str, ...] = (),
        origin_run_id: int | None = None,
        resume_step: str | None = None,
        resume: bool = False,
        quiet: bool = False,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.flow_cls = flow_cls
        self.graph: FlowGraph = flow_cls._graph()
        self.store: Store = open_store(settings)
        settings = self.store.settings
        self.user = settings.user
        self.max_workers = max_workers or settings.max_workers
        self.ray_address = ray_address or settings.ray_address
        self.executor_name = executor or ("ray" if ray_address else settings.executor)
        if self.executor_name == "auto":
            parallel = self.graph.has_parallelism and self.max_workers > 1
            self.executor_name = "process" if parallel else "inline"
        check_user_tags(tags)
        self.tags = tuple(tags)
        self.quiet = quiet
        self.echo = echo or (lambda line: print(line, flush=True))
        self.given = dict(params or {})
        self.resume = resume or origin_run_id is not None or resume_step is not None
        self.origin_run_id = origin_run_id
        self.resume_step = resume_step
        if resume_step is not None and resume_step not in self.graph:
            raise FlowError(f"cannot resume from unknown step {resume_step!r}", step=resume_step)
        self.run_id: int | None = None

    # -- set-up ----------------------------------------------------------------
    def _prepare(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Parameter values and the record of them, for a new run or from the origin run."""
        flow = self.flow_cls.__name__
        if not self.resume:
            return resolve_parameters(self.flow_cls, self.given)
        if self.given:
            raise ParameterError(
                "resume reuses the origin run's parameters; start a new run to change them",
                parameter=next(iter(self.given)),
            )
        metadata = self.store.metadata
        if self.origin_run_id is None:
            runs = metadata.list_runs(flow, kind="flow", tag=f"user:{self.user}", limit=1)
            if not runs:
                raise NotFoundError(f"no earlier run of {flow} to resume; run it first", flow=flow)
            self.origin_run_id = runs[0]["id"]
        origin = metadata.get_run(self.origin_run_id)
        if origin is None or origin["flow_name"] != flow:
            raise NotFoundError(f"run {flow}/{self.origin_run_id} does not exist", run_id=self.origin_run_id)
        if origin["status"] == RUNNING:
            raise FlowError(f"run {flow}/{self.origin_run_id} is still running; wait for it to end first")
        start = [t for t in metadata.list_tasks(self.origin_run_id, "start") if t["status"] == COMPLETED]
        refs = metadata.task_artifacts(start[0]["id"]) if start else {}
        attrs = list(self.flow_cls._parameters())
        missing = [a for a in attrs if a not in refs]
        if missing:
            raise FlowError(
                f"cannot resume run {flow}/{self.origin_run_id}: its start step did not finish, so its "
                f"parameters ({', '.join(missing)}) are unknown; start a new run instead"
            )
        values = {a: self.store.artifacts.load(refs[a]) for a in attrs}
        return values, metadata.run_params(self.origin_run_id)

    def _code_hash(self) -> str | None:
        try:
            source = inspect.getsource(sys.modules[self.flow_cls.__module__])
        except (OSError, TypeError, KeyError):
            return None
        return hashlib.sha256(source.encode()).hexdigest()

    # -- the run -----------------------------------------------------------------
    def run(self) -> int:
        """Run the flow to the end; returns the run id, raises :class:`RunFailed` on failure."""
        values, recorded = self._prepare()
        metadata, artifacts = self.store.metadata, self.store.artifacts
        flow = self.flow_cls.__name__
        system_tags = [f"executor:{self.executor_name}"]
        if self.origin_run_id:
            system_tags.append(f"resumed-from:{self.origin_run_id}")
        self.run_id = run_id = metadata.create_run(
            flow, self.user, code_hash=self._code_hash(), origin_run_id=self.origin_run_id,
            executor=self.executor_name, tags=self.tags, system_tags=system_tags, params=recorded,
        )
        ctx = RunContext(
            flow_cls=self.flow_cls, graph=self.graph, store=self.store, run_id=run_id, flow_name=flow,
            user=self.user, tags=frozenset(self.tags), origin_run_id=self.origin_run_id,
            param_refs={attr: artifacts.save(value) for attr, value in values.items()},
        )
        from matinee.core.executors import make_executor

        try:
            executor = make_executor(self.executor_name, ctx, self.max_workers, self._say, self.ray_address)
        except BaseException as exc:
            metadata.finish_run(run_id, FAILED, f"{type(exc).__name__}: {exc}")
            raise
        self._say(f"Run {flow}/{run_id} starting (executor {self.executor_name}, user {self.user})")
        started = time.monotonic()
        try:
            failure = _Scheduler(self, ctx, executor).run()
        except BaseException as exc:
            executor.shutdown()
            reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
            metadata.finish_run(run_id, FAILED, reason)
            raise
        executor.shutdown()  # nothing runs any more; stops a Ray started for this run
        if failure:
            metadata.finish_run(run_id, FAILED, failure)
            self._say(f"Run {flow}/{run_id} failed after {time.monotonic() - started:.2f}s: {failure}")
            raise RunFailed(f"run {flow}/{run_id} failed: {failure}", run_id=run_id, flow=flow)
        metadata.finish_run(run_id, COMPLETED)
        self._say(f"Run {flow}/{run_id} completed in {time.monotonic() - started:.2f}s")
        return run_id

    def _say(self, line: str) -> None:
        if not self.quiet:
            self.echo(line)


class _Scheduler:
    """The ready queue, join bookkeeping, retries and clones of one run."""

    def __init__(self, runner: Runner, ctx: RunContext, executor: Any) -> None:
        self.runner = runner
        self.ctx = ctx
        self.graph = ctx.graph
        self.metadata = ctx.store.metadata
        self.executor = executor
        self.ready: deque[TaskSpec] = deque([TaskSpec("start", [], [])])
        self.delayed: list[TaskSpec] = []
        self.joins: dict[tuple[str, str], dict[Any, int]] = {}
        self.cloned: set[int] = set()
        self.failure: str | None = None
        self.origin: dict[tuple[str, str], dict[str, Any]] = {}
        self.rerun: set[str] = set()
        if runner.origin_run_id is not None:
            for row in self.metadata.list_tasks(runner.origin_run_id):
                if row["status"] == COMPLETED:
                    self.origin[(row["step_name"], row["foreach_key"])] = row
            if runner.resume_step:
                self.rerun = self.graph.downstream(runner.resume_step)

    def run(self) -> str | None:
        last_beat = time.monotonic()
        while (self.ready or self.delayed or self.executor.running) and not (self.failure and not self.executor.running):
            now = time.time()
            for spec in [s for s in self.delayed if s.not_before <= now]:
                self.delayed.remove(spec)
                self.ready.append(spec)
            while self.ready and self.executor.free > 0 and not self.failure:
                self._launch(self.ready.popleft())
            if self.executor.running or self.executor.free <= 0:
                for spec, result in self.executor.wait(timeout=HEARTBEAT):
                    self._finished(spec, result)
            elif self.delayed and not self.failure:
                time.sleep(max(0.0, min(s.not_before for s in self.delayed) - time.time()))
            elif self.failure:
                break
            if time.monotonic() - last_beat > HEARTBEAT:
                self.metadata.heartbeat(self.ctx.run_id)
                last_beat = time.monotonic()
        return self.failure

    def _launch(self, spec: TaskSpec) -> None:
        if spec.task_id == 0:
            twin = self._clone_source(spec)
            if twin is not None:
                spec.task_id = self.metadata.clone_task(self.ctx.run_id, twin, spec.foreach_stack, spec.input_ids)
                self.cloned.add(spec.task_id)
                self.runner._say(f"[{self.ctx.pathspec(spec)}] cloned from task {twin['id']} of run {self.runner.origin_run_id}")
                self._advance(spec, json.loads(twin["transition"]) if twin["transition"] else None)
                return
            spec.task_id = self.metadata.create_task(self.ctx.run_id, spec.step, spec.foreach_stack, spec.input_ids)
        self.metadata.start_attempt(spec.task_id, spec.attempt)
        self.executor.submit(spec)

    def _clone_source(self, spec: TaskSpec) -> dict[str, Any] | None:
        if not self.origin or spec.step in self.rerun:
            return None
        if not all(i in self.cloned for i in spec.input_ids):
            return None
        return self.origin.get((spec.step, foreach_key(spec.foreach_stack)))

    def _finished(self, spec: TaskSpec, result: AttemptResult) -> None:
        artifacts = self.ctx.store.artifacts
        out = artifacts.save_bytes(result.stdout).key if result.stdout else None
        err = artifacts.save_bytes(result.stderr).key if result.stderr else None
        status = COMPLETED if result.ok else FAILED
        self.metadata.finish_attempt(spec.task_id, spec.attempt, status, exception=result.error,
                                     stdout_key=out, stderr_key=err)
        if result.ok:
            self.runner._say(f"[{self.ctx.pathspec(spec)}] done")
            self._advance(spec, result.transition)
            return
        node = self.graph[spec.step]
        retry = node.decorators.get("retry")
        if retry and spec.attempt < int(retry["times"]):
            self.runner._say(f"[{self.ctx.pathspec(spec)}] attempt {spec.attempt} failed: {result.error}; retrying")
            spec.attempt += 1
            spec.not_before = time.time() + 60 * float(retry["minutes_between_retries"])
            self.delayed.append(spec)
            return
        if "catch" in node.decorators:
            transition = finish_caught(self.ctx, spec, result.error or "")
            if transition is not None:
                self.runner._say(f"[{self.ctx.pathspec(spec)}] failed, caught by @catch: {result.error}")
                self._advance(spec, transition)
                return
        self.metadata.finish_task(spec.task_id, FAILED)
        if not self.failure:
            self.failure = f"step {spec.step} (task {self.ctx.pathspec(spec)}) failed: {result.error}"

    def _advance(self, spec: TaskSpec, transition: dict[str, Any] | None) -> None:
        """Queue what becomes ready now that ``spec`` has finished."""
        node = self.graph[spec.step]
        if not transition:
            return
        for target in transition["steps"]:
            child = self.graph[target]
            if child.is_join:
                self._arrive(spec, target)
            elif node.type == "foreach":
                num = int(transition["num"])
                for i in range(num):
                    self.ready.append(TaskSpec(target, [*spec.foreach_stack, [node.name, i, num, spec.task_id]], [spec.task_id]))
            else:
                self.ready.append(TaskSpec(target, spec.foreach_stack, [spec.task_id]))

    def _arrive(self, spec: TaskSpec, join: str) -> None:
        """Count ``spec`` in at ``join``; queue the join once every branch it closes has arrived."""
        split = next(n for n in self.graph if n.matching_join == join)
        if split.type == "foreach":
            outer, position = spec.foreach_stack[:-1], spec.foreach_stack[-1][1]
            expected = spec.foreach_stack[-1][2]
        else:
            outer, expected = spec.foreach_stack, len(split.out_funcs)
            position = split.out_funcs.index(self._branch_of(spec.step, split.name))
        bucket = self.joins.setdefault((join, foreach_key(outer)), {})
        bucket[position] = spec.task_id
        if len(bucket) == expected:
            del self.joins[(join, foreach_key(outer))]
            self.ready.append(TaskSpec(join, [list(f) for f in outer], [bucket[k] for k in sorted(bucket)]))

    def _branch_of(self, step: str, split: str) -> str:
        """Which branch of ``split`` the step ``step`` is on."""
        for frame_split, branch in self.graph[step].split_stack:
            if frame_split == split:
                return branch
        raise AssertionError(f"step {step} is not inside split {split}")
