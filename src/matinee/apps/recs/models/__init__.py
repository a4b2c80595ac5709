"""Recommender models, all on :class:`~matinee.apps.recs.base.RecommenderBase`.

========================  =====================================================
``MostPopular``           the same list for everyone, by user count
``ItemKNN``               item neighbours by shrunk cosine similarity
``RP3beta``               item-user-item random walks, popularity damped
``EASE``                  closed-form shallow autoencoder (dense items^2)
``ALS``                   implicit-feedback alternating least squares
``BPR``                   Bayesian personalised ranking
========================  =====================================================

Every model passes :func:`matinee.testing.check_recommender`.
"""

from matinee.apps.recs.models.ease import EASE
from matinee.apps.recs.models.factorization import ALS, BPR
from matinee.apps.recs.models.graph import RP3beta
from matinee.apps.recs.models.knn import ItemKNN
from matinee.apps.recs.models.popularity import MostPopular

__all__ = ["ALS", "BPR", "EASE", "ItemKNN", "MostPopular", "RP3beta"]
