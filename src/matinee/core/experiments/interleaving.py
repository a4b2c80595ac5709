"""Team-draft interleaving: two rankers share one result list, and plays say which one members prefer.

In each impression the two rankers take turns, like captains picking teams: the
team that has picked fewer items picks next (a coin decides when both have
picked as often), taking its highest-ranked item not already in the list. Each
slot remembers the team that picked it; a play on a slot is a win for that
team. Over many impressions the share of wins going to ``b`` estimates which
ranker members prefer: above one half, ``b``; the same members judge both
rankers within one list, so far fewer of them are needed than for an A/B test.

* :func:`team_draft` interleaves one pair of rankings; :func:`team_draft_many`
  does the same for many rows at once (numpy, for simulations).
* :func:`credit` turns played items into wins of ``a`` or ``b`` per impression.
* :func:`preference` is the share of wins going to ``b`` with a confidence
  interval and a p-value against one half: exact binomial over impressions, or
  clustered by member (delta method) when the members are given.

Examples
--------
>>> import numpy as np
>>> mixed = team_draft([1, 2, 3, 4], [3, 5, 1, 6], k=4, rng=np.random.default_rng(0))
>>> sorted(mixed.items) == sorted(set(mixed.items)), len(mixed.items)
(True, 4)
>>> credit(mixed.teams, mixed.items, [mixed.items[0]]) in [(1, 0), (0, 1)]
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from matinee.errors import ParameterError

__all__ = ["Interleaved", "Preference", "credit", "preference", "team_draft", "team_draft_many"]

TEAMS = ("a", "b")


@dataclass(frozen=True)
class Interleaved:
    """One interleaved list: the items shown, best first, and the team (``"a"`` or ``"b"``) that picked each."""

    items: list[Any]
    teams: list[str]


def _k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ParameterError(f"k must be a whole number >= 1, not {k!r}", parameter="k")
    return int(k)


def team_draft(ranking_a: Sequence[Any], ranking_b: Sequence[Any], k: int, rng: np.random.Generator) -> Interleaved:
    """Interleave two rankings by team draft.

    Parameters
    ----------
    ranking_a, ranking_b
        The two rankers' items for one request, best first.
    k
        Length of the list shown (shorter if the two rankings hold fewer distinct items).
    rng
        Decides which team picks first whenever both have picked equally often.

    Returns
    -------
    Interleaved

    Raises
    ------
    ParameterError
        ``k`` is not a whole number >= 1.

    Examples
    --------
    >>> import numpy as np
    >>> team_draft([1, 2], [1, 2], k=2, rng=np.random.default_rng(1)).items
    [1, 2]
    """
    k = _k(k)
    lists = (list(ranking_a), list(ranking_b))
    positions = [0, 0]
    picked = [0, 0]
    items: list[Any] = []
    teams: list[str] = []
    seen: set[Any] = set()
    while len(items) < k:
        if picked[0] < picked[1]:
            team = 0
        elif picked[1] < picked[0]:
            team = 1
        else:
            team = int(rng.random() < 0.5)
        for attempt in (team, 1 - team):
            ranking, pos = lists[attempt], positions[attempt]
            while pos < len(ranking) and ranking[pos] in seen:
                pos += 1
            positions[attempt] = pos
            if pos < len(ranking):
                team = attempt
                break
        else:
            break  # both rankings are used up
        item = lists[team][positions[team]]
        positions[team] += 1
        seen.add(item)
        items.append(item)
        teams.append(TEAMS[team])
        picked[team] += 1
    return Interleaved(items, teams)


def team_draft_many(rankings_a: Any, rankings_b: Any, k: int, rng: np.random.Generator) -> tuple[np.ndarray,
                                                                                                 np.ndarray]:
    """:func:`team_draft` for many requests at once (rows of two integer matrices).

    Parameters
    ----------
    rankings_a, rankings_b
        ``(n, depth)`` integer item ids, best first, one row per request; each row
        of one matrix holds distinct items, and ``depth >= k``.
    k
        Slots per list.
    rng
        The coin flips.

    Returns
    -------
    items, teams
        ``(n, k)`` item ids and ``(n, k)`` booleans, ``True`` where team ``b`` picked the slot.

    Raises
    ------
    ParameterError
        Mismatched shapes, or ``depth < k``.

    Examples
    --------
    >>> import numpy as np
    >>> items, teams = team_draft_many([[1, 2, 3]], [[3, 2, 1]], 3, np.random.default_rng(0))
    >>> sorted(items[0].tolist()), int(teams.sum()) in (1, 2)
    ([1, 2, 3], True)
    """
    k = _k(k)
    a, b = np.asarray(rankings_a), np.asarray(rankings_b)
    if a.ndim != 2 or a.shape != b.shape:
        raise ParameterError(f"rankings_a {a.shape} and rankings_b {b.shape} must be matrices of one shape",
                             parameter="rankings_b")
    n, depth = a.shape
    if depth < k:
        raise ParameterError(f"rankings hold {depth} items per row, fewer than k={k}", parameter="k")
    rows = np.arange(n)
    both = np.stack([a, b])  # (2, n, depth)
    pos = np.zeros((2, n), dtype=np.int64)
    picked = np.zeros((2, n), dtype=np.int64)
    items = np.empty((n, k), dtype=a.dtype)
    teams = np.zeros((n, k), dtype=bool)
    for slot in range(k):
        coin = np.less(rng.random(n), 0.5).astype(np.int64)
        team = np.where(picked[0] < picked[1], 0, np.where(picked[1] < picked[0], 1, coin))
        # Advance the picking team's pointer past items already shown (at most ``slot`` of them).
        for _ in range(slot + 1):
            p = pos[team, rows]
            candidate = both[team, rows, np.minimum(p, depth - 1)]
            if not slot:
                break
            dup = (p < depth) & (items[:, :slot] == candidate[:, None]).any(axis=1)
            if not dup.any():
                break
            pos[team[dup], rows[dup]] += 1
        p = pos[team, rows]
        items[:, slot] = both[team, rows, np.minimum(p, depth - 1)]
        teams[:, slot] = team == 1
        pos[team, rows] += 1
        picked[team, rows] += 1
    return items, teams


def credit(teams: Sequence[str], items: Sequence[Any], played_items: Sequence[Any]) -> tuple[int, int]:
    """Wins of team ``a`` and team ``b`` in one impression: one per played item, to the team that picked it.

    Parameters
    ----------
    teams, items
        The :class:`Interleaved` list shown.
    played_items
        The items the member played; items not in the list are ignored.

    Returns
    -------
    tuple of int
        ``(wins_a, wins_b)``.

    Raises
    ------
    ParameterError
        ``teams`` and ``items`` differ in length, or a team is not ``"a"`` or ``"b"``.

    Examples
    --------
    >>> credit(["a", "b", "a"], [7, 8, 9], [8, 9, 42])
    (1, 1)
    """
    if len(teams) != len(items):
        raise ParameterError(f"teams has {len(teams)} slots and items {len(items)}", parameter="teams")
    owner: dict[Any, str] = {}
    for team, item in zip(teams, items, strict=True):
        if team not in TEAMS:
            raise ParameterError(f"a team must be 'a' or 'b', not {team!r}", parameter="teams")
        owner.setdefault(item, team)
    wins = {"a": 0, "b": 0}
    for item in dict.fromkeys(played_items):
        if item in owner:
            wins[owner[item]] += 1
    return wins["a"], wins["b"]


@dataclass(frozen=True)
class Preference:
    """How members split between two interleaved rankers.

    Attributes
    ----------
    impressions
        Interleaved impressions counted.
    wins_a, wins_b
        Wins of each team, summed over the impressions.
    ties
        Impressions in which both teams won as often (no play at all included).
    share_b
        ``wins_b / (wins_a + wins_b)``: above 0.5, members prefer ranker ``b``.
    low, high
        The ``1 - alpha`` confidence interval of ``share_b``.
    p_value
        Two-sided, against ``share_b = 0.5``.
    delta
        ``(wins_b - wins_a) / impressions``: the usual interleaving score, the
        difference in plays per impression credited to each ranker.
    units
        Members counted (clustered method), else ``None``.
    method
        ``"binomial"`` (exact, every win independent) or ``"clustered"`` (members
        as units, delta method: right when one member makes many impressions).
    """

    impressions: int
    wins_a: int
    wins_b: int
    ties: int
    share_b: float
    low: float
    high: float
    p_value: float
    delta: float
    alpha: float
    method: str
    units: int | None = None

    @property
    def significant(self) -> bool:
        """Whether the interval excludes one half (``p_value < alpha``)."""
        return bool(self.p_value < self.alpha)

    @property
    def winner(self) -> str | None:
        """``"a"`` or ``"b"`` when significant, else ``None``."""
        if not self.significant:
            return None
        return "b" if self.share_b > 0.5 else "a"

    def as_dict(self) -> dict[str, Any]:
        """Plain data, ``significant`` and ``winner`` included."""
        return {**asdict(self), "significant": self.significant, "winner": self.winner}


def preference(wins_a: Any, wins_b: Any, units: Any = None, alpha: float = 0.05) -> Preference:
    """The share of interleaving wins going to ranker ``b``, with its interval and p-value.

    Parameters
    ----------
    wins_a, wins_b
        Per impression (arrays of one length): the wins of each team (see :func:`credit`).
    units
        Per impression, the member it was shown to. Given, the interval and test
        treat members as the independent units (delta method on the ratio of
        per-member sums); without, each non-tied impression is an independent
        Bernoulli trial (exact binomial test, Clopper-Pearson interval).
    alpha
        ``1 - alpha`` is the interval's coverage.

    Returns
    -------
    Preference

    Raises
    ------
    ParameterError
        Arrays of different lengths, negative wins, a bad ``alpha``, or no win at all.

    Examples
    --------
    >>> p = preference([1, 0, 0, 1, 0, 0, 0, 0, 0, 0], [0, 1, 1, 0, 1, 1, 1, 1, 1, 1])
    >>> p.share_b, round(p.p_value, 4)
    (0.8, 0.1094)
    """
    from scipy import stats as sps

    a = np.asarray(wins_a, dtype=np.float64).ravel()
    b = np.asarray(wins_b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ParameterError(f"wins_a has {a.size} impressions and wins_b {b.size}", parameter="wins_b")
    if (a < 0).any() or (b < 0).any() or not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ParameterError("wins must be finite counts >= 0", parameter="wins_a")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ParameterError(f"alpha must be between 0 and 1, not {alpha!r}", parameter="alpha")
    total_a, total_b = float(a.sum()), float(b.sum())
    if total_a + total_b <= 0:
        raise ParameterError("no impression was played: there is no preference to measure yet",
                             parameter="wins_a")
    n = int(a.size)
    ties = int((a == b).sum())
    share = total_b / (total_a + total_b)
    delta = (total_b - total_a) / n
    if units is None:
        k, m = int(round(total_b)), int(round(total_a + total_b))
        test = sps.binomtest(k, m, 0.5)
        ci = test.proportion_ci(confidence_level=1 - alpha, method="exact")
        return Preference(n, int(total_a), int(total_b), ties, share, float(ci.low), float(ci.high),
                          float(test.pvalue), delta, float(alpha), "binomial")
    unit_ids = np.asarray(units).ravel()
    if unit_ids.shape != a.shape:
        raise ParameterError(f"units has {unit_ids.size} entries for {n} impressions", parameter="units")
    _, inverse = np.unique(unit_ids, return_inverse=True)
    per_b = np.bincount(inverse, weights=b)
    per_all = np.bincount(inverse, weights=a + b)
    g = len(per_b)
    if g < 2:
        raise ParameterError("a clustered preference needs at least two members", parameter="units")
    # share = sum(b) / sum(a + b); linearise per member: r_i = (b_i - share * all_i) / mean(all).
    resid = (per_b - share * per_all) / per_all.mean()
    se = float(math.sqrt(resid.var(ddof=1) / g))
    z = float(sps.norm.ppf(1 - alpha / 2))
    p = float(2 * sps.norm.sf(abs(share - 0.5) / se)) if se > 0 else (1.0 if share == 0.5 else 0.0)
    return Preference(n, int(total_a), int(total_b), ties, share, share - z * se, share + z * se, p, delta,
                      float(alpha), "clustered", units=g)
