"""Off-policy estimators: matinee next to Open Bandit Pipeline (obp) 0.5.7, correctness and speed.

Three parts, in one run:

1. **Correctness** on the Open Bandit Dataset sample. For every campaign
   (all, men, women): the uniformly random logs evaluating the Bernoulli-TS
   action distribution (obp's ``BernoulliTS(..., is_zozotown_prior=True,
   campaign=...).compute_batch_action_dist(n_sim=...)``), and the reverse, the
   Bernoulli-TS logs evaluating the uniform random policy. obp and matinee get
   the SAME arrays: the log as obp's ``OpenBanditDataset`` preprocesses it
   (matinee's ``load_obd`` is checked to give identical arrays), the same
   ``action_dist`` of shape (n, n_actions, 3), and the same reward-model
   predictions, once from obp's ``RegressionModel`` (logistic regression,
   3 folds) and once from matinee's ``RidgeRewardModel`` (5 folds). Reported:
   both values and their absolute difference for IPS, SNIPS, DM, DR, SNDR,
   Switch-DR, clipped IPS and DR, and Replay (random logs, against the argmax
   of the Bernoulli-TS distribution, a deterministic policy). Target: every
   difference at most 1e-9.
2. **Speed of point estimates**: each estimator on a synthetic log (default
   1,000,000 rounds, 10 actions, fixed reward-model predictions), best of
   ``--repeat`` runs, in rows per second; obp's ``estimate_policy_value`` on
   the same arrays. Target: at least 1M rows/s.
3. **Bootstrap intervals**: 1,000 resamples on a synthetic log of 100,000
   rounds (uniform logging, 10 actions, 5 context features). IPS-type
   estimators; DM/DR/SNDR/Switch-DR with fixed predictions; the same with the
   reward model refitted in every resample (``RidgeRewardModel``, batched
   closed form; ``LogisticRewardModel``, refitted resample by resample, timed
   on a few resamples and scaled); obp's ``estimate_interval`` for comparison
   (which never refits). Also the refitted DR interval on the OBD sample
   (10,000 rounds, 80 actions, 3 positions). Target: under 5 s for IPS-type
   estimators.

Setup (obp stays out of matinee's dependencies; it is installed in its own venv)::

    python -m venv /work/venvs/obp
    /work/venvs/obp/bin/pip install obp==0.5.7 --no-deps --ignore-requires-python
    /work/venvs/obp/bin/pip install -r benchmarks/artwork/requirements.txt
    /work/venvs/obp/bin/pip install -e . --no-deps

Run from the repository root::

    /work/venvs/obp/bin/python benchmarks/artwork/ope_vs_obp.py                 # everything
    /work/venvs/obp/bin/python benchmarks/artwork/ope_vs_obp.py --quick         # smaller sizes
    /work/venvs/obp/bin/python benchmarks/artwork/ope_vs_obp.py --only correctness --json ope.json

Progress goes to stderr, the markdown tables to stdout. Times are wall-clock
(best of the repeats) with the process CPU time beside them; the machine may be
shared, so the CPU time is the steadier number.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
logging.disable(logging.INFO)

import obp  # noqa: E402
from obp.dataset import OpenBanditDataset  # noqa: E402
from obp.ope import DirectMethod as ObpDM  # noqa: E402
from obp.ope import DoublyRobust as ObpDR  # noqa: E402
from obp.ope import InverseProbabilityWeighting as ObpIPS  # noqa: E402
from obp.ope import RegressionModel  # noqa: E402
from obp.ope import ReplayMethod as ObpReplay  # noqa: E402
from obp.ope import SelfNormalizedDoublyRobust as ObpSNDR  # noqa: E402
from obp.ope import SelfNormalizedInverseProbabilityWeighting as ObpSNIPS  # noqa: E402
from obp.ope import SwitchDoublyRobust as ObpSwitchDR  # noqa: E402
from obp.policy import BernoulliTS, Random  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from matinee.apps.artwork import LoggedFeedback  # noqa: E402
from matinee.apps.artwork.obd import load_obd  # noqa: E402
from matinee.apps.artwork.ope import DM, DR, IPS, SNDR, SNIPS, Replay, SwitchDR  # noqa: E402
from matinee.apps.artwork.reward_models import LogisticRewardModel, RidgeRewardModel  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "obd"
CAMPAIGNS = ("all", "men", "women")
CLIP, TAU = 10.0, 10.0
TOLERANCE = 1e-9
SEED = 12345


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- part 1: correctness -----------------------------------------------------------------------------
def obp_value(name: str, fb: LoggedFeedback, pi: np.ndarray, q: np.ndarray) -> float:
    """obp's estimate on the same arrays (pi and q of shape (n, n_actions, n_positions))."""
    common = {"reward": fb.reward, "action": fb.action, "position": fb.position, "action_dist": pi}
    weighting = {**common, "pscore": fb.propensity}
    model = {**weighting, "estimated_rewards_by_reg_model": q}
    if name == "Replay":
        return float(ObpReplay().estimate_policy_value(**common))
    if name == "DM":
        return float(ObpDM().estimate_policy_value(action_dist=pi, estimated_rewards_by_reg_model=q,
                                                   position=fb.position))
    estimator, kwargs = {
        "IPS": (ObpIPS(), weighting), f"IPS clip={CLIP:g}": (ObpIPS(lambda_=CLIP), weighting),
        "SNIPS": (ObpSNIPS(), weighting), "DR": (ObpDR(), model),
        f"DR clip={CLIP:g}": (ObpDR(lambda_=CLIP), model), "SNDR": (ObpSNDR(), model),
        "Switch-DR tau=inf": (ObpSwitchDR(), model), f"Switch-DR tau={TAU:g}": (ObpSwitchDR(lambda_=TAU), model),
    }[name]
    return float(estimator.estimate_policy_value(**kwargs))


