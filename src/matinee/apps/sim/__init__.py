"""A seeded, simulated streaming service: the default data of ``matinee demo`` and the environment of online tests.

* :class:`StreamingService` - members, titles (genres, popularity, release
  dates, names), sessions of plays over time in matinee's interaction schema,
  and the ground truth: :meth:`~StreamingService.true_preference` and
  :meth:`~StreamingService.ideal_ranking`.
* :class:`ArtworkEnvironment` - artwork impressions for contextual bandits, with
  the true play probability of every variant, seeded rewards and the oracle.
* :class:`SimConfig` and :data:`PRESETS` - sizes from ``tiny`` (tests) to
  ``large`` (100,000 members x 20,000 titles).

Examples
--------
>>> from matinee.apps.sim import StreamingService
>>> service = StreamingService("tiny", seed=7)
>>> plays = service.interactions()
>>> bool(plays.equals(StreamingService("tiny", seed=7).interactions()))
True
"""

from matinee.apps.sim.artwork import ArtworkEnvironment, Impressions
from matinee.apps.sim.config import GENRES, PRESETS, SimConfig
from matinee.apps.sim.service import StreamingService
from matinee.apps.sim.world import VARIANT_FEATURES

__all__ = [
    "ArtworkEnvironment",
    "GENRES",
    "Impressions",
    "PRESETS",
    "SimConfig",
    "StreamingService",
    "VARIANT_FEATURES",
]
