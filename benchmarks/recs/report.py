"""Turning the three parts' results into rows with targets, a text table and a RESULTS.md section."""

import datetime
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
from dataclasses import dataclass

import protocol as pr
from timing import EASE_DECLINE_MAX_ITEMS, median

LIBRARIES = ("matinee", "implicit", "numpy", "scipy", "threadpoolctl")
GIB = 2**30
MIB = 2**20


# -- environment ------------------------------------------------------------------------
def load_average():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def environment():
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = "absent"
    memory = "?"
    try:
        with open("/proc/meminfo") as f:
            kib = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
        memory = f"{kib / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        pass
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    blas = "?"
    try:
        import numpy  # noqa: F401
        from threadpoolctl import threadpool_info

        blas = ", ".join(f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads)"
                         for i in threadpool_info() if i.get("user_api") == "blas") or "?"
    except ImportError:
        pass
    return {
        "date": subprocess.run(["date"], capture_output=True, text=True).stdout.strip()
        or datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "nproc": os.cpu_count(),
        "nproc_available": len(os.sched_getaffinity(0)),
        "memory": memory,
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "blas": blas,
        "openblas_env": {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP_", "MKL_"))},
        "load_at_start": load_average(),
    }


def command_line():
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])


# -- rows ---------------------------------------------------------------------------------
@dataclass
class Row:
    """One compared figure. ``ratio``: anchor / matinee for costs, matinee / anchor for scores."""

    part: str
    what: str
    matinee: str
    anchor_name: str = ""
    anchor: str = ""
    ratio: str = ""
    target: str = ""
    met: bool | None = None

    def cells(self):
        met = "" if self.met is None else ("yes" if self.met else "NO")
        return [self.part, self.what, self.matinee, self.anchor_name, self.anchor, self.ratio, self.target, met]


HEADER = ["part", "what", "matinee", "anchor", "anchor value", "ratio", "target", "met"]


def secs(x):
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def size(x):
    return f"{x / GIB:.2f} GiB" if x >= GIB else f"{x / MIB:.0f} MiB"


def quality_rows(q):
    rows = []
    for entry in q["matched"]:
        ours, ref = entry["matinee"], entry["reference"]
        ratio = ours["ndcg@10"] / ref["ndcg@10"]
        model = entry["model"]
        target = "within 1%" if model in ("EASE", "ALS") else ""
        if model == "EASE" and entry["params"].get("l2") != 250.0 and any(
                e["model"] == "EASE" and e["params"].get("l2") == 250.0 for e in q["matched"]):
            target = ""  # the target is stated at lambda = 250; the other matched row is extra
        rows.append(Row(
            "quality", f"{model} ({pr.label(entry['params'])}) NDCG@10, same settings",
            f"{ours['ndcg@10']:.4f}", pr.REFERENCES[model], f"{ref['ndcg@10']:.4f}", f"{ratio:.4f}x",
            target, (abs(ratio - 1) <= 0.01) if target else None,
        ))
        for metric in ("recall@20", "map@10"):
            r = ours[metric] / ref[metric]
            rows.append(Row("quality", f"{model} ({pr.label(entry['params'])}) {metric}",
                            f"{ours[metric]:.4f}", pr.REFERENCES[model], f"{ref[metric]:.4f}", f"{r:.4f}x"))
    for best in q["best"]:
        ours, ref, boot = best["matinee"], best["reference"], best["bootstrap"]
        how = ("best reference by validation, the rule matinee's pick followed" if best["rule"] == "validation"
               else "best reference by test, among every reference result of this run")
        rows.append(Row(
            "quality",
            f"best matinee model by validation: {ours['model']} ({pr.label(ours['params'])}), NDCG@10",
            f"{ours['ndcg@10']:.4f}", f"{how}: {pr.REFERENCES[ref['model']]} ({pr.label(ref['params'])})",
            f"{ref['ndcg@10']:.4f}", f"{ours['ndcg@10'] / ref['ndcg@10']:.4f}x", ">= best reference",
            boot["mean"] >= 0,
        ))
        rows.append(Row(
            "quality", "  difference, paired bootstrap over users (95% interval)",
            f"{boot['mean']:+.4f} [{boot['low']:+.4f}, {boot['high']:+.4f}]", "", "", "",
            f"{boot['resamples']} resamples, seed {boot['seed']}, {boot['users']} users",
        ))
    return rows


