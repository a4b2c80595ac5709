"""Sessions and plays over simulated time, generated in vectorized steps.

The behaviour model. Member ``m`` has a Poisson number of sessions with mean
``sessions_per_member * activity_m`` (capped so that their plays fit in half
the catalogue), spread over the simulated days with an evening-heavy time of
day. A session at time ``t`` shows the member a page of ``page_size`` titles
drawn, among the titles released by ``t``, in proportion to their exposure

    ``popularity_j * (1 + recency_boost * exp(-(t - release_j) / recency_days))``

and the member plays, one after another, the ``n`` titles of highest
``taste_m . factors_j`` plus Gumbel noise (``n`` is 1 plus a Poisson draw).
This samples the multinomial logit with utility

    ``taste_m . factors_j + log popularity_j + log(1 + recency term) + Gumbel noise``

over the released catalogue through a page (exactly that logit as the page
grows). A title the member has already played is passed over unless, with
probability ``replay_rate``, they fancy a re-play; so re-plays are rare and a
member who has seen most of what is offered plays less. A play is completed
with probability ``sigmoid(completion_bias + completion_slope * taste /
taste_scale)``; a completed play weighs 1, a partial one the fraction watched.

Members are independent and a member's sessions sequential, so step ``r``
plays the ``r``-th session of every member at once, with each member's
played titles kept as a bitset; members go in blocks that bound its memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from matinee.apps.sim.world import SESSION_STREAM, World, stream

_CHUNK = 16_384  # sessions per vectorized step: fixed, so the output never depends on memory
_BITSET_BYTES = 1 << 27  # members are played in blocks whose played-title bitsets fit in 128 MiB
_MAX_PLAY_SHARE = 0.5  # a member's sessions are capped so their plays fit in half the catalogue

# Share of sessions starting in each hour of the day (UTC), evening-heavy.
_DIURNAL = np.array([3, 2, 1, 1, 1, 1, 1, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 6, 8, 10, 11, 10, 7, 5], float)
_DIURNAL /= _DIURNAL.sum()


@dataclass(frozen=True, eq=False)
class Plays:
    """The play log, sorted by time (ties in the order they were generated)."""

    users: np.ndarray  # int32
    items: np.ndarray  # int32
    timestamps: np.ndarray  # int64 seconds
    complete: np.ndarray  # bool
    weights: np.ndarray  # float32 in (0, 1]
    replay: np.ndarray  # bool: the member had played the title before


class Exposure:
    """Draws titles among those released by a time, in proportion to popularity x recency."""

    def __init__(self, world: World) -> None:
        config = world.config
        self.order = np.argsort(world.release, kind="stable")
        self.release = world.release[self.order]
        pop = world.popularity[self.order]
        self.boost = config.recency_boost
        self.tau = config.recency_days * 86_400.0
        self.end = float(config.end)
        self.c_pop = np.cumsum(pop)
        # Recency mass relative to the end of time; the config bounds days / recency_days so this never overflows.
        self.c_new = np.cumsum(pop * np.exp(np.maximum((self.release - self.end) / self.tau, -700.0)))
        self.n_guide = 4 * len(pop)
        self.guide = np.searchsorted(self.c_pop, np.arange(self.n_guide) * (self.c_pop[-1] / self.n_guide),
                                     side="right")

    def released(self, times: np.ndarray) -> np.ndarray:
        """How many titles are released at each time."""
        return np.searchsorted(self.release, times, side="right")

    def draw(self, times: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """``(len(times), k)`` title ids, each drawn by exposure at its row's time (with replacement)."""
        shape = (len(times), k)
        last = self.released(times) - 1  # position of each row's last released title
        mass_pop = self.c_pop[last]
        mass_new = self.boost * np.exp((self.end - times) / self.tau) * self.c_new[last]
        pick_new = rng.random(shape) * (mass_pop + mass_new)[:, None] < mass_new[:, None]
        target = rng.random(shape)
        pos = self._inverse_pop(target * mass_pop[:, None], np.broadcast_to(last[:, None], shape))
        rows = np.nonzero(pick_new)[0]
        pos[pick_new] = np.minimum(np.searchsorted(self.c_new, target[pick_new] * self.c_new[last[rows]],
                                                   side="right"), last[rows])
        return self.order[pos]

    def _inverse_pop(self, target: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Smallest position with cumulative popularity above ``target`` (a guide table, then a short walk)."""
        bucket = (target * (self.n_guide / self.c_pop[-1])).astype(np.int64) - 1
        pos = np.minimum(self.guide[np.clip(bucket, 0, self.n_guide - 1)], last).ravel()
        target, last = target.ravel(), np.ravel(last)
        todo = np.flatnonzero((self.c_pop[pos] <= target) & (pos < last))
        while todo.size:
            pos[todo] += 1
            todo = todo[(self.c_pop[pos[todo]] <= target[todo]) & (pos[todo] < last[todo])]
        return pos.reshape(bucket.shape)


def generate_plays(world: World) -> Plays:
    """The whole play log of ``world``; the same world always gives the same log."""
    config = world.config
    rng = stream(config.seed, SESSION_STREAM)
    exposure = Exposure(world)
    cap = max(1, int(_MAX_PLAY_SHARE * config.n_titles / config.plays_per_session))
    counts = np.minimum(rng.poisson(config.sessions_per_member * world.activity), cap)
    members = np.repeat(np.arange(config.n_members, dtype=np.int32), counts)
    n = len(members)
    starts = (config.start + rng.integers(0, config.days, n) * 86_400
              + rng.choice(24, n, p=_DIURNAL) * 3_600 + rng.integers(0, 3_600, n))
    sizes = np.minimum(1 + rng.poisson(config.plays_per_session - 1.0, n), config.page_size // 2)
    order = np.argsort(members.astype(np.int64) * (config.days * 86_400) + (starts - config.start),
                       kind="stable")  # each member's sessions in time order
    starts, sizes = starts[order], sizes[order]
    first = np.cumsum(counts) - counts
    rank = np.arange(n) - np.repeat(first, counts)  # 0 for a member's first session, 1 for the next, ...

    parts = []
    block = max(1, _BITSET_BYTES * 8 // config.n_titles)  # members whose played-sets fit the budget
    for b0 in range(0, config.n_members, block):
        b1 = min(b0 + block, config.n_members)
        s0, s1 = first[b0], first[b1 - 1] + counts[b1 - 1]
        if s1 == s0:
            continue
        played = np.zeros((b1 - b0, (config.n_titles + 7) // 8), np.uint8)
        # Round r plays every member's r-th session: members are independent, a member's sessions sequential.
        by_round = s0 + np.argsort(rank[s0:s1], kind="stable")
        bounds = np.cumsum(np.bincount(rank[s0:s1]))
        for lo, hi in zip(np.r_[0, bounds[:-1]].tolist(), bounds.tolist(), strict=True):
            for c0 in range(lo, hi, _CHUNK):
                idx = by_round[c0:min(hi, c0 + _CHUNK)]
                parts.append(_sessions(world, exposure, members[idx], starts[idx], sizes[idx], played, b0, rng))
    if parts:
        users, items, times, taste, replay = (np.concatenate([p[j] for p in parts]) for j in range(5))
    else:
        users, items, times = np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.int64)
        taste, replay = np.empty(0, np.float32), np.empty(0, bool)
    del parts

    scale = config.taste_scale if config.taste_scale > 0 else 1.0
    logit = config.completion_bias + config.completion_slope * taste.astype(np.float64) / scale
    complete = rng.random(len(users)) < 1.0 / (1.0 + np.exp(-logit))
    watched = rng.uniform(0.05, 0.9, len(users)).astype(np.float32)
    weights = np.where(complete, np.float32(1.0), watched)
    order = np.argsort(times, kind="stable")
    return Plays(users=users[order], items=items[order], timestamps=times[order], complete=complete[order],
                 weights=weights[order], replay=replay[order])


def _sessions(world: World, exposure: Exposure, members: np.ndarray, starts: np.ndarray, sizes: np.ndarray,
              played: np.ndarray, first_member: int, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Plays of sessions of distinct members: each takes the top ``size`` eligible titles of one page."""
    page = np.sort(exposure.draw(starts, world.config.page_size, rng), axis=1)  # a page is a set: order is free
    taste = _taste(world, members, page)
    utility = taste + _gumbel(rng, page.shape)
    rows = (members - first_member)[:, None]
    was_played = (played[rows, page >> 3] >> (page & 7)) & 1 == 1
    eligible = ~was_played
    eligible[was_played] = rng.random(int(was_played.sum())) < world.config.replay_rate
    eligible[:, 1:] &= page[:, 1:] != page[:, :-1]  # a title drawn twice is shown once
    utility[~eligible] = -np.inf
    width = int(sizes.max())
    top = np.argsort(-utility, axis=1)[:, :width]
    keep = (np.arange(width) < sizes[:, None]) & np.isfinite(np.take_along_axis(utility, top, axis=1))
    chosen = np.take_along_axis(page, top, axis=1)
    durations = np.exp(rng.normal(np.log(2_400.0), 0.5, top.shape)).astype(np.int64) + 60
    offsets = np.cumsum(durations, axis=1) - durations
    rows = np.broadcast_to(rows, top.shape)[keep]
    items = chosen[keep]
    np.bitwise_or.at(played, (rows, items >> 3), (1 << (items & 7)).astype(np.uint8))
    return (
        np.broadcast_to(members[:, None], top.shape)[keep],
        items.astype(np.int32),
        (starts[:, None] + offsets)[keep],
        np.take_along_axis(taste, top, axis=1)[keep],
        np.take_along_axis(was_played, top, axis=1)[keep],
    )


def _taste(world: World, members: np.ndarray, titles: np.ndarray) -> np.ndarray:
    """``taste[m] . factors[t]`` for each row's member and each of its titles (float32)."""
    return np.matmul(world.factors[titles], world.taste[members][:, :, None])[..., 0]


def _gumbel(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    u = rng.random(shape, dtype=np.float32)
    with np.errstate(divide="ignore"):
        return -np.log(-np.log(u))
