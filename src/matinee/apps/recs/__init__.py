"""Recommendations: interaction data, splitters, models, metrics, evaluation and a training flow.

>>> from matinee.apps.recs import Interactions, user_temporal_split, evaluate
>>> from matinee.apps.recs.models import EASE
"""

from matinee.apps.recs.base import NotFittedError, Recommendations, RecommenderBase, top_k
from matinee.apps.recs.evaluation import evaluate
from matinee.apps.recs.interactions import Interactions
from matinee.apps.recs.loaders import load_csv, load_movielens, load_parquet
from matinee.apps.recs.splits import (
    Split,
    leave_one_out,
    random_split,
    temporal_split,
    user_temporal_split,
)

__all__ = [
    "Interactions",
    "NotFittedError",
    "Recommendations",
    "RecommenderBase",
    "Split",
    "evaluate",
    "leave_one_out",
    "load_csv",
    "load_movielens",
    "load_parquet",
    "random_split",
    "temporal_split",
    "top_k",
    "user_temporal_split",
]
