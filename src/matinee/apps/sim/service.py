"""``StreamingService``: a seeded simulated streaming service with a known ground truth."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from matinee.apps.sim.artwork import ArtworkEnvironment
from matinee.apps.sim.config import SimConfig
from matinee.apps.sim.sessions import Plays, generate_plays
from matinee.apps.sim.world import World, build_world, check_ids
from matinee.errors import ParameterError

_RANKING_CELLS = 1 << 22  # users x items scored at once by ideal_ranking


class StreamingService:
    """A simulated streaming service: members, titles, artwork and plays over time, with the truth known.

    Members have latent tastes and long-tailed activity; titles have 1-3 named
    genres, latent factors, long-tailed (Zipf) popularity, release dates spread
    over the simulated period, display names and 3-10 artwork variants. In each
    session a member chooses among released titles by a multinomial logit on
    ``taste . factors + log popularity + log recency boost`` with Gumbel noise,
    and rarely re-plays a title (see :mod:`matinee.apps.sim.sessions`). The same
    config always gives the same service, byte for byte; nothing is drawn until
    it is asked for.

    Parameters
    ----------
    config
        A :class:`SimConfig`, or the name of a preset (``tiny``, ``small``,
        ``medium``, ``large``).
    **overrides
        Config fields to change, e.g. ``seed=3`` or ``n_members=500``.

    Raises
    ------
    ParameterError
        An unknown preset or field, or an invalid value (the message names the field).

    Examples
    --------
    >>> from matinee.apps.sim import StreamingService
    >>> service = StreamingService("tiny", seed=1)
    >>> plays = service.interactions()
    >>> list(plays.columns)
    ['user_id', 'item_id', 'timestamp', 'event', 'weight']
    >>> titles = service.titles()
    >>> released = titles.set_index("item_id")["release_timestamp"]
    >>> bool((plays["timestamp"].to_numpy() >= released[plays["item_id"]].to_numpy()).all())
    True
    >>> service.ideal_ranking([0, 1], k=3).shape
    (2, 3)
    """

    def __init__(self, config: SimConfig | str = "small", **overrides: Any) -> None:
        if isinstance(config, str):
            config = SimConfig.preset(config, **overrides)
        elif isinstance(config, SimConfig):
            config = config.replace(**overrides) if overrides else config
        else:
            raise ParameterError(f"config must be a SimConfig or a preset name, not {type(config).__name__}",
                                 parameter="config")
        self.config = config

    def __repr__(self) -> str:
        c = self.config
        return f"StreamingService({c.n_members} members, {c.n_titles} titles, {c.days} days, seed={c.seed})"

    @cached_property
    def _world(self) -> World:
        return build_world(self.config)

    @cached_property
    def _plays(self) -> Plays:
        return generate_plays(self._world)

    # -- the catalogue and the members -------------------------------------------------
    @property
    def n_members(self) -> int:
        return self.config.n_members

    @property
    def n_titles(self) -> int:
        return self.config.n_titles

    @property
    def genres(self) -> tuple[str, ...]:
        return self.config.genres

    def titles(self) -> pd.DataFrame:
        """Item metadata, one row per title, ready for ``Interactions.from_frame(..., item_metadata=)``.

        Returns
        -------
        pandas.DataFrame
            Columns: ``item_id`` (int64), ``title`` (display name with its
            year), ``genres`` (list of 1-3 names), ``release_timestamp`` (int64
            seconds; titles released before ``config.start`` form the launch
            catalogue), ``popularity`` (float64, summing to 1: the share of
            exposure before recency) and ``n_variants`` (its artwork variants).
        """
        w = self._world
        names = np.asarray(self.config.genres, dtype=object)
        genres = [names[row[row >= 0]].tolist() for row in w.title_genres]
        return pd.DataFrame({
            "item_id": np.arange(self.n_titles, dtype=np.int64),
            "title": w.names,
            "genres": pd.Series(genres, dtype=object),
            "release_timestamp": w.release,
            "popularity": w.popularity,
            "n_variants": w.n_variants,
        })

    def members(self) -> pd.DataFrame:
        """The members.

        Returns
        -------
        pandas.DataFrame
            One row per member: ``user_id``, ``activity`` (relative, mean about 1,
            long-tailed) and ``favourite_genre``.
        """
        w = self._world
        return pd.DataFrame({
            "user_id": np.arange(self.n_members, dtype=np.int64),
            "activity": w.activity,
            "favourite_genre": np.asarray(self.config.genres, dtype=object)[w.genre_preference.argmax(axis=1)],
        })

    def member_features(self, user_ids: Any = None) -> np.ndarray:
        """Observable member features (the bandit context).

        They are a noisy view of the member's taste and explain most of how the
        member values artwork features.

        Parameters
        ----------
        user_ids
            Member ids; default all.

        Returns
        -------
        numpy.ndarray
            ``(n, n_context_features)`` float64, standardised.

        Raises
        ------
        ParameterError
            Unknown ids.
        """
        w = self._world
        return w.context if user_ids is None else w.context[check_ids(user_ids, self.n_members, "user_ids")]

    def artwork(self, item_ids: Any = None) -> pd.DataFrame:
        """The titles' artwork variants.

        Parameters
        ----------
        item_ids
            Title ids; default all.

        Returns
        -------
        pandas.DataFrame
            One row per variant: ``item_id``, ``variant`` (numbered from 0 within
            the title) and one column per feature (see ``VARIANT_FEATURES``),
            centred in (-0.5, 0.5) with 0 a middling look.

        Raises
        ------
        ParameterError
            Unknown ids.
        """
        w = self._world
        items = np.arange(self.n_titles) if item_ids is None else check_ids(item_ids, self.n_titles, "item_ids")
        counts = w.n_variants[items]
        rows = np.repeat(items, counts)
        variant = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        features = w.variant_features[rows, variant]
        frame = pd.DataFrame({"item_id": rows.astype(np.int64), "variant": variant.astype(np.int64)})
        for j, name in enumerate(w.variant_feature_names):
            frame[name] = features[:, j]
        return frame

    def artwork_environment(self, n_variants: int | None = 10, seed: int | None = None) -> ArtworkEnvironment:
        """A contextual-bandit environment over this service's members, titles and artwork.

        Parameters
        ----------
        n_variants
            Candidate variants per impression, or ``None`` for each title's own
            (see :class:`ArtworkEnvironment`).
        seed
            Seed of the impressions and outcomes; default the service's seed.

        Returns
        -------
        ArtworkEnvironment
        """
        return ArtworkEnvironment.from_service(self, n_variants=n_variants, seed=seed)

    # -- behaviour ----------------------------------------------------------------------
    def interactions(self) -> pd.DataFrame:
        """The play log in matinee's interaction schema, sorted by time.

        Returns
        -------
        pandas.DataFrame
            Columns: ``user_id`` and ``item_id`` (int64), ``timestamp`` (int64
            seconds since the epoch), ``event`` (categorical: ``"play"`` for a
            partial play, ``"complete"`` when the member finished the title) and
            ``weight`` (float32: 1.0 for a completed play, else the fraction
            watched). Generated on first use and kept; each call returns a new
            frame.
        """
        p = self._plays
        return pd.DataFrame({
            "user_id": p.users.astype(np.int64),
            "item_id": p.items.astype(np.int64),
            "timestamp": p.timestamps,
            "event": pd.Categorical.from_codes(p.complete.astype(np.int8), categories=["play", "complete"]),
            "weight": p.weights,
        })

    # -- the ground truth ------------------------------------------------------------------
    def true_preference(self, user_ids: Any, item_ids: Any = None, *, at: float | None = None) -> np.ndarray:
        """The true affinity of members for titles.

        It is the systematic part of the logit that plays are drawn from,
        ``taste . factors + log popularity`` (see :mod:`matinee.apps.sim.sessions`):
        the higher it is, the likelier the member plays the title when it is
        available. With ``at`` (seconds since the epoch), the recency boost at
        that time is added and titles not yet released get ``-inf``.

        Parameters
        ----------
        user_ids
            Member ids (0-based whole numbers).
        item_ids
            Title ids; default all, in id order.
        at
            A time at which to evaluate availability and recency.

        Returns
        -------
        numpy.ndarray
            ``(len(user_ids), len(item_ids))`` float32, in logits.

        Raises
        ------
        ParameterError
            Unknown ids (the message names ``user_ids`` or ``item_ids``), or a non-finite ``at``.

        Examples
        --------
        >>> from matinee.apps.sim import StreamingService
        >>> service = StreamingService("tiny")
        >>> service.true_preference([0, 1, 2]).shape
        (3, 40)
        """
        w = self._world
        users = check_ids(np.atleast_1d(user_ids), self.n_members, "user_ids")
        items = np.arange(self.n_titles) if item_ids is None else check_ids(item_ids, self.n_titles, "item_ids")
        pref = w.taste[users] @ w.factors[items].T + np.log(w.popularity[items]).astype(np.float32)
        if at is not None:
            if not isinstance(at, (int, float, np.integer, np.floating)) or not np.isfinite(at):
                raise ParameterError(f"at must be a time in seconds, not {at!r}", parameter="at")
            age = float(at) - w.release[items]
            tau = self.config.recency_days * 86_400.0
            boost = np.log1p(self.config.recency_boost * np.exp(-np.maximum(age, 0.0) / tau))
            pref = pref + np.where(age >= 0, boost, -np.inf).astype(np.float32)
        return pref.astype(np.float32, copy=False)

    def ideal_ranking(self, user_ids: Any, k: int = 10, *, item_ids: Any = None, at: float | None = None
                      ) -> np.ndarray:
        """Each member's ideal ranking: the ``k`` titles of highest true preference, best first.

        Users are scored in chunks, so memory stays bounded on large catalogues.

        Parameters
        ----------
        user_ids
            Member ids.
        k
            Length of each ranking (at most the number of candidates).
        item_ids
            Candidate titles; default all. Ties go to the earlier candidate.
        at
            Rank only titles released by then (see :meth:`true_preference`).

        Returns
        -------
        numpy.ndarray
            ``(len(user_ids), k)`` int64 item ids.

        Raises
        ------
        ParameterError
            ``k`` is not a whole number >= 1, or unknown ids.

        Examples
        --------
        >>> from matinee.apps.sim import StreamingService
        >>> service = StreamingService("tiny")
        >>> top = service.ideal_ranking([4], k=5)
        >>> truth = service.true_preference([4])[0]
        >>> bool(truth[top[0, 0]] == truth.max())
        True
        """
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ParameterError(f"k must be a whole number >= 1, not {k!r}", parameter="k")
        users = check_ids(np.atleast_1d(user_ids), self.n_members, "user_ids")
        items = np.arange(self.n_titles) if item_ids is None else check_ids(item_ids, self.n_titles, "item_ids")
        k = min(int(k), len(items))
        out = np.empty((len(users), k), np.int64)
        step = max(1, _RANKING_CELLS // max(1, len(items)))
        for u0 in range(0, len(users), step):
            scores = self.true_preference(users[u0:u0 + step], items, at=at)
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            out[u0:u0 + step] = items[order]
        return out
