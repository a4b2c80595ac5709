"""``SimConfig``: every knob of the simulated streaming service, validated, plus named presets.

A config is a frozen dataclass: two services built from equal configs are
identical, byte for byte. Construction checks every field and a bad value
raises :class:`~matinee.errors.ParameterError` naming the field.

Presets (members x titles, simulated days, mean sessions per member):

========  ===============  ====  ========
name      size             days  sessions
========  ===============  ====  ========
tiny      50 x 40            90         6
small     1,000 x 500       180        12
medium    10,000 x 3,000    365        16
large     100,000 x 20,000  365        20
========  ===============  ====  ========
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from matinee.errors import ParameterError

GENRES: tuple[str, ...] = (
    "drama", "comedy", "action", "thriller", "documentary", "romance",
    "crime", "sci-fi", "horror", "animation", "fantasy", "family",
)
"""The default genre names, most common first."""

#: 2024-01-01T00:00:00Z, the default start of simulated time (seconds since the epoch).
DEFAULT_START = 1_704_067_200


@dataclass(frozen=True)
class SimConfig:
    """The settings of a simulated streaming service.

    Build one from a preset with :meth:`preset` and change what you need; every
    field is checked on construction.

    Parameters
    ----------
    n_members, n_titles
        Catalogue size: members and titles.
    seed
        Seed of every random draw; equal configs give identical services.
    n_factors
        Dimension of the latent taste space.
    genres
        Genre names; each title has 1 to 3 of them, earlier names more often.
    days, start
        Length of simulated time in days and its start (seconds since the epoch).
    launch_share
        Share of titles already released at ``start``; the rest are released
        uniformly over the simulated days.
    sessions_per_member, plays_per_session
        Mean sessions per member over the whole period and mean plays per session.
    activity_sigma
        Spread (log-normal sigma) of member activity: a few members watch a lot.
    popularity_exponent
        Zipf exponent of title popularity: the title of popularity rank ``r`` is
        shown in proportion to ``r ** -popularity_exponent``.
    taste_scale
        Standard deviation of the taste part of the choice logit, which sets how
        much taste matters against popularity.
    recency_boost, recency_days
        A new title is shown ``1 + recency_boost`` times as often as its
        popularity alone implies, decaying with time constant ``recency_days``.
    page_size
        Titles on the page a member chooses from in a session.
    replay_rate
        Chance that a member who picks a title already played re-plays it rather
        than choosing another.
    completion_bias, completion_slope
        Logit of finishing a play: ``bias + slope * taste / taste_scale``.
    min_variants, max_variants
        Each title has between these many artwork variants.
    n_context_features, n_variant_features
        Observable features per member (the bandit context) and per variant.
    artwork_base_rate
        Play probability of an impression of a title of median popularity before
        artwork effects.
    artwork_effect
        Standard deviation of a member's weight on each variant feature, in logits
        per unit of feature.
    artwork_unexplained
        Share of the variance of members' artwork weights not explained by their
        observable features.

    Examples
    --------
    >>> from matinee.apps.sim import SimConfig
    >>> config = SimConfig.preset("tiny", seed=3)
    >>> config.n_members, config.n_titles, config.seed
    (50, 40, 3)
    >>> SimConfig(n_titles=0)
    Traceback (most recent call last):
    ...
    matinee.errors.ParameterError: SimConfig.n_titles must be a whole number >= 1, not 0
    """

    n_members: int = 1_000
    n_titles: int = 500
    seed: int = 0
    n_factors: int = 16
    genres: tuple[str, ...] = GENRES
    days: int = 180
    start: int = DEFAULT_START
    launch_share: float = 0.4
    sessions_per_member: float = 12.0
    plays_per_session: float = 2.5
    activity_sigma: float = 1.0
    popularity_exponent: float = 1.0
    taste_scale: float = 1.5
    recency_boost: float = 2.0
    recency_days: float = 30.0
    page_size: int = 32
    replay_rate: float = 0.05
    completion_bias: float = 0.0
    completion_slope: float = 1.0
    min_variants: int = 3
    max_variants: int = 10
    n_context_features: int = 20
    n_variant_features: int = 5
    artwork_base_rate: float = 0.1
    artwork_effect: float = 2.0
    artwork_unexplained: float = 0.01

    def __post_init__(self) -> None:
        for name, low, high in _INTS:
            _check_int(name, getattr(self, name), low, high)
        for name, lowest, highest, open_low in _FLOATS:
            _check_float(name, getattr(self, name), lowest, highest, open_low)
        _check_genres(self.genres)
        if self.min_variants > self.max_variants:
            raise ParameterError(
                f"SimConfig.min_variants ({self.min_variants}) must not exceed max_variants ({self.max_variants})",
                parameter="min_variants",
            )
        if self.days / self.recency_days > 500:
            raise ParameterError(
                f"SimConfig.recency_days must be at least days / 500 = {self.days / 500:g}, not {self.recency_days!r}",
                parameter="recency_days",
            )
        if self.plays_per_session > self.page_size / 2:
            raise ParameterError(
                f"SimConfig.plays_per_session must be at most page_size / 2 = {self.page_size / 2:g}, "
                f"not {self.plays_per_session!r}",
                parameter="plays_per_session",
            )

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> SimConfig:
        """The named preset (``tiny``, ``small``, ``medium``, ``large``) with ``overrides`` applied.

        Raises
        ------
        ParameterError
            An unknown preset name, or an unknown or invalid override.

        Examples
        --------
        >>> from matinee.apps.sim import SimConfig
        >>> SimConfig.preset("large").n_members
        100000
        """
        if name not in _PRESET_FIELDS:
            raise ParameterError(f"unknown preset {name!r}; choose one of {', '.join(_PRESET_FIELDS)}",
                                 parameter="preset")
        return cls(**_PRESET_FIELDS[name]).replace(**overrides)

    def replace(self, **overrides: Any) -> SimConfig:
        """A copy with some fields changed (and validated).

        Raises
        ------
        ParameterError
            An override that is not a field, or an invalid value.

        Examples
        --------
        >>> from matinee.apps.sim import SimConfig
        >>> SimConfig.preset("tiny").replace(days=30).days
        30
        """
        fields = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ParameterError(f"SimConfig has no field {unknown[0]!r}", parameter=unknown[0])
        return dataclasses.replace(self, **overrides)

    @property
    def end(self) -> int:
        """The end of simulated time, in seconds since the epoch."""
        return self.start + self.days * 86_400


_PRESET_FIELDS: dict[str, dict[str, Any]] = {
    "tiny": {"n_members": 50, "n_titles": 40, "n_factors": 8, "days": 90, "sessions_per_member": 6.0},
    "small": {"n_members": 1_000, "n_titles": 500, "days": 180, "sessions_per_member": 12.0},
    "medium": {"n_members": 10_000, "n_titles": 3_000, "days": 365, "sessions_per_member": 16.0},
    "large": {"n_members": 100_000, "n_titles": 20_000, "days": 365, "sessions_per_member": 20.0},
}

# (field, minimum, maximum)
_INTS: tuple[tuple[str, int, int], ...] = (
    ("n_members", 1, 50_000_000),
    ("n_titles", 1, 5_000_000),
    ("seed", 0, 2**63 - 1),
    ("n_factors", 1, 512),
    ("days", 1, 36_500),
    ("start", 0, 2**62),
    ("page_size", 2, 1_000),
    ("min_variants", 1, 64),
    ("max_variants", 1, 64),
    ("n_context_features", 1, 1_000),
    ("n_variant_features", 1, 64),
)

# (field, minimum, maximum, whether the minimum itself is excluded)
_FLOATS: tuple[tuple[str, float, float, bool], ...] = (
    ("launch_share", 0.0, 1.0, True),
    ("sessions_per_member", 0.0, 10_000.0, True),
    ("plays_per_session", 1.0, 500.0, False),
    ("activity_sigma", 0.0, 5.0, False),
    ("popularity_exponent", 0.0, 5.0, False),
    ("taste_scale", 0.0, 20.0, False),
    ("recency_boost", 0.0, 1_000.0, False),
    ("recency_days", 0.0, 36_500.0, True),
    ("replay_rate", 0.0, 1.0, False),
    ("completion_bias", -20.0, 20.0, False),
    ("completion_slope", -20.0, 20.0, False),
    ("artwork_base_rate", 0.0, 1.0, True),
    ("artwork_effect", 0.0, 20.0, False),
    ("artwork_unexplained", 0.0, 1.0, False),
)

def _check_int(name: str, value: Any, low: int, high: int) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    if not ok:
        bound = f">= {low}" if high >= 1_000_000 else f"between {low} and {high}"
        raise ParameterError(f"SimConfig.{name} must be a whole number {bound}, not {value!r}", parameter=name)


def _check_float(name: str, value: Any, low: float, high: float, open_low: bool) -> None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not number or value > high or value < low or (open_low and value == low):
        lower = f"> {low:g}" if open_low else f">= {low:g}"
        raise ParameterError(f"SimConfig.{name} must be a number {lower} and <= {high:g}, not {value!r}",
                             parameter=name)


def _check_genres(genres: Any) -> None:
    if (not isinstance(genres, tuple) or not genres
            or not all(isinstance(g, str) and g.strip() for g in genres)):
        raise ParameterError(f"SimConfig.genres must be a non-empty tuple of names, not {genres!r}",
                             parameter="genres")
    if len(set(genres)) != len(genres):
        duplicate = next(g for g in genres if genres.count(g) > 1)
        raise ParameterError(f"SimConfig.genres names {duplicate!r} twice", parameter="genres")


PRESETS: Mapping[str, SimConfig] = MappingProxyType({name: SimConfig(**f) for name, f in _PRESET_FIELDS.items()})
"""The named presets, smallest first, each with seed 0."""
