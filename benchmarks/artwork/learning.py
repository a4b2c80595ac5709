"""Learning on the artwork simulator: matinee's policies next to Vowpal Wabbit's ``--cb_explore_adf --squarecb``.

The problem: ``ArtworkEnvironment(n_context_features=20, n_variants=10,
n_variant_features=5, seed=0)``; 200,000 impressions in batches of 1,000,
the same impressions and outcomes for every learner (``simulate(..., seed=0)``
and ``batches(..., seed=0)`` replay one seeded stream). Each learner starts
from nothing, decides a batch, and gets that batch's feedback after it, as a
deployed policy would: updates every 1,000 decisions.

Reported per learner: the average expected reward over the last 50,000
rounds (the true play probability of the variants it showed) as a share of
the oracle's over the same rounds (target for the best matinee policy: at
least 98%), the share over all rounds, the cumulative regret, and
decisions+updates per second per core: the process is pinned to one core
(``os.sched_setaffinity``) and BLAS to one thread, and the rate is rounds
divided by the time spent deciding and learning (the simulator and the
bookkeeping are not counted, for either side). CPU seconds are given too.

Vowpal Wabbit gets one multi-line ADF example per round: a ``shared`` line
with the 20 context features (namespace ``U``) and one line per variant with
its 5 features (namespace ``A``), with ``-q UA`` so that it can learn the
context x variant interactions that personalization needs (the same
features matinee's linear policies use). It chooses by sampling its
SquareCB distribution; the propensity is the probability it gave. Two
settings are run:

* ``VW squarecb (batched)`` - the same protocol as matinee: it predicts a
  whole batch, then learns the batch's 1,000 examples one by one, each
  labelled with the chosen variant's cost (``-reward``) and probability.
  VW learns online by design: it takes one SGD step per example, where
  matinee's policies refit their model on the batch.
* ``VW squarecb (every round)`` - VW's own setting: it learns each example
  right after deciding it, so it sees every reward before the next decision
  (more information than the batched protocol gives anyone).

Its rate counts building the text examples as well as ``predict`` and
``learn`` (that is how VW is fed from Python); the pure predict+learn rate is
reported beside it.

Setup (Vowpal Wabbit stays out of matinee's dependencies)::

    python -m venv /work/venvs/vw
    /work/venvs/vw/bin/pip install vowpalwabbit threadpoolctl
    /work/venvs/vw/bin/pip install -e .

Run from the repository root::

    /work/venvs/vw/bin/python benchmarks/artwork/learning.py                  # 200k rounds, all learners
    /work/venvs/vw/bin/python benchmarks/artwork/learning.py --rounds 50000 --last 20000 --no-vw
    /work/venvs/vw/bin/python benchmarks/artwork/learning.py --json learning.json > section.md

Progress goes to stderr, the markdown section to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

import numpy as np

from matinee.apps.artwork import Choice, LoggedFeedback, Policy
from matinee.apps.artwork.online import batches, simulate
from matinee.apps.artwork.policies import (
    BernoulliTS,
    EpsilonGreedy,
    LinearTS,
    LinUCB,
    LogisticTS,
    UniformRandom,
)
from matinee.apps.sim import ArtworkEnvironment

SHAPE = {"n_context_features": 20, "n_variants": 10, "n_variant_features": 5}
TARGET_SHARE = 0.98
TARGET_RATE = 20_000


def matinee_policies() -> dict[str, Policy]:
    return {
        "matinee LinUCB(alpha=0.5)": LinUCB(alpha=0.5, random_state=0),
        "matinee LinearTS(v=0.1)": LinearTS(v=0.1, random_state=0),
        "matinee LogisticTS(l2=1)": LogisticTS(l2=1.0, random_state=0),
        "matinee EpsilonGreedy(epsilon=0.05)": EpsilonGreedy(epsilon=0.05, random_state=0),
        "matinee BernoulliTS (context-free)": BernoulliTS(random_state=0),
        "matinee UniformRandom": UniformRandom(random_state=0),
    }


# -- Vowpal Wabbit -------------------------------------------------------------------------------------------


def _lines(context: np.ndarray, variants: np.ndarray) -> list[str]:
    shared = "shared |U " + " ".join(f"x{j}:{v:.6g}" for j, v in enumerate(context))
    return [shared] + ["|A " + " ".join(f"z{j}:{v:.6g}" for j, v in enumerate(row)) for row in variants]


class VowpalWabbitPolicy(Policy):
    """Vowpal Wabbit's contextual bandit behind matinee's Policy interface, for :func:`simulate`.

    ``choose`` predicts each round's distribution and samples it; ``update``
    learns the rounds in order, one example at a time, with cost ``-reward``.
    """

    def __init__(self, args: str, random_state: int = 0) -> None:
        self.args = args
        self.random_state = random_state

    def _workspace(self) -> Any:
        if getattr(self, "vw_", None) is None:
            from vowpalwabbit import Workspace

            self.vw_ = Workspace(self.args + " --quiet")
            self.pending_: list[list[list[str]]] = []
            self.format_seconds_ = self.vw_seconds_ = 0.0
        return self.vw_

    def choose(self, context: Any, action_features: Any = None, candidates: Any = None) -> Choice:
        vw, rng = self._workspace(), self._rng()
        started = time.perf_counter()
        examples = [_lines(x, z) for x, z in zip(context, action_features, strict=True)]
        formatted = time.perf_counter()
        pmfs = np.array([vw.predict(example) for example in examples], dtype=np.float64)
        self.vw_seconds_ += time.perf_counter() - formatted
        self.format_seconds_ += formatted - started
        pmfs /= pmfs.sum(axis=1, keepdims=True)
        cumulative = pmfs.cumsum(axis=1)
        actions = np.minimum((cumulative <= rng.random((len(pmfs), 1))).sum(axis=1), pmfs.shape[1] - 1)
        self.pending_.append(examples)
        return Choice(actions, pmfs[np.arange(len(actions)), actions])

    def _update(self, feedback: LoggedFeedback) -> None:
        vw = self._workspace()
        examples = self.pending_.pop(0)
        started = time.perf_counter()
        labelled = []
        for example, a, r, p in zip(examples, feedback.action, feedback.reward, feedback.propensity, strict=True):
            lines = list(example)
            lines[1 + a] = f"0:{-r:g}:{p:.6g} {lines[1 + a]}"
            labelled.append(lines)
        formatted = time.perf_counter()
        for lines in labelled:
            vw.learn(lines)
        self.vw_seconds_ += time.perf_counter() - formatted
        self.format_seconds_ += formatted - started


def vw_every_round(env: ArtworkEnvironment, args: str, rounds: int, batch_size: int, seed: int) -> dict[str, Any]:
    """VW learning each example right after deciding it, on the same impressions."""
    from vowpalwabbit import Workspace

    vw = Workspace(args + " --quiet")
    rng = np.random.default_rng(0)
    expected, oracle, reward = np.empty(rounds), np.empty(rounds), np.empty(rounds)
    policy_s = vw_s = 0.0
    cpu = 0.0
    start = 0
    for batch in batches(env, rounds, batch_size, seed=seed):
        probs = env.play_probability(batch)
        wall, cpu0 = time.perf_counter(), time.process_time()
        for i in range(len(batch)):
            lines = _lines(batch.context[i], batch.variant_features[i])
            t = time.perf_counter()
            pmf = np.asarray(vw.predict(lines), dtype=np.float64)
            vw_s += time.perf_counter() - t
            pmf /= pmf.sum()
            a = min(int((pmf.cumsum() <= rng.random()).sum()), len(pmf) - 1)
            r = float(batch.noise[i] < probs[i, a])
            lines[1 + a] = f"0:{-r:g}:{pmf[a]:.6g} {lines[1 + a]}"
            t = time.perf_counter()
            vw.learn(lines)
            vw_s += time.perf_counter() - t
            expected[start + i], oracle[start + i], reward[start + i] = probs[i, a], probs[i].max(), r
        policy_s += time.perf_counter() - wall
        cpu += time.process_time() - cpu0
        start += len(batch)
    return {"expected": expected, "oracle": oracle, "reward": reward, "policy_seconds": policy_s,
            "cpu_seconds": cpu, "vw_seconds": vw_s}


# -- running -------------------------------------------------------------------------------------------------


def row(name: str, expected: np.ndarray, oracle: np.ndarray, last: int, policy_seconds: float, cpu_seconds: float,
        core_seconds: float | None = None, protocol: str = "batched") -> dict[str, Any]:
    rounds = len(expected)
    return {
        "learner": name, "protocol": protocol, "rounds": rounds,
        "share_last": float(expected[-last:].sum() / oracle[-last:].sum()),
        "share_all": float(expected.sum() / oracle.sum()),
        "cumulative_regret": float((oracle - expected).sum()),
        "rate": rounds / policy_seconds, "rate_cpu": rounds / cpu_seconds if cpu_seconds > 0 else float("inf"),
        "rate_core": None if core_seconds is None else rounds / core_seconds,
        "policy_seconds": policy_seconds,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    os.sched_setaffinity(0, {args.core})
    env = ArtworkEnvironment(**SHAPE, seed=0)
    rows = []
    with threadpool_limits(limits=1):
        for name, policy in matinee_policies().items():
            if args.only and args.only not in name:
                continue
            print(f"{name} ...", file=sys.stderr, flush=True)
            result = simulate(policy, env, args.rounds, args.batch_size, seed=0, name=name, keep_log=False,
                              exploration_sample=0)
            rows.append(row(name, result.expected_reward, result.oracle_reward, args.last, result.policy_seconds,
                            result.policy_cpu_seconds))
            print(f"  {rows[-1]['share_last']:.4f} of the oracle, {rows[-1]['rate']:,.0f}/s", file=sys.stderr)
        fixed_expected, fixed_oracle = [], []
        for batch in batches(env, args.rounds, args.batch_size, seed=0):
            fixed_expected.append(env.best_fixed_variants(batch)[1])
            fixed_oracle.append(env.oracle(batch)[1])
        reference = {"share_last": float(np.concatenate(fixed_expected)[-args.last:].sum()
                                         / np.concatenate(fixed_oracle)[-args.last:].sum())}
        if not args.no_vw:
            for vw_args in args.vw:
                name = f"VW {vw_args}"
                print(f"{name} (batched) ...", file=sys.stderr, flush=True)
                vw_policy = VowpalWabbitPolicy(vw_args)
                result = simulate(vw_policy, env, args.rounds, args.batch_size, seed=0, name=name, keep_log=False,
                                  exploration_sample=0)
                rows.append(row(name, result.expected_reward, result.oracle_reward, args.last, result.policy_seconds,
                                result.policy_cpu_seconds, core_seconds=vw_policy.vw_seconds_,
                                protocol="batched, learns example by example"))
                print(f"  {rows[-1]['share_last']:.4f} of the oracle, {rows[-1]['rate']:,.0f}/s", file=sys.stderr)
                if args.vw_every_round:
                    print(f"{name} (every round) ...", file=sys.stderr, flush=True)
                    out = vw_every_round(env, vw_args, args.rounds, args.batch_size, seed=0)
                    rows.append(row(name, out["expected"], out["oracle"], args.last, out["policy_seconds"],
                                    out["cpu_seconds"], core_seconds=out["vw_seconds"],
                                    protocol="learns after every decision"))
                    print(f"  {rows[-1]['share_last']:.4f} of the oracle, {rows[-1]['rate']:,.0f}/s",
                          file=sys.stderr)
    return {"rows": rows, "best_fixed_variant": reference, "settings": vars(args)}


def markdown(results: dict[str, Any], args: argparse.Namespace) -> str:
    import numpy
    try:
        from importlib.metadata import version

        vw_version = version("vowpalwabbit")
    except Exception:  # noqa: BLE001 - not installed
        vw_version = "not installed"
    load = os.getloadavg()
    lines = [
        f"## Artwork learning: matinee policies and Vowpal Wabbit ({time.strftime('%a %b %d %H:%M:%S UTC %Y', time.gmtime())})",
        "",
        f"- Machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, {platform.platform()}; "
        f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        f"- Python {platform.python_version()}; numpy {numpy.__version__}; vowpalwabbit {vw_version}; "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}",
        f"- Command: `python benchmarks/artwork/learning.py {' '.join(_quoted(a) for a in sys.argv[1:])}`",
        f"- Problem: `ArtworkEnvironment(n_context_features=20, n_variants=10, n_variant_features=5, seed=0)`, "
        f"{args.rounds:,} rounds, feedback every {args.batch_size:,} decisions, the same impressions and outcomes "
        "for every learner. Share of oracle = expected reward of the variants shown over the oracle's, "
        f"last {args.last:,} rounds. Rate = decisions+updates per second, one core (affinity) and one BLAS thread, "
        "time in the learner only. VW learns online, one SGD step per example; 'batched' sees each batch's "
        "feedback after the batch like matinee, 'every round' learns after each decision. VW's rate includes "
        "formatting its text examples (predict+learn alone in brackets).",
        f"- Best context-free choice (each title's best single variant): "
        f"{results['best_fixed_variant']['share_last']:.1%} of the oracle.",
        "",
        "| learner | protocol | share of oracle, last rounds | share, all rounds | cumulative regret | "
        "decisions+updates/s per core | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = results["rows"]
    matinee_rows = [r for r in rows if r["learner"].startswith("matinee")]
    best = max(matinee_rows, key=lambda r: r["share_last"]) if matinee_rows else None
    vw_best = max((r["share_last"] for r in rows if r["learner"].startswith("VW")), default=None)
    for r in rows:
        rate = f"{r['rate']:,.0f}"
        if r["rate_core"] is not None:
            rate += f" ({r['rate_core']:,.0f})"
        target = met = ""
        if r is best:
            target = f">= {TARGET_SHARE:.0%}, ahead of VW; >= {TARGET_RATE:,}/s"
            ok = r["share_last"] >= TARGET_SHARE and r["rate"] >= TARGET_RATE and (vw_best is None
                                                                                 or r["share_last"] > vw_best)
            met = "yes" if ok else "NO"
        lines.append(f"| {r['learner']} | {r['protocol']} | {r['share_last']:.2%} | {r['share_all']:.2%} | "
                     f"{r['cumulative_regret']:,.0f} | {rate} | {target} | {met} |")
    return "\n".join(lines) + "\n"


def _quoted(arg: str) -> str:
    return f'"{arg}"' if " " in arg else arg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200_000)
    parser.add_argument("--last", type=int, default=50_000, help="window of the share of the oracle")
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument("--core", type=int, default=0, help="the core to pin the process to")
    parser.add_argument("--vw", action="append", help="VW arguments (repeatable); default --cb_explore_adf "
                        "--squarecb -q UA")
    parser.add_argument("--no-vw", action="store_true", help="matinee's policies only")
    parser.add_argument("--vw-every-round", action=argparse.BooleanOptionalAction, default=True,
                        help="also run VW learning after every decision")
    parser.add_argument("--only", help="only learners whose name contains this")
    parser.add_argument("--json", help="write every number here")
    args = parser.parse_args()
    args.vw = args.vw or ["--cb_explore_adf --squarecb -q UA"]
    results = run(args)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
    sys.stdout.write(markdown(results, args))


if __name__ == "__main__":
    main()
