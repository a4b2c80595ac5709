"""The static world of a simulated service: members, titles, genres, tastes, popularity, artwork.

Everything here is drawn once from the config's seed. Each part has its own
random stream, so that, for instance, adding members leaves the titles as they
were. Latent structure:

* genre embeddings ``E`` (genres x factors);
* a title's factors ``v``: the mean embedding of its 1-3 genres plus an
  idiosyncratic part;
* a member's taste ``u``: their genre preferences (a Dirichlet draw) mapped
  through ``E``, plus an idiosyncratic part, scaled so that the taste term
  ``u . v`` has standard deviation ``taste_scale`` over members and titles;
* popularity: Zipf weights over a random order of titles;
* observable member features ``x`` (the bandit context): a noisy linear view
  of the member's taste, standardised;
* artwork: every title has a pool of ``max_variants`` variants with centred
  features in (-0.5, 0.5) (the first ``n_variants`` of them are the title's own); member
  ``m`` weighs the features by ``w_m = effect * (a + sqrt(1 - r) * x_m B +
  sqrt(r) * e_m)`` with ``r = artwork_unexplained``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from matinee.apps.sim.config import SimConfig
from matinee.errors import ParameterError

VARIANT_FEATURES: tuple[str, ...] = ("tone", "featured_character", "genre_cue", "brightness", "text_size")
"""Names of the first artwork variant features; further ones are ``feature_5``, ``feature_6``, ..."""

# One random stream per part of the world (see ``stream``).
GENRE_STREAM, TITLE_STREAM, MEMBER_STREAM, CALIBRATION_STREAM = 0, 1, 2, 3
ARTWORK_STREAM, VARIANT_STREAM, WEIGHT_STREAM, SESSION_STREAM, ENVIRONMENT_STREAM = 4, 5, 6, 7, 8

_LAUNCH_SPREAD = 5 * 365 * 86_400  # launch titles were released in the five years before start
_MAX_GENRES = 3
_GENRE_COUNT_P = np.array([0.45, 0.4, 0.15])


def stream(seed: int, part: int, *more: int) -> np.random.Generator:
    """The random generator of one part of the world (independent of every other part)."""
    return np.random.default_rng([seed, part, *more])


@dataclass(frozen=True, eq=False)
class World:
    """The drawn world; arrays are indexed by member id and title id (both 0-based)."""

    config: SimConfig
    genre_embeddings: np.ndarray  # (n_genres, n_factors) float64
    taste: np.ndarray  # (n_members, n_factors) float32, scaled: taste @ factors.T is the taste logit
    factors: np.ndarray  # (n_titles, n_factors) float32
    title_genres: np.ndarray  # (n_titles, 3) int16, padded with -1
    popularity: np.ndarray  # (n_titles,) float64, sums to 1
    release: np.ndarray  # (n_titles,) int64 seconds
    names: np.ndarray  # (n_titles,) object (str)
    genre_preference: np.ndarray  # (n_members, n_genres) float64 rows sum to 1
    activity: np.ndarray  # (n_members,) float64, mean about 1
    context: np.ndarray  # (n_members, n_context_features) float64
    explained_weights: np.ndarray  # (n_members, n_variant_features): effect * (a + sqrt(1-r) x B)
    artwork_weights: np.ndarray  # (n_members, n_variant_features): explained + the unexplained part
    n_variants: np.ndarray  # (n_titles,) int64
    variant_features: np.ndarray  # (n_titles, max_variants, n_variant_features) float64 in (-0.5, 0.5)
    title_base: np.ndarray  # (n_titles,) float64, logit of the play probability before artwork

    @property
    def variant_feature_names(self) -> tuple[str, ...]:
        f = self.config.n_variant_features
        return VARIANT_FEATURES[:f] + tuple(f"feature_{i}" for i in range(len(VARIANT_FEATURES), f))

    @property
    def context_feature_names(self) -> tuple[str, ...]:
        return tuple(f"ctx_{i}" for i in range(self.config.n_context_features))


def check_ids(values: object, n: int, name: str) -> np.ndarray:
    """``values`` as an int64 array of ids in ``0 .. n - 1``; anything else raises naming ``name``."""
    ids = np.asarray(values)
    if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
        raise ParameterError(f"{name} must be a 1-d sequence of whole numbers", parameter=name)
    ids = ids.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= n):
        bad = ids[(ids < 0) | (ids >= n)][0]
        raise ParameterError(f"{name} holds {bad}, outside 0..{n - 1}", parameter=name)
    return ids


def build_world(config: SimConfig) -> World:
    """Draw the world described by ``config``."""
    seed = config.seed
    n_genres, d = len(config.genres), config.n_factors
    embeddings = stream(seed, GENRE_STREAM).normal(0.0, 1.0 / np.sqrt(d), (n_genres, d))
    prevalence = 1.0 / np.arange(1, n_genres + 1) ** 0.6
    prevalence /= prevalence.sum()

    rng = stream(seed, TITLE_STREAM)
    title_genres = _title_genres(rng, config.n_titles, prevalence)
    raw_factors = _title_factors(rng, title_genres, embeddings)
    rank = rng.permutation(config.n_titles)
    popularity = (rank + 1.0) ** -config.popularity_exponent
    popularity /= popularity.sum()
    release = _release_times(rng, config)
    names = _names(stream(seed, TITLE_STREAM, 1), release)

    rng = stream(seed, MEMBER_STREAM)
    preference = rng.dirichlet(np.full(n_genres, 0.5), config.n_members) if n_genres > 1 \
        else np.ones((config.n_members, 1))
    raw_taste = (preference - 1.0 / n_genres) @ embeddings * np.sqrt(n_genres) \
        + 0.5 * rng.normal(0.0, 1.0 / np.sqrt(d), (config.n_members, d))
    activity = rng.lognormal(0.0, config.activity_sigma, config.n_members)
    activity = np.minimum(activity / activity.mean(), 25.0)
    context = _context(rng, raw_taste, config.n_context_features)

    taste, factors = _calibrate(raw_taste, raw_factors, config)
    explained, weights = _artwork_weights(context, config)
    n_variants, variant_features = _variants(config)
    log_pop = np.log(popularity)
    spread = log_pop.std() or 1.0
    title_base = (np.log(config.artwork_base_rate) - np.log1p(-config.artwork_base_rate)
                  + 0.5 * np.clip((log_pop - np.median(log_pop)) / spread, -2.0, 2.0))
    return World(
        config=config, genre_embeddings=embeddings, taste=taste, factors=factors, title_genres=title_genres,
        popularity=popularity, release=release, names=names, genre_preference=preference, activity=activity,
        context=context, explained_weights=explained, artwork_weights=weights, n_variants=n_variants,
        variant_features=variant_features, title_base=title_base,
    )


def _title_genres(rng: np.random.Generator, n: int, prevalence: np.ndarray) -> np.ndarray:
    n_genres = len(prevalence)
    p = _GENRE_COUNT_P[: min(_MAX_GENRES, n_genres)]
    counts = rng.choice(len(p), size=n, p=p / p.sum()) + 1
    # Gumbel top-k: genres drawn without replacement in proportion to their prevalence.
    keys = np.log(prevalence) + rng.gumbel(size=(n, n_genres))
    order = np.argsort(-keys, axis=1, kind="stable")[:, :_MAX_GENRES]
    out = np.full((n, _MAX_GENRES), -1, np.int16)
    width = order.shape[1]
    keep = np.arange(width) < counts[:, None]
    out[:, :width][keep] = order[keep]
    return out


def _title_factors(rng: np.random.Generator, genres: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    n, d = len(genres), embeddings.shape[1]
    valid = genres >= 0
    summed = np.where(valid[..., None], embeddings[np.maximum(genres, 0)], 0.0).sum(axis=1)
    return summed / valid.sum(axis=1, keepdims=True) + 0.7 * rng.normal(0.0, 1.0 / np.sqrt(d), (n, d))


def _release_times(rng: np.random.Generator, config: SimConfig) -> np.ndarray:
    n = config.n_titles
    n_launch = max(1, round(config.launch_share * n))
    launch = np.zeros(n, bool)
    launch[rng.permutation(n)[:n_launch]] = True
    before = rng.integers(1, _LAUNCH_SPREAD, n)
    after = rng.integers(0, config.days * 86_400, n)
    return np.where(launch, config.start - before, config.start + after).astype(np.int64)


def _context(rng: np.random.Generator, raw_taste: np.ndarray, n_features: int) -> np.ndarray:
    d = raw_taste.shape[1]
    projection = rng.normal(0.0, 1.0, (d, n_features))
    signal = raw_taste / (raw_taste.std() or 1.0) @ projection / np.sqrt(d)
    x = 0.6 * signal + 0.8 * rng.normal(0.0, 1.0, (len(raw_taste), n_features))
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


def _calibrate(raw_taste: np.ndarray, raw_factors: np.ndarray, config: SimConfig) -> tuple[np.ndarray, np.ndarray]:
    """Scale tastes so that the taste logit has standard deviation ``taste_scale`` over random pairs."""
    rng = stream(config.seed, CALIBRATION_STREAM)
    m = rng.integers(0, len(raw_taste), 8192)
    t = rng.integers(0, len(raw_factors), 8192)
    spread = np.einsum("nd,nd->n", raw_taste[m], raw_factors[t]).std()
    scale = config.taste_scale / spread if spread > 0 else 0.0
    return (raw_taste * scale).astype(np.float32), raw_factors.astype(np.float32)


def _artwork_weights(context: np.ndarray, config: SimConfig) -> tuple[np.ndarray, np.ndarray]:
    f, k = config.n_variant_features, config.n_context_features
    rng = stream(config.seed, ARTWORK_STREAM)
    mean = rng.normal(0.0, 0.5, f)
    mixing = rng.normal(0.0, 1.0 / np.sqrt(k), (k, f))
    r = config.artwork_unexplained
    explained = config.artwork_effect * (mean + np.sqrt(1.0 - r) * context @ mixing)
    unexplained = stream(config.seed, WEIGHT_STREAM).normal(0.0, 1.0, (len(context), f))
    return explained, explained + config.artwork_effect * np.sqrt(r) * unexplained


def _variants(config: SimConfig) -> tuple[np.ndarray, np.ndarray]:
    rng = stream(config.seed, VARIANT_STREAM)
    n, v, f = config.n_titles, config.max_variants, config.n_variant_features
    counts = rng.integers(config.min_variants, config.max_variants + 1, n)
    look = rng.normal(0.0, 0.5, (n, 1, f))  # a title's variants share a look
    features = 1.0 / (1.0 + np.exp(-(look + rng.normal(0.0, 1.0, (n, v, f))))) - 0.5
    return counts.astype(np.int64), features


_ADJECTIVES = (
    "Silent", "Crimson", "Hidden", "Broken", "Golden", "Last", "Midnight", "Wild", "Frozen", "Lost",
    "Electric", "Bitter", "Little", "Secret", "Endless", "Hollow", "Burning", "Quiet", "Velvet", "Distant",
    "Savage", "Gentle", "Iron", "Paper", "Neon", "Wicked", "Lucky", "Restless", "Final", "Northern",
    "Southern", "Glass", "Shattered", "Fading", "Rising", "Silver", "Painted", "Sleeping", "Stolen", "Empty",
    "Brave", "Dark", "Bright", "Lonely", "Scarlet", "Ancient", "Sudden", "Perfect", "Strange", "Open",
)
_NOUNS = (
    "Harbor", "River", "Kingdom", "Road", "Garden", "Signal", "Summer", "Winter", "Empire", "Island",
    "Mirror", "Station", "Valley", "Storm", "Letters", "Shadows", "Orchard", "Frontier", "Promise", "Machine",
    "Tide", "Crown", "Witness", "Horizon", "Secrets", "Fortune", "Echoes", "Lighthouse", "Circus", "Heist",
    "Detective", "Stranger", "Mountain", "Desert", "Orbit", "Hunter", "Dream", "Bridge", "Fire", "Season",
    "Voyage", "Alibi", "Canyon", "Choir", "Dynasty", "Ghost", "Jury", "Legacy", "Marathon", "Outpost",
    "Parade", "Quarry", "Refuge", "Sanctuary", "Tenant", "Vault", "Wedding", "Academy", "Border", "Comet",
)


def _names(rng: np.random.Generator, release: np.ndarray) -> np.ndarray:
    n = len(release)
    pattern = rng.integers(0, 5, n)
    adjective = rng.integers(0, len(_ADJECTIVES), n)
    first = rng.integers(0, len(_NOUNS), n)
    second = (first + rng.integers(1, len(_NOUNS), n)) % len(_NOUNS)
    years = release.astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970
    forms = (
        lambda a, x, y: f"The {a} {x}",
        lambda a, x, y: f"{a} {x}",
        lambda a, x, y: f"{x} of the {y}",
        lambda a, x, y: f"The {x}",
        lambda a, x, y: f"{x} & {y}",
    )
    base = [forms[p](_ADJECTIVES[a], _NOUNS[x], _NOUNS[y]) for p, a, x, y in
            zip(pattern.tolist(), adjective.tolist(), first.tolist(), second.tolist(), strict=True)]
    # A repeated name is a sequel: numbered in release order.
    seen: dict[str, int] = {}
    names = np.empty(n, dtype=object)
    for i in np.argsort(release, kind="stable").tolist():
        count = seen[base[i]] = seen.get(base[i], 0) + 1
        names[i] = f"{base[i]}{'' if count == 1 else f' {count}'} ({years[i]})"
    return names
