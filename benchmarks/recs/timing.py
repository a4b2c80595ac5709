"""Parts 2 and 3, speed and scale: every measurement a fresh ``worker.py`` subprocess.

The worker times its own fit and evaluation (wall: ``perf_counter``; CPU:
``process_time``, which counts every thread of the process) and reports its
peak resident set after the fit. Around the whole subprocess this module takes
the wall time, and from ``os.wait4`` the CPU time (user + sys) and the peak
resident set (``ru_maxrss``) of the process.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import protocol as pr

WORKER = Path(__file__).resolve().parent / "worker.py"

#: Configurations used by the speed part when the quality part did not run to choose them.
FALLBACK = {
    "MostPopular": {},
    "ItemKNN": {"neighbors": 100, "shrink": 50.0},
    "RP3beta": {"alpha": 0.5, "beta": 0.5, "neighbors": 100},
    "EASE": {"l2": 250.0},
    "ALS": {"factors": 64, "regularization": 10.0, "iterations": 15, "random_state": 0},
    "BPR": {"factors": 64, "learning_rate": 0.01, "iterations": 100, "random_state": 0},
}

#: Scale part: each model at its defaults (the ml-latest-small grid does not transfer to this data).
SCALE_MODELS = {
    "ItemKNN": {"neighbors": 100, "shrink": 50.0},
    "ALS": {"factors": 64, "regularization": 10.0, "iterations": 15, "random_state": 0},
}
#: The item count EASE is asked to refuse above in the scale part, when its default lets the catalogue in.
EASE_DECLINE_MAX_ITEMS = 10_000


class WorkerError(Exception):
    pass


def measure(spec, env=None):
    """Run one worker; returns its JSON report plus ``wall``, ``cpu`` and ``max_rss`` of the process."""
    cmd = [sys.executable, str(WORKER), json.dumps(spec)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=WORKER.parent, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        lines = [line for line in stderr.splitlines() if line.strip()]
        raise WorkerError(lines[-1] if lines else f"worker exited with {status}")
    report = json.loads(stdout.strip().splitlines()[-1])
    # The peak is the worker's own VmHWM: wait4's ru_maxrss would include this (parent) process's
    # resident set at the fork, which Linux carries over into the child (see worker.peak_rss).
    report.update(wall=wall, cpu=usage.ru_utime + usage.ru_stime, max_rss=report["peak_end"],
                  wait4_maxrss=usage.ru_maxrss * 1024)
    return report


def median(samples, key):
    return statistics.median(s[key] for s in samples)


def speed(data, configs, repeat, log):
    """Fit and evaluate each model ``repeat`` times on ml-latest-small, alternating with its reference.

    Each round runs every (model, side) once in a fresh process; the order of
    the sides flips every round. Returns ``{(model, side): [reports]}``.
    """
    pairs = []
    for model in pr.MODELS:
        pairs.append((model, "matinee"))
        if model in pr.REFERENCES:
            pairs.append((model, "reference"))
    samples = {pair: [] for pair in pairs}
    for round_ in range(repeat):
        order = pairs if round_ % 2 == 0 else [p for m in pr.MODELS for p in reversed(
            [q for q in pairs if q[0] == m])]
        for model, side in order:
            spec = {"case": "fit", "side": side, "model": model, "params": configs[model], "data": str(data)}
            report = measure(spec)
            samples[model, side].append(report)
            log(f"  round {round_ + 1}/{repeat} {model:11} {side:9} fit {report['fit_wall']:6.3f} s "
                f"(CPU {report['fit_cpu']:6.3f} s)  eval {report['eval_wall']:.3f} s  "
                f"peak {report['peak_after_fit'] / 2**20:7.1f} MiB")
    return samples


def scale(workdir, preset, sample_users, ease_fit, log):
    """The simulator's large preset: generate once, then ItemKNN, ALS and EASE each in a fresh process."""
    npz = Path(workdir) / "large.npz"
    out = {}
    log(f"  generating StreamingService({preset!r}, seed=0) plays (untimed for the models)")
    out["generate"] = measure({"case": "generate", "preset": preset, "seed": 0, "npz": str(npz)})
    log(f"  {out['generate']['plays']:,} plays in {out['generate']['wall']:.1f} s")
    for model, params in SCALE_MODELS.items():
        spec = {"case": "scale", "model": model, "params": params, "npz": str(npz),
                "sample_users": sample_users, "seed": 0}
        started = time.perf_counter()
        out[model] = measure(spec)
        r = out[model]
        log(f"  {model}: fit {r['fit_wall']:.1f} s, evaluation of {r['eval_users']:,} users "
            f"{r['eval_wall']:.1f} s, peak {r['max_rss'] / 2**30:.2f} GiB "
            f"(process {time.perf_counter() - started:.0f} s)")
    # EASE at its default max_items (fitted only if the catalogue is above it, so the fit must refuse),
    # then with a max_items below this catalogue.
    out["EASE default"] = measure({"case": "scale", "model": "EASE", "params": {}, "npz": str(npz),
                                   "expect_error": True, "skip_if_allowed": True})
    if out["EASE default"].get("error") is None:
        r = out["EASE default"]
        log(f"  EASE at its default max_items={r['max_items']} accepts {r['active_items']:,} items: no error")
    if ease_fit:
        log("  EASE at its defaults: fit and evaluation (--scale-ease-fit)")
        out["EASE fit"] = measure({"case": "scale", "model": "EASE", "params": {}, "npz": str(npz),
                                   "sample_users": sample_users, "seed": 0})
        r = out["EASE fit"]
        log(f"  EASE: fit {r['fit_wall']:.1f} s, evaluation {r['eval_wall']:.1f} s, "
            f"peak {r['max_rss'] / 2**30:.2f} GiB")
    out["EASE decline"] = measure({"case": "scale", "model": "EASE",
                                   "params": {"max_items": EASE_DECLINE_MAX_ITEMS},
                                   "npz": str(npz), "expect_error": True})
    log(f"  EASE(max_items={EASE_DECLINE_MAX_ITEMS}): {out['EASE decline'].get('error')}")
    return out
