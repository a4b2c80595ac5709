"""The command line of a flow file: ``python flow.py run|resume|show``.

Built on argparse so that a flow starts without importing a CLI framework.
``matinee run flow.py ...`` and ``matinee resume flow.py ...`` call the same code.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from matinee.core.flows.spec import FlowSpec, Parameter
from matinee.errors import MatineeError, ParameterError, RunFailed


def main(flow_cls: type[FlowSpec], argv: Sequence[str] | None = None, prog: str | None = None) -> NoReturn:
    """Parse ``argv`` (default ``sys.argv[1:]``), do what it says, and exit."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or bool(os.environ.get("MATINEE_DEBUG"))
    try:
        code = _dispatch(flow_cls, args, prog or os.path.basename(sys.argv[0]))
    except MatineeError as exc:
        if debug:
            raise
        print(f"error: {exc.message}", file=sys.stderr, flush=True)
        code = 1 if isinstance(exc, RunFailed) else 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.stdout.flush()
    sys.exit(code)


def _parser(flow_cls: type[FlowSpec], prog: str) -> argparse.ArgumentParser:
    doc = (flow_cls.__doc__ or "").strip()
    parser = argparse.ArgumentParser(prog=prog, description=doc or f"The flow {flow_cls.__name__}.")
    parser.add_argument("--quiet", action="store_true", help="print only the steps' own output")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks of matinee errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = commands.add_parser("run", help="run the flow", description="Run the flow from start to end.")
    for param in flow_cls._parameters().values():
        _add_parameter(run, param)
    resume = commands.add_parser(
        "resume",
        help="re-run a failed run from where it failed",
        description="Start a new run that clones every task the origin run finished and re-runs the rest.",
    )
    resume.add_argument("step", nargs="?", help="re-run from this step (default: the first that did not finish)")
    resume.add_argument("--origin-run-id", type=int, help="the run to resume (default: your latest run)")
    for sub in (run, resume):
        sub.add_argument("--max-workers", type=int, help="tasks run at once by the process and ray executors")
        sub.add_argument("--tag", action="append", default=[], help="tag the run (repeatable)")
        sub.add_argument(
            "--executor",
            choices=("auto", "inline", "process", "ray"),
            help="inline: in this process; process: forked workers; ray: tasks on Ray; auto (default): "
            "inline for linear flows, process when there are branches or foreach",
        )
        sub.add_argument(
            "--ray-address",
            help="run on the Ray cluster at this address (host:port, ray://host:10001 or auto); "
            "implies --executor ray; default a local Ray started for the run",
        )
        sub.add_argument("--run-id-file", help="write the new run's id to this file")
        # SUPPRESS: a subcommand's unset flag must not reset one given before the command
        sub.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    commands.add_parser("show", help="print the flow's steps and transitions")
    return parser


def _add_parameter(parser: argparse.ArgumentParser, param: Parameter) -> None:
    names = [f"--{param.name}"]
    if param.attr != param.name and f"--{param.attr}" not in names:
        names.append(f"--{param.attr}")
    default = param.default if not callable(param.default) else "(computed)"
    help_text = param.help
    if param.show_default and default is not None:
        help_text += f" (default: {default!r})"
    if param.required:
        help_text += " (required)"
    extra: dict[str, Any] = {"nargs": "?", "const": "true"} if param.type_name == "bool" else {}
    parser.add_argument(
        *names, dest=f"param:{param.name}", default=argparse.SUPPRESS, metavar=param.type_name.upper(),
        help=help_text.strip() or None, **extra,
    )


def _dispatch(flow_cls: type[FlowSpec], args: list[str], prog: str) -> int:
    flow_cls._graph()  # validate before anything else, whatever the command
    parser = _parser(flow_cls, prog)
    parsed, unknown = parser.parse_known_args(args)
    if unknown:
        option = next((u for u in unknown if u.startswith("--")), unknown[0]).split("=", 1)[0]
        declared = flow_cls._parameters().values()
        if parsed.command == "resume" and option in {f"--{p.name}" for p in declared} | {f"--{p.attr}" for p in declared}:
            raise ParameterError(
                f"resume reuses the origin run's parameters, so {option} cannot be given; "
                f"start a new run to change them ({prog} run {option} ...)",
                parameter=option.lstrip("-"),
            )
        known = ", ".join(f"--{p.name}" for p in declared) or "none"
        raise ParameterError(
            f"unknown parameter {option}; this flow's parameters: {known} (see {prog} run --help)",
            parameter=option.lstrip("-"),
        )
    if parsed.command == "show":
        print(render_graph(flow_cls))
        return 0
    from matinee.core.runtime.runner import Runner

    given = {k.split(":", 1)[1]: v for k, v in vars(parsed).items() if k.startswith("param:")}
    runner = Runner(
        flow_cls,
        params=given,
        executor=parsed.executor,
        max_workers=parsed.max_workers,
        ray_address=parsed.ray_address,
        tags=tuple(parsed.tag),
        origin_run_id=getattr(parsed, "origin_run_id", None),
        resume_step=getattr(parsed, "step", None),
        resume=parsed.command == "resume",
        quiet=parsed.quiet,
    )
    try:
        run_id = runner.run()
    finally:
        if parsed.run_id_file and runner.run_id is not None:
            with open(parsed.run_id_file, "w") as fh:
                fh.write(str(runner.run_id))
    return 0 if run_id else 1


def render_graph(flow_cls: type[FlowSpec]) -> str:
    """A plain-text description of the flow's steps, as ``show`` prints it."""
    graph = flow_cls._graph()
    lines = [flow_cls.__name__, ""]
    doc = (flow_cls.__doc__ or "").strip()
    if doc:
        lines += [doc, ""]
    params = flow_cls._parameters()
    if params:
        lines.append("Parameters:")
        for p in params.values():
            lines.append(f"  --{p.name} ({p.type_name}, default {p.default!r}){': ' + p.help if p.help else ''}")
        lines.append("")
    for node in graph:
        lines.append(f"Step {node.name} ({node.kind})")
        if node.doc:
            lines.append(f"    {node.doc.splitlines()[0]}")
        if node.decorators:
            lines.append("    decorators: " + ", ".join(f"@{d}" for d in node.decorators))
        if node.out_funcs:
            target = " and ".join(node.out_funcs)
            lines.append(f"    => {target}" + (f" for each item of {node.foreach_param}" if node.foreach_param else ""))
        lines.append("")
    return "\n".join(lines).rstrip()
