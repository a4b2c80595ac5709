"""Recommendations: interaction data, splitters, models, metrics, evaluation and a training flow."""

from matinee.apps.recs.base import NotFittedError, RecommenderBase, Recommendations, top_k
from matinee.apps.recs.interactions import Interactions

__all__ = ["Interactions", "NotFittedError", "RecommenderBase", "Recommendations", "top_k"]
