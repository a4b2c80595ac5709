"""Benchmark matinee's recommenders side by side with their references, in one run.

Usage (from the repository root):

    python benchmarks/recs/run.py                         # all three parts, 5 timed runs per side
    python benchmarks/recs/run.py --only quality,speed --repeat 3
    python benchmarks/recs/run.py --json recs.json --markdown section.md

Parts: ``quality`` (every model after a validation grid, EASE and ALS against
plain numpy EASE and ``implicit``, a paired bootstrap), ``speed`` (fit and
evaluation times and EASE's peak memory, each in a fresh process), ``scale``
(the simulator's 100k x 20k preset). Progress goes to stderr, the tables to
stdout. See benchmarks/README.md, "Recommendations".
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import protocol as pr  # noqa: E402
import quality  # noqa: E402
import report  # noqa: E402
import timing  # noqa: E402

PARTS = ("quality", "speed", "scale")


def log(message):
    print(message, file=sys.stderr, flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(pr.DEFAULT_DATA), help="the ml-latest-small folder")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per side in the speed part (default 5)")
    parser.add_argument("--only", help="comma-separated parts: " + ", ".join(PARTS))
    parser.add_argument("--scale-users", type=int, metavar="N",
                        help="scale part: evaluate a seeded sample of N test users (default: all)")
    parser.add_argument("--scale-preset", default="large",
                        help="scale part: the simulator preset (default large; smaller ones only to try the code)")
    parser.add_argument("--scale-ease-fit", action="store_true",
                        help="scale part: also fit and evaluate EASE at its defaults on the large preset")
    parser.add_argument("--json", metavar="PATH", help="write every result and sample as JSON")
    parser.add_argument("--markdown", metavar="PATH", nargs="?", const="-",
                        help="write the RESULTS.md section (default: stdout)")
    parser.add_argument("--tmp-dir", help="where the simulator's data goes (default: the system temp dir)")
    parser.add_argument("--keep-temp", action="store_true", help="keep that directory")
    args = parser.parse_args(argv)
    args.parts = PARTS if not args.only else [p.strip() for p in args.only.split(",")]
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part {unknown[0]!r}; choose from {', '.join(PARTS)}")
    return args


def notes_for(q, samples, scale, configs, args, split_problems):
    notes = []
    if q:
        notes.append(
            "Every test score was computed three ways that agree to 1e-9 or better: matinee's `evaluate`, "
            "matinee's metric functions on the top-20 lists, and a plain per-user loop in the benchmark "
            "(`protocol.plain_metrics`). Reference lists (plain numpy EASE, `implicit` ALS and BPR) are "
            "scored with matinee's metric functions and the plain loop.")
        notes.append("matinee's split matches the protocol recomputed plainly from the ratings "
                     f"({q['test_users']} test users, {q['validation_users']} validation users)."
                     if not split_problems else "SPLIT CHECK: " + "; ".join(split_problems))
        for best in q["best"]:
            boot, ref = best["bootstrap"], best["reference"]
            notes.append(
                f"Best matinee model (chosen on validation): {best['matinee']['model']}; best reference chosen "
                f"on {best['rule']}{' (the most demanding choice)' if best['rule'] == 'test' else ''}: "
                f"{pr.REFERENCES[ref['model']]} ({pr.label(ref['params'])}). NDCG@10 difference "
                f"{boot['mean']:+.4f}, 95% paired bootstrap interval [{boot['low']:+.4f}, {boot['high']:+.4f}] "
                f"over {boot['users']} users ({boot['resamples']} resamples, seed {boot['seed']}); "
                + ("both give the same NDCG@10 for every user, so every resample gives 0."
                   if boot["low"] == boot["high"] == 0 else
                   f"{boot['share_positive'] * 100:.0f}% of resamples favour matinee."))
        same = [m for m in pr.REFERENCES if q["chosen"][m] == q["reference_chosen"][m]]
        notes.append("On validation the references chose the same configurations as matinee for "
                     + (", ".join(same) if same else "no model") + ".")
    if samples:
        notes.append(
            f"Speed: medians of {args.repeat} runs per side, each a fresh process that loads and splits the "
            "data untimed, then times one fit (wall: perf_counter; CPU: process_time, all threads) and one "
            "evaluation (`evaluate`, all 9 metrics at k = 10 and 20, every test user). The sides alternate, "
            "the order flipping every round. Peak memory is the process's peak resident set (`VmHWM`) right "
            "after the fit (Python, pandas and the data included; not `ru_maxrss`, which Linux carries over "
            "from the parent process at fork). `implicit` and `threadpoolctl` are imported before "
            "the clock on both sides.")
        notes.append(
            f"Threads: ALS num_threads={configs['ALS'].get('num_threads', 0)} on both sides (0 = all "
            f"{os.cpu_count()} cores), BLAS held at 1 thread during the fit on both sides (matinee "
            "does it itself; the direct `implicit` call is wrapped in `threadpool_limits(1, 'blas')` as "
            "`implicit` recommends). BPR num_threads=1 on both sides. EASE (matinee and plain numpy) uses "
            "the BLAS default threads.")
    if scale:
        gen = scale["generate"]
        notes.append(
            f"Scale: `StreamingService('{args.scale_preset}', seed=0)`: {gen['plays']:,} plays by "
            f"{gen['members_with_plays']:,} members over {gen['titles_with_plays']:,} titles, generated once "
            f"({gen['wall']:.0f} s) and saved; every play a positive of weight 1 (as `matinee demo` builds "
            "it), the same 20% / >= 5 split. Each model ran once in a fresh process that loads, splits, fits "
            "and evaluates; peak RSS is that process's `VmHWM`.")
        if args.scale_users:
            notes.append(f"Scale evaluation used a seeded sample (seed 0) of {args.scale_users:,} test users.")
        d = scale.get("EASE default")
        if d and d.get("error") is None:
            notes.append(
                f"EASE's default max_items={d['max_items']:,} is not below this catalogue "
                f"({d['active_items']:,} items have training interactions), so at its defaults EASE does not "
                f"decline on the {args.scale_preset} preset; the decline is shown with "
                f"max_items={timing.EASE_DECLINE_MAX_ITEMS:,}.")
    return notes


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    env = report.environment()
    log(f"python {env['python']}; {env['versions']}; load {env['load_at_start']}")
    reason = pr.missing_data(args.data)
    if reason and ("quality" in args.parts or "speed" in args.parts):
        log(f"skipping the ml-latest-small parts: {reason}")
        args.parts = [p for p in args.parts if p == "scale"]
        if not args.parts:
            return 0
    q = samples = scale = None
    split_problems = []
    configs = dict(timing.FALLBACK)
    if "quality" in args.parts:
        log("[quality] validation grids, then test")
        protocol = pr.load_protocol(args.data)
        split_problems = pr.check_split(protocol)
        for problem in split_problems:
            log(f"  SPLIT CHECK: {problem}")
        q = quality.run(protocol, log)
        configs.update(q["chosen"])
    if "speed" in args.parts:
        log(f"[speed] {args.repeat} fresh-process runs per side")
        samples = timing.speed(args.data, configs, args.repeat, log)
    if "scale" in args.parts:
        log(f"[scale] StreamingService({args.scale_preset!r})")
        workdir = tempfile.mkdtemp(prefix="recs-bench-", dir=args.tmp_dir)
        try:
            scale = timing.scale(workdir, args.scale_preset, args.scale_users, args.scale_ease_fit, log)
        finally:
            if args.keep_temp:
                log(f"  kept {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    env["load_at_end"] = report.load_average()
    settings = {"command": report.command_line(), "repeat": args.repeat,
                "total_seconds": time.perf_counter() - started}

    rows = []
    if q:
        rows += report.quality_rows(q)
    if samples:
        rows += report.speed_rows(samples, configs)
    if scale:
        rows += report.scale_rows(scale)
    notes = notes_for(q, samples, scale, configs, args, split_problems)

    if q:
        header, body = report.quality_table(q)
        print(report.text_table(header, body) + "\n")
    print(report.text_table(report.HEADER, [r.cells() for r in rows]))
    for note in notes:
        print(f"- {note}")
    if args.json:
        data = {"environment": env, "settings": settings, "rows": [r.__dict__ for r in rows], "notes": notes,
                "quality": _plain(q), "speed": {f"{m}/{s}": v for (m, s), v in (samples or {}).items()},
                "scale": scale, "configs": configs}
        Path(args.json).write_text(json.dumps(data, indent=2, default=str) + "\n")
    if args.markdown:
        text = report.markdown_section(env, settings, q, rows, notes)
        if args.markdown == "-":
            print("\n" + text)
        else:
            Path(args.markdown).write_text(text)
    return 0


def _plain(value):
    """JSON-friendly copy: per-user arrays become their means' sources (lists)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


if __name__ == "__main__":
    sys.exit(main())