def speed_rows(samples, configs):
    rows = []
    for model in pr.MODELS:
        ours = samples.get((model, "matinee"))
        if not ours:
            continue
        ref = samples.get((model, "reference"))
        name = f"{model} ({pr.label(configs[model])})"
        fit, fit_cpu = median(ours, "fit_wall"), median(ours, "fit_cpu")
        limit = 5.0 if model == "EASE" else 3.0
        row = Row("speed", f"{name} fit, wall", secs(fit), target=f"< {limit:g} s", met=fit < limit)
        if ref:
            anchor = median(ref, "fit_wall")
            row.anchor_name, row.anchor, row.ratio = pr.REFERENCES[model], secs(anchor), f"{anchor / fit:.2f}x"
        rows.append(row)
        if model == "ALS" and ref:
            anchor = median(ref, "fit_wall")
            rows.append(Row("speed", "ALS fit, wall, vs implicit called directly", secs(fit),
                            "implicit ALS", secs(anchor), f"{anchor / fit:.2f}x", "no slower (>= 1.00x)",
                            anchor / fit >= 1.0))
        row = Row("speed", f"{name} fit, CPU", secs(fit_cpu))
        if ref:
            anchor = median(ref, "fit_cpu")
            row.anchor_name, row.anchor, row.ratio = pr.REFERENCES[model], secs(anchor), f"{anchor / fit_cpu:.2f}x"
        rows.append(row)
        if model == "EASE":
            peak = median(ours, "peak_after_fit")
            row = Row("speed", "EASE fit, peak RSS of the process", size(peak), target="< 2 GiB", met=peak < 2 * GIB)
            if ref:
                anchor = median(ref, "peak_after_fit")
                row.anchor_name, row.anchor, row.ratio = pr.REFERENCES[model], size(anchor), f"{anchor / peak:.2f}x"
            rows.append(row)
            growth = median([{"g": s["peak_after_fit"] - s["rss_before_fit"]} for s in ours], "g")
            row = Row("speed", "EASE fit, peak RSS above the RSS before fit", size(growth))
            if ref:
                anchor = median([{"g": s["peak_after_fit"] - s["rss_before_fit"]} for s in ref], "g")
                row.anchor_name, row.anchor = pr.REFERENCES[model], size(anchor)
                row.ratio = f"{anchor / growth:.2f}x" if growth > 0 else ""
            rows.append(row)
        ev = median(ours, "eval_wall")
        row = Row("speed", f"{model} evaluation, {ours[0]['eval_users']} users, wall", secs(ev),
                  target="< 1 s", met=ev < 1.0)
        if ref:
            anchor = median(ref, "eval_wall")
            row.anchor_name = f"{pr.REFERENCES[model]} (top-20 + metrics)"
            row.anchor, row.ratio = secs(anchor), f"{anchor / ev:.2f}x"
        rows.append(row)
    return rows


def scale_rows(s):
    rows = []
    gen = s["generate"]
    for model in ("ItemKNN", "ALS", "EASE fit"):
        r = s.get(model)
        if not r:
            continue
        name = model.replace(" fit", "")
        users = f"{r['eval_users']:,} of {r['test_users']:,} test users"
        rows.append(Row("scale", f"{name} fit, wall / CPU", f"{secs(r['fit_wall'])} / {secs(r['fit_cpu'])}"))
        rows.append(Row("scale", f"{name} evaluation ({users}, {r['items']:,} items), wall / CPU",
                        f"{secs(r['eval_wall'])} / {secs(r['eval_cpu'])}"))
        rows.append(Row("scale", f"{name} whole process (load, split, fit, evaluate), wall / CPU",
                        f"{secs(r['wall'])} / {secs(r['cpu'])}"))
        rows.append(Row("scale", f"{name} peak RSS of the process", size(r["max_rss"]),
                        target="< 4 GiB" if name != "EASE" else "", met=(r["max_rss"] < 4 * GIB)
                        if name != "EASE" else None))
    d = s.get("EASE default")
    if d:
        if d.get("error"):
            rows.append(Row("scale", f"EASE() at its default max_items={d['max_items']}",
                            f"{d.get('error_type', '')}: {d['error']}", target="declines above max_items",
                            met=True))
        else:
            rows.append(Row("scale", f"EASE() at its default max_items={d['max_items']:,}",
                            f"accepts: {d['active_items']:,} items have training interactions, not above "
                            "max_items, so there is nothing to decline"))
    d = s.get("EASE decline")
    if d:
        declined = bool(d.get("error"))
        rows.append(Row("scale", f"EASE(max_items={EASE_DECLINE_MAX_ITEMS}) on {d['active_items']:,} items",
                        f"{d.get('error_type', '')}: {d.get('error')}" if declined else "fitted, no error",
                        target="declines with a clear error", met=declined))
    if gen:
        rows.append(Row("scale", "simulator: generating the play log (once, before the models)",
                        f"{gen['plays']:,} plays, {secs(gen['wall'])}, peak {size(gen['max_rss'])}"))
    return rows