MATINEE = {
    "IPS": IPS(), f"IPS clip={CLIP:g}": IPS(clip=CLIP), "SNIPS": SNIPS(), "DM": DM(), "DR": DR(),
    f"DR clip={CLIP:g}": DR(clip=CLIP), "SNDR": SNDR(), "Switch-DR tau=inf": SwitchDR(),
    f"Switch-DR tau={TAU:g}": SwitchDR(tau=TAU), "Replay": Replay(),
}
MODEL_BASED = {"DM", "DR", f"DR clip={CLIP:g}", "SNDR", "Switch-DR tau=inf", f"Switch-DR tau={TAU:g}"}


def check_loader(data: Path, behavior: str, campaign: str, fb: LoggedFeedback) -> bool:
    ds = OpenBanditDataset(behavior_policy=behavior, campaign=campaign, data_path=data)
    bf = ds.obtain_batch_bandit_feedback()
    pairs = [("action", fb.action), ("position", fb.position), ("reward", fb.reward),
             ("pscore", fb.propensity), ("context", fb.context), ("action_context", fb.action_features)]
    return bf["n_actions"] == fb.n_actions and all(np.array_equal(bf[k], v) for k, v in pairs)


def correctness(data: Path, n_sim: int) -> list[dict]:
    rows = []
    for campaign in CAMPAIGNS:
        bts_dist = None
        for behavior, target in (("random", "bts"), ("bts", "random")):
            started = time.perf_counter()
            fb = load_obd(data, behavior, campaign)
            same_arrays = check_loader(data, behavior, campaign, fb)
            n, n_actions, n_pos = len(fb), fb.n_actions, 3
            if target == "bts":
                policy = BernoulliTS(n_actions=n_actions, len_list=n_pos, is_zozotown_prior=True,
                                     campaign=campaign, random_state=SEED)
                bts_dist = policy.compute_batch_action_dist(n_rounds=n, n_sim=n_sim)
                pi = bts_dist
            else:
                pi = Random(n_actions=n_actions, len_list=n_pos, random_state=SEED).compute_batch_action_dist(
                    n_rounds=n)
            reg = RegressionModel(n_actions=n_actions, len_list=n_pos, action_context=fb.action_features,
                                  base_model=LogisticRegression(max_iter=1000, C=100, random_state=SEED))
            q_obp = reg.fit_predict(context=fb.context, action=fb.action, reward=fb.reward,
                                    position=fb.position, n_folds=3, random_state=SEED)
            q_ridge = np.repeat(RidgeRewardModel(random_state=SEED).fit_predict(fb)[:, :, None], n_pos, axis=2)
            names = list(MATINEE)
            if behavior != "random":
                names.remove("Replay")  # replay applies to uniformly random logs only
            for name in names:
                pi_used = pi
                if name == "Replay":  # a deterministic policy: the argmax of the BTS distribution per position
                    pi_used = np.zeros_like(pi)
                    best = pi.argmax(axis=1)
                    for p in range(n_pos):
                        pi_used[np.arange(n), best[:, p], p] = 1.0
                models = [("obp logistic", q_obp), ("matinee ridge", q_ridge)] if name in MODEL_BASED \
                    else [("-", None)]
                for model_name, q in models:
                    ours = MATINEE[name].estimate(fb, pi_used, q, n_bootstrap=0).value
                    theirs = obp_value(name, fb, pi_used, q)
                    rows.append({"campaign": campaign, "logs": behavior, "evaluated": target, "estimator": name,
                                 "reward_model": model_name, "obp": theirs, "matinee": ours,
                                 "abs_diff": abs(ours - theirs), "loader_identical": same_arrays})
            log(f"  {behavior} logs of '{campaign}' evaluating {target}: {time.perf_counter() - started:.1f}s, "
                f"loader identical to obp's: {same_arrays}")
    return rows


