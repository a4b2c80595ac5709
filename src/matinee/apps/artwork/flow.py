"""The artwork training flow: logs -> fit a grid of policies offline -> off-policy evaluation -> keep the best.

Run it on logs of the artwork simulator (the default) or on the Open Bandit
Dataset::

    python -m matinee.apps.artwork.flow run
    python -m matinee.apps.artwork.flow run --rounds 50000 --online-rounds 30000
    python -m matinee.apps.artwork.flow run --obd ../shared/data/obd --behavior-policy random

Protocol: the logs come from a uniformly random policy run on the simulator
for ``--rounds`` impressions (or from OBD's ``--behavior-policy`` and
``--campaign``). The earlier ``1 - eval_fraction`` of the rounds train every
policy of the grid offline (``update`` on the logged feedback); the later
rounds evaluate them off-policy: IPS, SNIPS, DM, DR (and Replay on uniformly
random logs) with bootstrap intervals whose resampling refits the reward
model. DR picks the winner, stored as the ``policy`` artifact with its
``estimates``. On simulated logs every policy's true value on the evaluation
rounds (from the simulator's play probabilities) is reported next to the
estimates, and with ``--online-rounds N`` each policy of the grid also learns
online on the simulator from nothing for ``N`` rounds (feedback in batches of
``--batch-size``), giving its learning curve and share of the oracle. A
self-contained HTML report of both is written under
``MATINEE_HOME/reports`` and stored as the ``report`` artifact.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from matinee import FlowSpec, JSONType, Parameter, current, step

#: The default grid: one configuration per policy family.
DEFAULT_GRID: list[dict[str, Any]] = [
    {"policy": "UniformRandom"},
    {"policy": "BernoulliTS"},
    {"policy": "EpsilonGreedy", "params": {"epsilon": 0.1}},
    {"policy": "LinUCB", "params": {"alpha": 0.5}},
    {"policy": "LinearTS", "params": {"v": 0.1}},
    {"policy": "LogisticTS", "params": {"l2": 1.0}},
]

#: The estimator that picks the winner.
SELECT_BY = "dr"
#: The estimators shown (Replay is added on uniformly random logs).
ESTIMATORS = ("ips", "snips", "dm", "dr")


def make_policy(config: Any, seed: int = 0) -> Any:
    """A fresh policy from a grid entry ``{"policy": name, "params": {...}}``; ``random_state`` defaults to ``seed``.

    Parameters
    ----------
    config
        A grid entry: the class name of a policy in :mod:`matinee.apps.artwork.policies`
        and its hyperparameters (optional), and optionally a ``name`` to label it.
    seed
        ``random_state`` of the policy unless the entry sets one.

    Returns
    -------
    Policy
        The unfitted policy.

    Raises
    ------
    ParameterError
        (``grid``) an entry that is not a dict, an unknown policy, or a hyperparameter
        the policy does not have.

    Examples
    --------
    >>> make_policy({"policy": "LinUCB", "params": {"alpha": 0.3}}, seed=1)
    LinUCB(alpha=0.3, mode='shared', l2=1.0, n_actions=None, random_state=1)
    >>> make_policy({"policy": "Nope"})
    Traceback (most recent call last):
    ...
    matinee.errors.ParameterError: unknown policy 'Nope' in the grid; choose from BernoulliTS, EpsilonGreedy, LinUCB, LinearTS, LogisticTS, Softmax, UniformRandom
    """
    from matinee.apps.artwork import policies
    from matinee.errors import ParameterError

    if not isinstance(config, dict):
        raise ParameterError(f"each grid entry must be an object like {{\"policy\": \"LinUCB\", \"params\": {{}}}}, "
                             f"not {config!r}", parameter="grid")
    name = config.get("policy")
    if name not in policies.__all__:
        raise ParameterError(f"unknown policy {name!r} in the grid; choose from {', '.join(policies.__all__)}",
                             parameter="grid")
    params = dict(config.get("params") or {})
    cls = getattr(policies, name)
    unknown = sorted(set(params) - set(cls._param_names()))
    if unknown:
        raise ParameterError(f"{name} has no hyperparameter {unknown[0]!r}; it has {', '.join(cls._param_names())}",
                             parameter="grid")
    params.setdefault("random_state", seed)
    return cls(**params)


def label(config: dict[str, Any]) -> str:
    """A grid entry as text: ``LinUCB(alpha=0.5)``."""
    params = ", ".join(f"{k}={v}" for k, v in (config.get("params") or {}).items() if k != "random_state")
    return f"{config['policy']}({params})"


def names(configs: list[dict[str, Any]]) -> list[str]:
    """Short unique names of grid entries: the ``name`` given, else the policy (``#2``, ``#3`` for repeats)."""
    out: list[str] = []
    for config in configs:
        base = str(config.get("name") or config["policy"])
        name, copy = base, 2
        while name in out:
            name, copy = f"{base}#{copy}", copy + 1
        out.append(name)
    return out


def load_logs(obd: str, behavior_policy: str, campaign: str, rounds: int, batch_size: int, seed: int,
              shape: tuple[int, int, int]) -> Any:
    """The logged feedback: OBD's, or a uniformly random policy's on the simulator (with the true rewards)."""
    if obd:
        from matinee.apps.artwork.obd import load_obd

        return load_obd(obd, behavior_policy=behavior_policy, campaign=campaign)
    from matinee.apps.artwork.online import simulate
    from matinee.apps.artwork.policies import UniformRandom

    logging = simulate(UniformRandom(random_state=seed), environment(shape, seed), rounds, batch_size, seed=seed,
                       name="UniformRandom", exploration_sample=0)
    return logging.feedback


def environment(shape: tuple[int, int, int], seed: int) -> Any:
    """The simulator's bandit problem: ``shape`` is (context features, variants, variant features)."""
    from matinee.apps.sim import ArtworkEnvironment

    d, variants, k = shape
    return ArtworkEnvironment(n_context_features=d, n_variants=variants, n_variant_features=k, seed=seed)


def single_thread() -> Any:
    """BLAS on one thread: the branches are the parallelism (and small matrices run faster so)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - installed with implicit
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


class ArtworkTrainingFlow(FlowSpec):
    """Fit artwork policies on logged feedback, evaluate them off-policy, keep the best by DR."""

    obd = Parameter("obd", default="", help="an Open Bandit Dataset folder to train on (default: the simulator)")
    behavior_policy = Parameter("behavior-policy", default="random", help="OBD logging policy: random or bts")
    campaign = Parameter("campaign", default="all", help="OBD campaign: all, men or women")
    rounds = Parameter("rounds", default=20_000, help="simulated logged rounds (uniformly random logging policy)")
    eval_fraction = Parameter("eval-fraction", default=0.5, help="the later share of the logs held out for OPE")
    online_rounds = Parameter("online-rounds", default=0, help="rounds each policy also learns online on the simulator")
    online_window = Parameter("online-window", default=10_000, help="last rounds of the online share of the oracle")
    batch_size = Parameter("batch-size", default=1000, help="decisions between updates, online and when logging")
    delay_batches = Parameter("delay-batches", default=0, help="batches by which online feedback lags")
    context_features = Parameter("context-features", default=20, help="simulator: member features")
    variants = Parameter("variants", default=10, help="simulator: artwork variants per title")
    variant_features = Parameter("variant-features", default=5, help="simulator: features per variant")
    seed = Parameter("seed", default=0, help="seed of the simulator, the policies and the bootstrap")
    grid = Parameter("grid", type=JSONType, default="[]", help="JSON list of {policy, params}; default one per family")
    n_bootstrap = Parameter("bootstrap", default=200, help="bootstrap resamples behind each interval")
    level = Parameter("level", default=0.9, help="nominal coverage of the intervals")
    reward_features = Parameter("reward-features", default="shared",
                                help="reward model of DM/DR: shared (context x action features) or per_action")
    report = Parameter("report", default=True, help="write the HTML report")

    @step
    def start(self):
        """Load the logs, split them in time, and check every grid entry on them before any branch starts."""
        from matinee.errors import ParameterError

        if not 0 < self.eval_fraction < 1:
            raise ParameterError(f"eval-fraction must be in (0, 1), not {self.eval_fraction}", parameter="eval-fraction")
        if self.reward_features not in ("shared", "per_action"):
            raise ParameterError(f"reward-features must be shared or per_action, not {self.reward_features!r}",
                                 parameter="reward-features")
        self.source = "obd" if self.obd else "sim"
        self.shape = (self.context_features, self.variants, self.variant_features)
        self.configs = list(self.grid) if self.grid else DEFAULT_GRID
        self.policy_names = names([c if isinstance(c, dict) else {"policy": "?"} for c in self.configs])
        for config in self.configs:
            make_policy(config, self.seed)  # an unknown policy or hyperparameter fails here, not in a branch
        started = time.perf_counter()
        logs = load_logs(self.obd, self.behavior_policy, self.campaign, self.rounds, self.batch_size, self.seed,
                         self.shape)
        cut = int(round(len(logs) * (1 - self.eval_fraction)))
        if cut < 1 or cut >= len(logs):
            raise ParameterError(f"{len(logs)} rounds cannot be split with eval-fraction {self.eval_fraction}",
                                 parameter="eval-fraction")
        self.train, self.evaluation = logs.subset(slice(0, cut)), logs.subset(slice(cut, len(logs)))
        probe = self.evaluation.subset(slice(0, 2))
        for config in self.configs:  # bad hyperparameter values fail here too
            make_policy(config, self.seed).probabilities(probe.context, probe.features_of(), probe.candidates)
        self.uniform_logs = bool(abs(logs.propensity * _candidate_counts(logs) - 1).max() < 1e-9)
        self.data_summary = {"source": self.source, "rounds": len(logs), "train": len(self.train),
                             "evaluation": len(self.evaluation), "actions": logs.n_actions,
                             "context_features": logs.n_features, "logging_policy": logs.policy,
                             "mean_reward": float(logs.reward.mean())}
        current.log_params({"source": self.source, "logging_policy": logs.policy})
        where = self.obd or "the artwork simulator (uniformly random logging)"
        print(f"{len(logs):,} logged rounds from {where}: {logs.n_actions} actions, {logs.n_features} context "
              f"features, mean reward {logs.reward.mean():.4f} ({time.perf_counter() - started:.1f}s); "
              f"fitting on {len(self.train):,}, evaluating on {len(self.evaluation):,}")
        self.candidates = list(zip(self.policy_names, self.configs, strict=True))
        self.next(self.fit, foreach="candidates")

    @step
    def fit(self):
        """Fit one policy on the training logs, estimate its value off-policy; online on the simulator if asked."""
        from matinee.apps.artwork.ope import DM, DR, IPS, SNIPS, Replay, evaluate
        from matinee.apps.artwork.reward_models import RidgeRewardModel

        self.name, self.config = self.input
        log = self.evaluation
        with single_thread():
            started = time.perf_counter()
            self.policy = make_policy(self.config, self.seed).update(self.train)
            self.fit_seconds = time.perf_counter() - started
            pi = self.policy.probabilities(log.context, log.features_of(), log.candidates)
            estimators = [IPS(), SNIPS(), DM(), DR()]
            if self.uniform_logs:
                estimators.append(Replay(policy_action="sample"))
            features = self.reward_features if log.action_features is not None else "per_action"
            started = time.perf_counter()
            results = evaluate(log, pi, estimators, RidgeRewardModel(features=features, random_state=self.seed),
                               n_bootstrap=self.n_bootstrap, level=self.level, random_state=self.seed)
            self.ope_seconds = time.perf_counter() - started
            self.estimates = {name: est.to_dict() for name, est in results.items()}
            self.truth = None
            if log.expected_reward is not None:  # simulated: the true value on these rounds
                self.truth = float((pi * log.expected_reward).sum(axis=1).mean())
            self.online = self.curve = None
            if self.source == "sim" and self.online_rounds > 0:
                self._simulate_online()
        del self.train, self.evaluation  # the logs stay in the start step's artifacts
        metrics = {f"{self.name}/ope/{k}": v["value"] for k, v in self.estimates.items()}
        metrics.update({f"{self.name}/ope/{k}_low": v["low"] for k, v in self.estimates.items()})
        metrics.update({f"{self.name}/ope/{k}_high": v["high"] for k, v in self.estimates.items()})
        if self.truth is not None:
            metrics[f"{self.name}/true_value"] = self.truth
        current.log_metrics(metrics)
        dr = self.estimates[SELECT_BY]
        truth = "" if self.truth is None else f", true value {self.truth:.4f}"
        online = "" if self.online is None else \
            f"; online {self.online['share_of_oracle_last']:.1%} of the oracle over the last {self.online['window']:,}"
        print(f"{label(self.config)}: DR {dr['value']:.4f} [{dr['low']:.4f}, {dr['high']:.4f}]{truth}{online} "
              f"(fit {self.fit_seconds:.2f}s, OPE {self.ope_seconds:.2f}s)")
        self.next(self.select)

    def _simulate_online(self) -> None:
        from matinee.apps.artwork.online import simulate

        result = simulate(make_policy(self.config, self.seed), environment(self.shape, self.seed), self.online_rounds,
                          self.batch_size, self.delay_batches, seed=self.seed + 1, name=self.name, keep_log=False)
        self.online = result.summary(last=min(self.online_window, self.online_rounds))
        self.curve = result.frame
        current.log_batch([(f"{self.name}/online/share_of_oracle", float(row.share_of_oracle), int(row.end))
                           for row in result.frame.itertuples()])
        current.log_metrics({f"{self.name}/online/share_of_oracle_last": self.online["share_of_oracle_last"],
                             f"{self.name}/online/cumulative_regret": self.online["cumulative_regret"],
                             f"{self.name}/online/decisions_per_second": self.online["decisions_per_second"]})

    @step
    def select(self, inputs):
        """Rank the policies by DR, keep the best as ``policy``, and write the report."""
        import pandas as pd

        rows = []
        for i in inputs:
            row: dict[str, Any] = {"policy": i.name, "params": label(i.config)}
            for name, est in i.estimates.items():
                row[name] = est["value"]
                row[f"{name}_low"], row[f"{name}_high"] = est["low"], est["high"]
            row["truth"] = i.truth
            if i.online is not None:
                row["online_share"] = i.online["share_of_oracle_last"]
                row["online_regret"] = i.online["cumulative_regret"]
                row["decisions_per_second"] = i.online["decisions_per_second"]
            row["fit_seconds"] = i.fit_seconds
            rows.append(row)
        self.leaderboard = sorted(rows, key=lambda r: -r[SELECT_BY])
        best = max(inputs, key=lambda i: i.estimates[SELECT_BY]["value"])
        self.best_name, self.best_config, self.policy = best.name, best.config, best.policy
        self.estimates, self.truth = best.estimates, best.truth
        self.merge_artifacts(inputs, include=["data_summary", "source", "shape"])
        self.online = [i.online for i in inputs if i.online is not None]
        curves = [i.curve for i in inputs if i.curve is not None]
        self.curves = pd.concat(curves, ignore_index=True) if curves else None
        self.estimate_table = pd.DataFrame([
            {"policy": i.name, "estimator": name, "value": est["value"], "low": est["low"], "high": est["high"],
             "truth": i.truth}
            for i in inputs for name, est in i.estimates.items()])
        current.log_metrics({f"best/ope/{k}": v["value"] for k, v in self.estimates.items()})
        if self.truth is not None:
            current.log_metric("best/true_value", self.truth)
        self.report_path = self.report_html = None
        if self.report:
            self._write_report()
        dr = self.estimates[SELECT_BY]
        print(f"best by DR: {label(self.best_config)} {dr['value']:.4f} [{dr['low']:.4f}, {dr['high']:.4f}]"
              + ("" if self.truth is None else f"; true value {self.truth:.4f}"))
        if self.report_path:
            print(f"report: {self.report_path}")
        self.next(self.end)

    def _write_report(self) -> None:
        from matinee.apps.artwork.report import report_html
        from matinee.config import load_settings

        d = self.data_summary
        best = self.estimates[SELECT_BY]
        notes = [f"{d['rounds']:,} logged rounds ({d['source']}, logging policy {d['logging_policy']}): "
                 f"{d['train']:,} to fit, {d['evaluation']:,} to evaluate; {d['actions']} actions, "
                 f"{d['context_features']} context features.",
                 f"Best by DR: {label(self.best_config)}, {best['value']:.4f} "
                 f"[{best['low']:.4f}, {best['high']:.4f}] at {best['level']:.0%}"
                 + ("" if self.truth is None else f" (true value {self.truth:.4f})") + "."]
        if self.online:
            notes.append(f"Online: every policy learned from nothing on the simulator for {self.online_rounds:,} "
                         f"rounds, with feedback every {self.batch_size:,} decisions.")
        title = f"Artwork policies: {current.flow_name}/{current.run_id}"
        summary = [{"policy": o["policy"], f"share of oracle, last {o['window']:,}": o["share_of_oracle_last"],
                    "share of oracle, all": o["share_of_oracle"], "cumulative regret": o["cumulative_regret"],
                    "exploration": o["exploration_rate_last"], "decisions/s": o["decisions_per_second"]}
                   for o in self.online or []]
        self.report_html = report_html(self.curves, self.estimate_table, title=title, summary=summary, notes=notes)
        path = load_settings().home / "reports" / str(current.flow_name) / str(current.run_id) / "artwork.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.report_html, encoding="utf-8")
        self.report_path = str(path)

    @step
    def end(self):
        """The winner: ``policy``, ``best_config``, ``estimates``, ``leaderboard``, ``report_html``, ``report_path``."""


def _candidate_counts(logs: Any) -> Any:
    return logs.n_actions if logs.candidates is None else logs.candidates.sum(axis=1)


if __name__ == "__main__":
    ArtworkTrainingFlow()
