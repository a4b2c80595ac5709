"""Run matinee side by side with Metaflow and MLflow and compare.

Usage (from the repository root, with the benchmark venv's python):

    python benchmarks/core/run.py                  # all cases, 5 runs each
    python benchmarks/core/run.py --quick --only a,import
    python benchmarks/core/run.py --markdown - > section.md
    python benchmarks/core/run.py --json results.json

Progress goes to stderr; the table goes to stdout unless JSON or markdown is
sent there instead. See benchmarks/README.md for what each case measures.
"""

import argparse
import json
import sys
import time
import traceback

from cases import CASES, Bench, describe_series
from harness import progress
from report import (
    Row,
    command_line,
    environment,
    load_average,
    markdown_section,
    text_table,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per side (default 5)")
    parser.add_argument(
        "--import-repeat", type=int, help="runs for import times (default 2x repeat)"
    )
    parser.add_argument("--quick", action="store_true", help="2 timed runs per side")
    parser.add_argument(
        "--only",
        help="comma-separated cases: "
        + ", ".join(f"{name} ({letter})" for name, (letter, _) in CASES.items()),
    )
    parser.add_argument("--json", metavar="PATH", help="write results as JSON ('-': stdout)")
    parser.add_argument(
        "--markdown",
        metavar="PATH",
        nargs="?",
        const="-",
        help="write the RESULTS.md section (default: stdout)",
    )
    parser.add_argument("--tmp-dir", help="where the working directories go")
    parser.add_argument("--keep-temp", action="store_true", help="keep the working directories")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat = 2
    args.import_repeat = args.import_repeat or 2 * args.repeat
    return args


def selected_cases(only):
    """Case names to run, from ``--only`` (names or issue letters)."""
    if not only:
        return list(CASES)
    by_letter = {letter: name for name, (letter, _) in CASES.items()}
    names = []
    for item in only.split(","):
        name = by_letter.get(item.strip(), item.strip())
        if name not in CASES:
            sys.exit(f"unknown case {item!r}; choose from {', '.join(CASES)}")
        names.append(name)
    return names


def run_cases(bench, names):
    """Run each case; a case that crashes becomes one error row."""
    rows = []
    for name in names:
        letter, fn = CASES[name]
        progress(f"[{name}] {fn.__doc__.splitlines()[0]}")
        started = time.perf_counter()
        bench.start_case(name)
        try:
            rows += fn(bench)
        except Exception as exc:  # keep going with the other cases
            traceback.print_exc(file=sys.stderr)
            rows.append(Row(letter, name, "s", f"error: {type(exc).__name__}: {exc}"))
        finally:
            bench.end_case()
        progress(f"[{name}] done in {time.perf_counter() - started:.0f} s")
    return rows


def emit(path, text):
    """Write ``text`` to ``path``, or to stdout for ``-``."""
    if path == "-":
        sys.stdout.write(text)
    else:
        with open(path, "w") as f:
            f.write(text)


def main(argv=None):
    args = parse_args(argv)
    bench = Bench(args.repeat, args.import_repeat, args.tmp_dir, args.keep_temp)
    env = environment()
    progress(f"python {env['python']}, versions: {env['versions']}")
    rows = run_cases(bench, selected_cases(args.only))
    env["load_at_end"] = load_average()
    settings = {
        "command": command_line(),
        "repeat": args.repeat,
        "import_repeat": args.import_repeat,
    }
    table = text_table(rows)
    to_stdout = "-" in (args.json, args.markdown)
    print(table, file=sys.stderr if to_stdout else sys.stdout, flush=True)
    if args.json:
        results = {
            "environment": env,
            "settings": settings,
            "rows": [row.as_dict() for row in rows],
            "series": describe_series(bench.series),
            "extra": bench.extra,
        }
        emit(args.json, json.dumps(results, indent=2) + "\n")
    if args.markdown:
        emit(args.markdown, markdown_section(rows, env, settings))


if __name__ == "__main__":
    main()