def quality_table(q):
    """Rows of the per-model quality table: every model's test scores, references below."""
    lines = []
    for model in pr.MODELS:
        e = q["test"][model]
        val = max(v for _, v in q["grids"][model])
        lines.append([f"matinee {model}", pr.label(e["params"]), f"{len(q['grids'][model])}", f"{val:.4f}",
                      f"{e['ndcg@10']:.4f}", f"{e['recall@20']:.4f}", f"{e['map@10']:.4f}",
                      f"{pr.ISSUE_FIGURES[model]:.3f}" if model in pr.ISSUE_FIGURES else ""])
    shown = set()
    for model in pr.REFERENCES:
        e = q["reference_test"][model]
        val = max(v for _, v in q["reference_grids"][model])
        shown.add((model, repr(sorted(e["params"].items()))))
        lines.append([pr.REFERENCES[model], pr.label(e["params"]), f"{len(q['reference_grids'][model])}",
                      f"{val:.4f}", f"{e['ndcg@10']:.4f}", f"{e['recall@20']:.4f}", f"{e['map@10']:.4f}",
                      f"{pr.ISSUE_FIGURES[model]:.3f}"])
    for entry in q["matched"]:
        e = entry["reference"]
        key = (entry["model"], repr(sorted(e["params"].items())))
        if key not in shown:
            shown.add(key)
            lines.append([pr.REFERENCES[entry["model"]], pr.label(e["params"]) + " (matinee's setting)", "",
                          "", f"{e['ndcg@10']:.4f}", f"{e['recall@20']:.4f}", f"{e['map@10']:.4f}", ""])
    return ["model", "chosen on validation", "grid", "val NDCG@10", "NDCG@10", "Recall@20", "MAP@10",
            "issue figure"], lines


# -- rendering ------------------------------------------------------------------------------
def text_table(header, lines):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines, strict=True)]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(out)


def md_table(header, lines):
    def clean(c):
        return str(c).replace("|", "\\|")

    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(clean(c) for c in line) + " |" for line in lines]
    return "\n".join(out)


def markdown_section(env, settings, quality, rows, notes):
    v = env["versions"]
    lines = [
        f"## Recommendations benchmark — {env['date']}",
        "",
        f"- Machine: {env['nproc_available']} CPUs (`nproc`), {env['memory']} memory, "
        f"{env['cpu']}, {env['platform']}",
        f"- Python {env['python']}; " + ", ".join(f"{k} {v[k]}" for k in LIBRARIES) + f"; BLAS: {env['blas']}"
        + ("; inherited " + ", ".join(f"{k}={x}" for k, x in env["openblas_env"].items())
           if env["openblas_env"] else ""),
        f"- Load average (1, 5, 15 min) at start: {env['load_at_start']}; at end: {env.get('load_at_end', '?')}",
        f"- Command: `{settings['command']}`; total {settings['total_seconds'] / 60:.1f} min",
        f"- Protocol: ml-latest-small, ratings >= 4.0, each user's last 20% of positives as test "
        f"({quality['test_users'] if quality else '?'} test users), validation carved from training "
        "by the same rule; what each part measures: benchmarks/README.md (Recommendations).",
        "",
    ]
    if quality:
        header, body = quality_table(quality)
        lines += ["Quality on test, each model's configuration chosen on validation NDCG@10:", "",
                  md_table(header, body), ""]
    lines += [md_table(HEADER, [r.cells() for r in rows]), ""]
    if notes:
        lines += ["### Notes on this run", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)