# -- synthetic logs --------------------------------------------------------------------------------
def synthetic(n: int, n_actions: int = 10, d: int = 5, seed: int = 0, uniform: bool = False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    if uniform:
        pb = np.full((n, n_actions), 1.0 / n_actions)
    else:
        scores = x @ rng.normal(0, 0.5, (d, n_actions))
        pb = np.exp(scores - scores.max(axis=1, keepdims=True))
        pb /= pb.sum(axis=1, keepdims=True)
    action = (pb.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    action = np.minimum(action, n_actions - 1)
    rate = 1 / (1 + np.exp(-(x @ rng.normal(0, 0.3, (d, n_actions)) - 1.0)))
    reward = (rng.random(n) < rate[np.arange(n), action]).astype(np.float64)
    fb = LoggedFeedback(context=x, action=action, reward=reward, propensity=pb[np.arange(n), action],
                        n_actions=n_actions)
    pi = rng.dirichlet(np.ones(n_actions), n)
    q = np.clip(rate + rng.normal(0, 0.05, rate.shape), 0, 1)
    return fb, pi, q


def best_of(fn, repeat: int) -> tuple[float, float]:
    """(best wall seconds, CPU seconds of that run)."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        result = (time.perf_counter() - wall, time.process_time() - cpu)
        best = min(best, result)
    return best


# -- part 2: point-estimate speed ---------------------------------------------------------------------
def speed(rows: int, repeat: int) -> list[dict]:
    fb, pi, q = synthetic(rows)
    pi3, q3 = pi[:, :, None], q[:, :, None]
    det = np.zeros_like(pi)
    det[np.arange(rows), pi.argmax(axis=1)] = 1.0
    common = {"reward": fb.reward, "action": fb.action, "position": None}
    weighting = {**common, "pscore": fb.propensity, "action_dist": pi3}
    model = {**weighting, "estimated_rewards_by_reg_model": q3}
    cases = [
        ("IPS", IPS(), pi, lambda: ObpIPS().estimate_policy_value(**weighting)),
        ("SNIPS", SNIPS(), pi, lambda: ObpSNIPS().estimate_policy_value(**weighting)),
        ("DM", DM(), pi, lambda: ObpDM().estimate_policy_value(action_dist=pi3, estimated_rewards_by_reg_model=q3)),
        ("DR", DR(), pi, lambda: ObpDR().estimate_policy_value(**model)),
        ("SNDR", SNDR(), pi, lambda: ObpSNDR().estimate_policy_value(**model)),
        (f"Switch-DR tau={TAU:g}", SwitchDR(tau=TAU), pi,
         lambda: ObpSwitchDR(lambda_=TAU).estimate_policy_value(**model)),
        ("Replay", Replay(require_uniform=False), det,
         lambda: ObpReplay().estimate_policy_value(**common, action_dist=det[:, :, None])),
    ]
    out = []
    for name, est, pi_used, obp_call in cases:
        ours = best_of(lambda est=est, pi_used=pi_used: est.estimate(fb, pi_used, q, n_bootstrap=0), repeat)
        theirs = best_of(obp_call, repeat)
        out.append({"estimator": name, "rows": rows, "matinee_s": ours[0], "matinee_cpu_s": ours[1],
                    "obp_s": theirs[0], "obp_cpu_s": theirs[1], "matinee_rows_per_s": rows / ours[0],
                    "obp_rows_per_s": rows / theirs[0]})
        log(f"  {name}: matinee {rows / ours[0] / 1e6:.2f}M rows/s, obp {rows / theirs[0] / 1e6:.2f}M rows/s")
    fit = best_of(lambda: DR().estimate(fb, pi, RidgeRewardModel(), n_bootstrap=0), max(1, repeat // 2))
    out.append({"estimator": "DR incl. RidgeRewardModel fit", "rows": rows, "matinee_s": fit[0],
                "matinee_cpu_s": fit[1], "obp_s": None, "obp_cpu_s": None, "matinee_rows_per_s": rows / fit[0],
                "obp_rows_per_s": None})
    log(f"  DR with a ridge fit: {rows / fit[0] / 1e6:.2f}M rows/s")
    return out


# -- part 3: bootstrap ------------------------------------------------------------------------------
def bootstrap(rows: int, n_bootstrap: int, repeat: int, data: Path, logistic_resamples: int) -> list[dict]:
    fb, pi, q = synthetic(rows, uniform=True, seed=1)
    det = np.zeros_like(pi)
    det[np.arange(rows), pi.argmax(axis=1)] = 1.0
    out = []

    def record(what, model, seconds, cpu, note="", resamples=n_bootstrap, n=rows):
        out.append({"estimator": what, "reward_model": model, "rows": n, "resamples": resamples,
                    "seconds": seconds, "cpu_seconds": cpu, "note": note})
        log(f"  {what} [{model}] {n:,} rows x {resamples} resamples: {seconds:.2f}s (cpu {cpu:.2f}s) {note}")

    for name, est, pi_used in [("IPS", IPS(), pi), ("SNIPS", SNIPS(), pi), ("Replay", Replay(), det)]:
        t = best_of(lambda est=est, p=pi_used: est.estimate(fb, p, n_bootstrap=n_bootstrap, random_state=0), repeat)
        record(name, "-", *t)
    for name, est in [("DM", DM()), ("DR", DR()), ("SNDR", SNDR()), (f"Switch-DR tau={TAU:g}", SwitchDR(tau=TAU))]:
        t = best_of(lambda est=est: est.estimate(fb, pi, q, n_bootstrap=n_bootstrap, random_state=0), repeat)
        record(name, "fixed q_hat (no refit)", *t)
        t = best_of(lambda est=est: est.estimate(fb, pi, RidgeRewardModel(), n_bootstrap=n_bootstrap,
                                                   random_state=0), repeat)
        record(name, "RidgeRewardModel, refitted per resample (5 folds)", *t)
    if logistic_resamples:
        t = best_of(lambda: DR().estimate(fb, pi, LogisticRewardModel(), n_bootstrap=logistic_resamples,
                                          random_state=0), 1)
        scale = n_bootstrap / logistic_resamples
        record("DR", "LogisticRewardModel, refitted per resample (5 folds)", t[0] * scale, t[1] * scale,
               note=f"timed on {logistic_resamples} resamples, scaled to {n_bootstrap}")
    pi3, q3 = pi[:, :, None], q[:, :, None]
    kwargs = {"reward": fb.reward, "action": fb.action, "pscore": fb.propensity, "action_dist": pi3,
              "n_bootstrap_samples": n_bootstrap, "random_state": 0}
    t = best_of(lambda: ObpIPS().estimate_interval(**kwargs), 1)
    record("obp IPS", "-", *t)
    t = best_of(lambda: ObpDR().estimate_interval(**kwargs, estimated_rewards_by_reg_model=q3), 1)
    record("obp DR", "fixed q_hat (obp never refits)", *t)
    if (data / "random" / "all" / "all.csv").is_file():
        obd = load_obd(data, "random", "all")
        uniform = np.full((len(obd), obd.n_actions), 1 / obd.n_actions)
        t = best_of(lambda: DR().estimate(obd, uniform, RidgeRewardModel(), n_bootstrap=n_bootstrap,
                                          random_state=0), 1)
        record("DR on OBD random/all", "RidgeRewardModel per position x action, refitted", *t, n=len(obd),
               note=f"{obd.n_actions} actions, 3 positions, {obd.n_features} context features")
    return out


# -- report -----------------------------------------------------------------------------------------
def markdown(results: dict) -> str:
    lines = [f"### Off-policy estimators vs obp {obp.__version__} ({time.strftime('%Y-%m-%d')})", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
             f"numpy {np.__version__}.", ""]
    if "correctness" in results:
        rows = results["correctness"]
        worst = max(r["abs_diff"] for r in rows)
        lines += [f"**Correctness** (OBD sample; max |matinee - obp| = {worst:.2e}, target <= {TOLERANCE:g}; "
                  f"loader arrays identical to obp's: {all(r['loader_identical'] for r in rows)})", "",
                  "| campaign | logs -> evaluated | estimator | reward model | obp | matinee | abs diff |",
                  "| --- | --- | --- | --- | ---: | ---: | ---: |"]
        lines += [f"| {r['campaign']} | {r['logs']} -> {r['evaluated']} | {r['estimator']} | {r['reward_model']} "
                  f"| {r['obp']:.12f} | {r['matinee']:.12f} | {r['abs_diff']:.1e} |" for r in rows]
        lines.append("")
    if "speed" in results:
        lines += ["**Point estimates** (synthetic log, 10 actions, fixed predictions; best of the repeats)", "",
                  "| estimator | rows | matinee rows/s | obp rows/s | ratio |", "| --- | ---: | ---: | ---: | ---: |"]
        for r in results["speed"]:
            theirs = r["obp_rows_per_s"]
            lines.append(f"| {r['estimator']} | {r['rows']:,} | {r['matinee_rows_per_s'] / 1e6:.2f}M | "
                         + (f"{theirs / 1e6:.2f}M | {r['matinee_rows_per_s'] / theirs:.1f}x |" if theirs
                            else "- | - |"))
        lines.append("")
    if "bootstrap" in results:
        lines += ["**Bootstrap intervals** (percentile; synthetic uniform log, 10 actions, 5 context features)", "",
                  "| estimator | reward model | rows | resamples | wall s | cpu s | note |",
                  "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
        lines += [f"| {r['estimator']} | {r['reward_model']} | {r['rows']:,} | {r['resamples']} | "
                  f"{r['seconds']:.2f} | {r['cpu_seconds']:.2f} | {r['note']} |" for r in results["bootstrap"]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the Open Bandit Dataset folder")
    parser.add_argument("--only", default="correctness,speed,bootstrap", help="parts, comma-separated")
    parser.add_argument("--n-sim", type=int, default=100_000, help="Monte Carlo draws for the BTS distribution")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rounds of the point-estimate speed log")
    parser.add_argument("--boot-rows", type=int, default=100_000, help="rounds of the bootstrap log")
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--logistic-resamples", type=int, default=10,
                        help="resamples to time the logistic refit on (0 skips it)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per matinee case (best kept)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--json", type=Path, help="write every result here")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_sim, args.rows, args.boot_rows, args.repeat = 10_000, 200_000, 20_000, 2
    parts = set(args.only.split(","))
    results: dict = {"obp": obp.__version__, "numpy": np.__version__}
    if "correctness" in parts:
        if (args.data / "random" / "all" / "all.csv").is_file():
            log("correctness on the Open Bandit Dataset sample")
            results["correctness"] = correctness(args.data, args.n_sim)
        else:
            log(f"correctness skipped: no Open Bandit Dataset at {args.data}")
    if "speed" in parts:
        log(f"point estimates on {args.rows:,} rows")
        results["speed"] = speed(args.rows, args.repeat)
    if "bootstrap" in parts:
        log(f"bootstrap intervals: {args.n_bootstrap} resamples on {args.boot_rows:,} rows")
        results["bootstrap"] = bootstrap(args.boot_rows, args.n_bootstrap, max(1, args.repeat // 2 + 1), args.data,
                                         args.logistic_resamples)
    print(markdown(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    worst = max((r["abs_diff"] for r in results.get("correctness", [])), default=0.0)
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
