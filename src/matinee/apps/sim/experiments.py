"""Online experiments against the simulated streaming service, with the true difference known.

:class:`RankerDuel` puts two recommenders side by side on a
:class:`~matinee.apps.sim.StreamingService`: each ranks the catalogue by the
members' true preference blurred by noise of its own (the noisier ranker is the
worse one). Members play at most one title per impression, by a logit choice
over the titles shown (weighted by position) against not playing at all, so
every member's true take rate under either ranker is known exactly, and so is
the true difference an A/B test should find.

* :meth:`RankerDuel.ab_power` / :meth:`RankerDuel.interleaving_power`: the
  chance a test of ``n`` members detects the difference, over seeded replicate
  experiments (numpy, no I/O), and :meth:`RankerDuel.members_for_power` the
  members needed for a power.
* :meth:`RankerDuel.log_ab` / :meth:`RankerDuel.log_interleaving`: the same
  traffic written to a real :class:`~matinee.EventLog` the way a server logs
  it, for :func:`matinee.core.experiments.analyze` to read.

Examples
--------
>>> from matinee.apps.sim.experiments import RankerDuel
>>> duel = RankerDuel("tiny", noise_a=2.0, noise_b=0.5, k=5, seed=1)
>>> truth = duel.truth()
>>> bool(truth["take_rate_b"] > truth["take_rate_a"])
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from matinee.apps.sim.service import StreamingService
from matinee.core.experiments import Experiment, preference, stats
from matinee.core.experiments.interleaving import team_draft_many
from matinee.errors import ParameterError

__all__ = ["RankerDuel"]


@dataclass(frozen=True)
class _Member:
    lists: np.ndarray  # (2, n, k) item ids shown by ranker a and b
    take: np.ndarray  # (2, n) true take rate per impression under each ranker
    visits: np.ndarray  # (n,) mean visits per experiment window


class RankerDuel:
    """Two rankers of known quality on one simulated service.

    Parameters
    ----------
    service
        A :class:`StreamingService` or a preset name (default ``"medium"``).
    noise_a, noise_b
        Standard deviation of the noise each ranker adds to the true preference
        (in logits); the smaller, the better the ranker.
    k
        Titles per impression.
    take_ideal
        The take rate of the ideal ranking: it sets the appeal of not playing.
    visits
        Mean impressions per member in the experiment window (members' activity
        spreads it out).
    position_decay
        Examination weight of slot ``j`` is ``(1 + j) ** -position_decay``.
    appetite_spread
        Members differ in how readily they play anything: the appeal of not
        playing is multiplied by a log-normal factor of this spread per member
        (0: every member takes the ideal list with probability ``take_ideal``).
    seed
        Seeds the rankers' noise; each test takes its own seed.
    """

    def __init__(self, service: StreamingService | str = "medium", *, noise_a: float = 1.5, noise_b: float = 1.0,
                 k: int = 10, take_ideal: float = 0.4, visits: float = 5.0, position_decay: float = 0.7,
                 appetite_spread: float = 1.0, seed: int = 0) -> None:
        self.service = service if isinstance(service, StreamingService) else StreamingService(service, seed=seed)
        for name, value in (("noise_a", noise_a), ("noise_b", noise_b), ("visits", visits),
                            ("position_decay", position_decay), ("appetite_spread", appetite_spread)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ParameterError(f"{name} must be a number >= 0, not {value!r}", parameter=name)
        if not 0 < take_ideal < 1:
            raise ParameterError(f"take_ideal must be in (0, 1), not {take_ideal!r}", parameter="take_ideal")
        if not isinstance(k, int) or not 1 <= k <= self.service.n_titles:
            raise ParameterError(f"k must be a whole number from 1 to {self.service.n_titles}", parameter="k")
        self.noise = (float(noise_a), float(noise_b))
        self.k = k
        self.take_ideal = float(take_ideal)
        self.mean_visits = float(visits)
        self.weights = (1.0 + np.arange(k)) ** -float(position_decay)
        self.appetite_spread = float(appetite_spread)
        self.seed = seed
        self._members: _Member | None = None
        self._utility: np.ndarray | None = None
        self._outside: np.ndarray | None = None

    # -- the truth -------------------------------------------------------------------------------
    def _build(self) -> _Member:
        if self._members is not None:
            return self._members
        service = self.service
        users = np.arange(service.n_members)
        utility = service.true_preference(users).astype(np.float64)
        rng = np.random.default_rng([self.seed, 1])
        lists = np.empty((2, len(users), self.k), dtype=np.int64)
        for r, noise in enumerate(self.noise):
            scores = utility + noise * rng.standard_normal(utility.shape)
            top = np.argpartition(-scores, self.k - 1, axis=1)[:, : self.k]
            order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
            lists[r] = np.take_along_axis(top, order, axis=1)
        ideal = np.sort(utility, axis=1)[:, ::-1][:, : self.k]
        appeal = (self.weights * np.exp(ideal)).sum(axis=1)
        # The ideal list is taken with probability take_ideal by a member of median appetite.
        outside = appeal * (1 / self.take_ideal - 1) * np.exp(self.appetite_spread * rng.standard_normal(len(users)))
        take = np.empty((2, len(users)))
        for r in range(2):
            shown = (self.weights * np.exp(np.take_along_axis(utility, lists[r], axis=1))).sum(axis=1)
            take[r] = shown / (shown + outside)
        activity = service.members()["activity"].to_numpy(np.float64)
        self._utility, self._outside = utility, outside
        self._members = _Member(lists, take, self.mean_visits * activity / activity.mean())
        return self._members

    def truth(self) -> dict[str, float]:
        """The true take rates (plays / impressions over the population's impressions) and their difference."""
        m = self._build()
        w = m.visits / m.visits.sum()
        a, b = float((m.take[0] * w).sum()), float((m.take[1] * w).sum())
        return {"take_rate_a": a, "take_rate_b": b, "difference": b - a, "relative": b / a - 1,
                "members": float(len(w)), "visits_per_member": float(m.visits.mean())}

    # -- replicate experiments (no I/O) -----------------------------------------------------------------
    def _sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        m = self._build()
        who = rng.integers(0, len(m.visits), n)
        visits = 1 + rng.poisson(np.maximum(m.visits[who] - 1, 0))
        return who, visits

    def ab_power(self, n_members: int, *, replicates: int = 200, alpha: float = 0.05, seed: int = 0) -> float:
        """The share of ``replicates`` A/B tests of ``n_members`` (half per arm) whose take-rate difference
        is significant (delta method, two-sided)."""
        m = self._build()
        rng = np.random.default_rng([seed, n_members, 2])
        hits = 0
        for _ in range(replicates):
            who, visits = self._sample(rng, n_members)
            arm = rng.random(n_members) < 0.5
            plays = rng.binomial(visits, m.take[arm.astype(int), who])
            effect = stats.ratio_effect(plays[~arm], visits[~arm], plays[arm], visits[arm], alpha)
            hits += effect.significant
        return hits / replicates

    def interleave(self, rng: np.random.Generator, who: np.ndarray, visits: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Interleaved impressions of members ``who`` (each ``visits`` times): per impression the member,
        the items and teams shown, and the slot played (-1 for none)."""
        m = self._build()
        assert self._utility is not None and self._outside is not None
        member = np.repeat(who, visits)
        items, teams = team_draft_many(m.lists[0, member], m.lists[1, member], self.k, rng)
        appeal = self.weights * np.exp(self._utility[member[:, None], items])
        cumulative = np.cumsum(appeal, axis=1)
        total = cumulative[:, -1] + self._outside[member]
        draw = rng.random(len(member)) * total
        slot = (cumulative < draw[:, None]).sum(axis=1)
        slot[slot >= self.k] = -1  # the draw landed on not playing
        return member, items, teams, slot

    def interleaving_power(self, n_members: int, *, replicates: int = 200, alpha: float = 0.05,
                           seed: int = 0) -> float:
        """The share of ``replicates`` interleaving experiments of ``n_members`` in which the preference for
        the better ranker is significant (members as units)."""
        rng = np.random.default_rng([seed, n_members, 3])
        hits = 0
        for _ in range(replicates):
            who, visits = self._sample(rng, n_members)
            _, _, teams, slot = self.interleave(rng, who, visits)
            played = slot >= 0
            won_b = np.zeros(len(slot))
            won_b[played] = teams[played, slot[played]]
            wins_b = won_b
            wins_a = played - won_b
            units = np.repeat(np.arange(n_members), visits)
            if wins_a.sum() + wins_b.sum() == 0:
                continue
            hits += preference(wins_a, wins_b, units=units, alpha=alpha).significant
        return hits / replicates

    def members_for_power(self, test: str, target: float = 0.8, *, low: int = 50, high: int = 2_000_000,
                          replicates: int = 200, alpha: float = 0.05, seed: int = 0) -> dict[str, Any]:
        """The smallest member count (to within 5%) at which ``test`` (``"ab"`` or ``"interleaving"``)
        reaches ``target`` power, by bisection on a log scale; with the power curve evaluated."""
        run = {"ab": self.ab_power, "interleaving": self.interleaving_power}.get(test)
        if run is None:
            raise ParameterError(f"test must be 'ab' or 'interleaving', not {test!r}", parameter="test")
        curve: dict[int, float] = {}

        def power_at(n: int) -> float:
            if n not in curve:
                curve[n] = run(n, replicates=replicates, alpha=alpha, seed=seed)
            return curve[n]

        if power_at(high) < target:
            raise ParameterError(f"{test} does not reach power {target} with {high} members", parameter="high")
        while power_at(low) >= target and low > 2:
            low //= 2
        while high / low > 1.05:
            mid = int(round(math.sqrt(low * high)))
            if power_at(mid) >= target:
                high = mid
            else:
                low = mid
        return {"test": test, "members": high, "power": curve[high], "curve": dict(sorted(curve.items()))}

    # -- traffic in a real event log -------------------------------------------------------------------
    def log_ab(self, log: Any, experiment: Experiment, n_members: int, *, start: float, seconds: float = 3600.0,
               seed: int = 0, pre_period: float | None = None, model_versions: Sequence[int] = (1, 2)) -> int:
        """Write an A/B test's traffic as a server logs it; returns the decisions written.

        Members ``0 .. n_members-1`` (mapped onto the service's members) are assigned with the
        experiment's own hash: its control arm is served by ranker ``a``, every other arm by ranker ``b``.
        Each impression is a decision (``arm`` the alias, ``candidates`` the list, ``action`` its
        first item) and gets a ``play:ITEM`` or ``skip`` feedback event. With ``pre_period``
        seconds, every member first gets that long of control traffic before ``start`` (CUPED's covariate).
        """
        m = self._build()
        rng = np.random.default_rng([seed, 4])
        who = np.arange(n_members) % len(m.visits)
        visits = 1 + rng.poisson(np.maximum(m.visits[who] - 1, 0))
        arms = [experiment.assign(i) for i in range(n_members)]
        ranker = np.array([0 if a == experiment.control else 1 for a in arms])
        phases = [("exp", start, ranker, arms)]
        if pre_period:
            phases.insert(0, ("pre", start - pre_period, np.zeros(n_members, int), [experiment.control] * n_members))
        written = 0
        for phase, begin, used, labels in phases:
            length = seconds if phase == "exp" else float(pre_period or 0.0)
            decisions, feedback = [], []
            for i in range(n_members):
                shown = m.lists[used[i], who[i]].tolist()
                assert self._utility is not None and self._outside is not None
                appeal = self.weights * np.exp(self._utility[who[i], shown])
                probs = np.append(appeal, self._outside[who[i]]) / (appeal.sum() + self._outside[who[i]])
                choices = rng.choice(self.k + 1, size=int(visits[i]), p=probs)
                times = begin + np.sort(rng.random(int(visits[i]))) * length
                for v, (choice, ts) in enumerate(zip(choices, times, strict=True)):
                    did = f"{experiment.name}-{phase}-{seed}-{i}-{v}"
                    decisions.append({"decision_id": did, "ts": float(ts), "unit_id": i, "endpoint": "recs",
                                      "model": experiment.model, "model_version": model_versions[used[i]],
                                      "arm": labels[i], "candidates": shown, "action": shown[0], "propensity": 1.0})
                    played = choice < self.k
                    feedback.append({"decision_id": did, "ts": float(ts) + 1.0,
                                     "event": f"play:{shown[choice]}" if played else "skip", "reward": float(played)})
            log.append_many(decisions, feedback)
            written += len(decisions)
        return written

    def log_interleaving(self, log: Any, experiment: Experiment, n_members: int, *, start: float,
                         seconds: float = 3600.0, seed: int = 0) -> int:
        """Write an interleaving experiment's traffic as a server would log it; returns the decisions written.

        Each impression is one decision with ``arm`` the experiment's interleaved arm (``"A+B"``),
        ``candidates`` the interleaved list, ``context`` the team of each slot (0 = ``a`` = control,
        1 = ``b``), ``action`` the first item; a play is a ``play:ITEM`` feedback event.
        """
        if experiment.kind != "interleaving":
            raise ParameterError(f"experiment {experiment.name!r} is not an interleaving experiment",
                                 parameter="experiment")
        m = self._build()
        rng = np.random.default_rng([seed, 5])
        ids = np.arange(n_members)
        who = ids % len(m.visits)
        visits = 1 + rng.poisson(np.maximum(m.visits[who] - 1, 0))
        member, items, teams, slot = self.interleave(rng, who, visits)
        unit = np.repeat(ids, visits)
        times = start + rng.random(len(member)) * seconds
        decisions, feedback = [], []
        for j in range(len(member)):
            shown = items[j].tolist()
            did = f"{experiment.name}-il-{seed}-{j}"
            decisions.append({"decision_id": did, "ts": float(times[j]), "unit_id": int(unit[j]), "endpoint": "recs",
                              "model": experiment.model, "arm": experiment.interleaved_arm,
                              "context": teams[j].astype(float), "candidates": shown, "action": shown[0],
                              "propensity": 1.0})
            played = slot[j] >= 0
            feedback.append({"decision_id": did, "ts": float(times[j]) + 1.0,
                             "event": f"play:{shown[slot[j]]}" if played else "skip", "reward": float(played)})
        log.append_many(decisions, feedback)
        return len(decisions)
