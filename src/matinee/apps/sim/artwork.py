"""The artwork part of the simulator: an environment for contextual bandits with a known truth.

Each title has artwork variants, each described by a few centred features in
(-0.5, 0.5), 0 being a middling look (tone, featured character, genre cue,
brightness, text size, ...). When member ``m`` is shown title ``t`` with
variant ``v``, they play it with probability

    ``sigmoid(base_t + z_tv . w_m)``

where ``base_t`` is the title's base rate (higher for popular titles), ``z_tv``
the variant's features and ``w_m`` the member's weights on them. The weights
are mostly explained by the member's observable features ``x_m`` (the
context): ``w_m = effect * (a + sqrt(1 - r) * x_m B + sqrt(r) * e_m)`` with a
shared mean ``a``, a context x feature matrix ``B`` and a small unobserved
part ``e_m`` (``r = artwork_unexplained``, 1% by default). So, apart from the
title's base rate, the log-odds are linear in ``z_tv`` and in the context x
variant-feature interactions ``x_m (x) z_tv``: a linear or logistic contextual
policy on those features can learn the best variant, while a context-free
policy (one variant per title) falls well short of the oracle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from matinee.apps.sim.config import PRESETS, SimConfig
from matinee.apps.sim.world import ENVIRONMENT_STREAM, World, build_world, check_ids, stream
from matinee.errors import ParameterError

if TYPE_CHECKING:
    from matinee.apps.sim.service import StreamingService

_POPULATION = 4_096  # members averaged over for the best context-free variants of large worlds
_MAX_VARIANTS = 64  # as SimConfig.max_variants allows


@dataclass(frozen=True, eq=False)
class Impressions:
    """A batch of artwork impressions: who is shown which title, with the variants that could represent it.

    Get one from :meth:`ArtworkEnvironment.sample` or :meth:`ArtworkEnvironment.impressions`.
    An action is a position on the variant axis (``0 .. n_variants - 1``).

    Attributes
    ----------
    member_ids, title_ids
        ``(n,)`` int64 ids of the member and the title of each impression.
    context
        ``(n, n_context_features)`` float64 observable member features.
    variant_features
        ``(n, n_variants, n_variant_features)`` float64 centred features of
        each candidate variant, in (-0.5, 0.5) (zeros where ``mask`` is false).
    mask
        ``(n, n_variants)`` bool, true where the title has that variant; ``None``
        when every impression has all ``n_variants``.
    noise
        ``(n,)`` float64 uniform draws that fix each impression's outcome: the
        member plays iff ``noise < play probability`` of the variant shown, so
        two policies compared on one batch see coupled outcomes.
    """

    member_ids: np.ndarray
    title_ids: np.ndarray
    context: np.ndarray
    variant_features: np.ndarray
    mask: np.ndarray | None
    noise: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.member_ids)
        for name in ("title_ids", "context", "variant_features", "noise"):
            if len(getattr(self, name)) != n:
                raise ParameterError(f"Impressions.{name} has {len(getattr(self, name))} rows, member_ids has {n}",
                                     parameter=name)
        if self.variant_features.ndim != 3:
            raise ParameterError("Impressions.variant_features must be (n, n_variants, n_variant_features)",
                                 parameter="variant_features")
        if self.mask is not None and self.mask.shape != self.variant_features.shape[:2]:
            raise ParameterError(f"Impressions.mask has shape {self.mask.shape}, "
                                 f"not {self.variant_features.shape[:2]}", parameter="mask")

    def __len__(self) -> int:
        return len(self.member_ids)

    @property
    def n_variants(self) -> np.ndarray:
        """``(n,)`` number of candidate variants of each impression."""
        if self.mask is None:
            return np.full(len(self), self.variant_features.shape[1], np.int64)
        return self.mask.sum(axis=1)


class ArtworkEnvironment:
    """Artwork impressions with a known play probability for every variant: a contextual bandit.

    Member ``m`` plays title ``t`` shown with variant ``v`` with probability
    ``sigmoid(base_t + z_tv . w_m)``, where ``w_m`` is mostly a linear function
    of the context (see :mod:`matinee.apps.sim.artwork`): on the features
    ``z_tv`` and ``x_m (x) z_tv`` a linear or logistic policy can match the
    oracle's choices closely, while the best single variant per title cannot.

    Parameters
    ----------
    n_context_features
        Observable features per member, the policy's context.
    n_variants
        Candidate variants per impression: a number (every title then offers
        that many variants, drawn from its artwork pool), or ``None`` for each
        title's own (3 to 10 by default), with a mask.
    n_variant_features
        Features per variant.
    size
        Preset of the simulated service whose members and titles are shown.
    seed
        Seed of the world and of the impressions and outcomes drawn.

    Examples
    --------
    >>> from matinee.apps.sim import ArtworkEnvironment
    >>> env = ArtworkEnvironment(n_context_features=20, n_variants=10, n_variant_features=5, seed=0)
    >>> batch = env.sample(1_000)
    >>> batch.context.shape, batch.variant_features.shape
    ((1000, 20), (1000, 10, 5))
    >>> best, best_value = env.oracle(batch)
    >>> uniform = env.play_probability(batch).mean()
    >>> bool(best_value.mean() > uniform)
    True
    >>> rewards = env.reward(batch, best)
    >>> sorted(set(rewards.tolist())) == [0.0, 1.0]
    True
    """

    def __init__(self, n_context_features: int = 20, n_variants: int | None = 10, n_variant_features: int = 5,
                 *, size: str = "small", seed: int = 0) -> None:
        if size not in PRESETS:
            raise ParameterError(f"unknown size {size!r}; choose one of {', '.join(PRESETS)}", parameter="size")
        _check_variants(n_variants, _MAX_VARIANTS)
        base = SimConfig.preset(size, seed=seed, n_context_features=n_context_features,
                                n_variant_features=n_variant_features)
        if n_variants is not None and n_variants > base.max_variants:
            base = base.replace(max_variants=n_variants)
        self._setup(build_world(base), n_variants, seed)

    @classmethod
    def from_service(cls, service: StreamingService, n_variants: int | None = 10, seed: int | None = None
                     ) -> ArtworkEnvironment:
        """The environment over an existing :class:`StreamingService`'s members, titles and artwork.

        Parameters
        ----------
        service
            The simulated service whose world is shown.
        n_variants
            As for the constructor; at most the service's ``max_variants``.
        seed
            Seed of the impressions and outcomes; default the service's seed.

        Raises
        ------
        ParameterError
            Not a service, or a bad ``n_variants`` or ``seed``.
        """
        world = getattr(service, "_world", None)
        if not isinstance(world, World):
            raise ParameterError(f"from_service takes a StreamingService, not {type(service).__name__}",
                                 parameter="service")
        env = cls.__new__(cls)
        env._setup(world, n_variants, world.config.seed if seed is None else seed)
        return env

    def _setup(self, world: World, n_variants: int | None, seed: int) -> None:
        limit = world.config.max_variants
        _check_variants(n_variants, limit)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ParameterError(f"seed must be a whole number >= 0, not {seed!r}", parameter="seed")
        self._world = world
        self._fixed = n_variants
        self._width = limit if n_variants is None else n_variants
        self.seed = seed
        self._rng = stream(world.config.seed, ENVIRONMENT_STREAM, seed)
        self._member_cdf = np.cumsum(world.activity)
        self._title_cdf = np.cumsum(world.popularity)
        self._fixed_best: tuple[np.ndarray, np.ndarray] | None = None

    # -- description -----------------------------------------------------------------
    @property
    def config(self) -> SimConfig:
        """The config of the simulated service behind the environment."""
        return self._world.config

    @property
    def n_context_features(self) -> int:
        return self._world.config.n_context_features

    @property
    def n_variant_features(self) -> int:
        return self._world.config.n_variant_features

    @property
    def n_variants(self) -> int:
        """Width of the variant axis (the most variants an impression can have)."""
        return self._width

    @property
    def context_feature_names(self) -> tuple[str, ...]:
        return self._world.context_feature_names

    @property
    def variant_feature_names(self) -> tuple[str, ...]:
        return self._world.variant_feature_names

    def __repr__(self) -> str:
        c = self._world.config
        variants = "own" if self._fixed is None else self._fixed
        return (f"ArtworkEnvironment({c.n_members} members, {c.n_titles} titles, "
                f"n_context_features={c.n_context_features}, n_variants={variants}, "
                f"n_variant_features={c.n_variant_features}, seed={self.seed})")

    # -- impressions ---------------------------------------------------------------------
    def sample(self, n: int) -> Impressions:
        """``n`` impressions: members in proportion to their activity, titles to their popularity.

        Successive calls continue one seeded stream, so the same seed and calls give the same batches.

        Parameters
        ----------
        n
            Number of impressions.

        Returns
        -------
        Impressions
            The batch, with the outcome noise that fixes its rewards.

        Raises
        ------
        ParameterError
            ``n`` is not a whole number >= 1.
        """
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ParameterError(f"n must be a whole number >= 1, not {n!r}", parameter="n")
        members = np.minimum(np.searchsorted(self._member_cdf, self._rng.random(n) * self._member_cdf[-1],
                                             side="right"), len(self._member_cdf) - 1)
        titles = np.minimum(np.searchsorted(self._title_cdf, self._rng.random(n) * self._title_cdf[-1],
                                            side="right"), len(self._title_cdf) - 1)
        return self._impressions(members, titles)

    def impressions(self, member_ids: np.ndarray, title_ids: np.ndarray) -> Impressions:
        """Impressions of given (member, title) pairs, with outcome noise from the environment's stream.

        Parameters
        ----------
        member_ids, title_ids
            Equal-length sequences of member and title ids (0-based).

        Returns
        -------
        Impressions
            One impression per pair, in order.

        Raises
        ------
        ParameterError
            Ids that are not whole numbers of known members or titles, or lengths that differ.
        """
        members = check_ids(member_ids, self._world.config.n_members, "member_ids")
        titles = check_ids(title_ids, self._world.config.n_titles, "title_ids")
        if len(members) != len(titles):
            raise ParameterError(f"title_ids has {len(titles)} entries, member_ids has {len(members)}",
                                 parameter="title_ids")
        return self._impressions(members, titles)

    def _impressions(self, members: np.ndarray, titles: np.ndarray) -> Impressions:
        world = self._world
        features = world.variant_features[titles, : self._width]
        mask = None
        if self._fixed is None:
            mask = np.arange(self._width) < world.n_variants[titles][:, None]
            features = np.where(mask[..., None], features, 0.0)
        return Impressions(member_ids=members.astype(np.int64), title_ids=titles.astype(np.int64),
                           context=world.context[members], variant_features=features, mask=mask,
                           noise=self._rng.random(len(members)))

    # -- the truth -----------------------------------------------------------------------
    def play_probability(self, impressions: Impressions, actions: np.ndarray | None = None) -> np.ndarray:
        """The true play probability of every variant, or of the chosen ones.

        Parameters
        ----------
        impressions
            A batch from this environment.
        actions
            Optional ``(n,)`` variant positions, one per impression.

        Returns
        -------
        numpy.ndarray
            ``(n, n_variants)`` float64 probabilities (0 for variants a title
            does not have), or ``(n,)`` for the chosen ``actions``.

        Raises
        ------
        ParameterError
            ``actions`` of the wrong length, out of range, or naming a masked variant.
        """
        world = self._world
        logit = world.title_base[impressions.title_ids][:, None] + np.einsum(
            "nvf,nf->nv", impressions.variant_features, world.artwork_weights[impressions.member_ids])
        p = 1.0 / (1.0 + np.exp(-logit))
        if impressions.mask is not None:
            p = np.where(impressions.mask, p, 0.0)
        if actions is None:
            return p
        chosen = self._actions(impressions, actions)
        return np.take_along_axis(p, chosen[:, None], axis=1)[:, 0]

    def reward(self, impressions: Impressions, actions: np.ndarray) -> np.ndarray:
        """Sampled rewards: did the member play the title when shown the variants ``actions``?

        Parameters
        ----------
        impressions
            A batch from this environment; its ``noise`` fixes the outcomes.
        actions
            ``(n,)`` variant positions, one per impression.

        Returns
        -------
        numpy.ndarray
            ``(n,)`` float64, 1.0 for a play and 0.0 otherwise; Bernoulli draws
            of :meth:`play_probability`.

        Raises
        ------
        ParameterError
            Bad ``actions`` (see :meth:`play_probability`).
        """
        return (impressions.noise < self.play_probability(impressions, actions)).astype(np.float64)

    def oracle(self, impressions: Impressions) -> tuple[np.ndarray, np.ndarray]:
        """The oracle: the best variant of each impression and its play probability.

        Returns
        -------
        tuple of numpy.ndarray
            ``(n,)`` int64 best variant positions and ``(n,)`` float64 their play
            probabilities (the oracle's expected reward, for regret).
        """
        p = self.play_probability(impressions)
        best = np.argmax(p, axis=1)
        return best, np.take_along_axis(p, best[:, None], axis=1)[:, 0]

    def regret(self, impressions: Impressions, actions: np.ndarray) -> np.ndarray:
        """Expected regret of ``actions``: the oracle's play probability minus theirs.

        Returns
        -------
        numpy.ndarray
            ``(n,)`` float64, never negative.

        Raises
        ------
        ParameterError
            Bad ``actions`` (see :meth:`play_probability`).
        """
        p = self.play_probability(impressions)
        chosen = np.take_along_axis(p, self._actions(impressions, actions)[:, None], axis=1)[:, 0]
        return p.max(axis=1) - chosen

    def best_fixed_variants(self, impressions: Impressions) -> tuple[np.ndarray, np.ndarray]:
        """The best context-free choice: each title's single best variant over the member population.

        The population is weighted by activity, as impressions are (a sample of
        4,096 members on services larger than that). A policy that ignores the
        context can do no better on average.

        Returns
        -------
        tuple of numpy.ndarray
            ``(n,)`` int64 the variant chosen for each impression's title and
            ``(n,)`` float64 its true play probability there.
        """
        best = self._title_best()
        actions = best[impressions.title_ids]
        return actions, self.play_probability(impressions, actions)

    def _title_best(self) -> np.ndarray:
        if self._fixed_best is None:
            world = self._world
            n_members = world.config.n_members
            if n_members <= _POPULATION:
                members, weight = np.arange(n_members), world.activity / world.activity.sum()
            else:
                rng = stream(world.config.seed, ENVIRONMENT_STREAM, 2**32)
                members = np.searchsorted(self._member_cdf, rng.random(_POPULATION) * self._member_cdf[-1],
                                          side="right").clip(max=n_members - 1)
                weight = np.full(_POPULATION, 1.0 / _POPULATION)
            weights = world.artwork_weights[members]  # (p, f)
            best = np.empty(world.config.n_titles, np.int64)
            value = np.empty(world.config.n_titles)
            step = max(1, 2**22 // (len(members) * self._width))
            for t0 in range(0, world.config.n_titles, step):
                z = world.variant_features[t0:t0 + step, : self._width]  # (t, v, f)
                logit = world.title_base[t0:t0 + step, None, None] + np.einsum("tvf,pf->tvp", z, weights)
                mean = (1.0 / (1.0 + np.exp(-logit))) @ weight  # (t, v)
                if self._fixed is None:
                    mean = np.where(np.arange(self._width) < world.n_variants[t0:t0 + step, None], mean, -1.0)
                best[t0:t0 + step] = mean.argmax(axis=1)
                value[t0:t0 + step] = mean.max(axis=1)
            self._fixed_best = (best, value)
        return self._fixed_best[0]

    def _actions(self, impressions: Impressions, actions: np.ndarray) -> np.ndarray:
        chosen = np.asarray(actions)
        if chosen.shape != (len(impressions),) or not np.issubdtype(chosen.dtype, np.integer):
            raise ParameterError(f"actions must be {len(impressions)} whole numbers, one per impression",
                                 parameter="actions")
        width = impressions.variant_features.shape[1]
        if len(chosen) and (chosen.min() < 0 or chosen.max() >= width):
            raise ParameterError(f"actions must lie in 0..{width - 1}", parameter="actions")
        if impressions.mask is not None and not impressions.mask[np.arange(len(chosen)), chosen].all():
            raise ParameterError("actions name a variant the title does not have (see Impressions.mask)",
                                 parameter="actions")
        return chosen.astype(np.int64)


def _check_variants(n_variants: object, limit: int) -> None:
    ok = n_variants is None or (isinstance(n_variants, int) and not isinstance(n_variants, bool)
                                and 2 <= n_variants <= limit)
    if not ok:
        raise ParameterError(f"n_variants must be None or a whole number between 2 and {limit}, "
                             f"not {n_variants!r}", parameter="n_variants")
