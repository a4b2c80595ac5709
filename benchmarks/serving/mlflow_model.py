"""The MLflow side: the same fitted matinee ALS object behind an MLflow pyfunc.

``predict`` takes the ``dataframe_records`` rows (a ``user_id`` column) and
calls the model's ``recommend`` exactly as matinee's server does (top 10,
seen items excluded, popular items for unknown users).
"""

import pickle

import mlflow.pyfunc
import numpy as np


class MatineeRecommender(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        with open(context.artifacts["ranker"], "rb") as f:
            self.model = pickle.load(f)

    def predict(self, context, model_input, params=None):
        users = model_input["user_id"].tolist()
        recs = self.model.recommend(users, 10, exclude_seen=True, unknown="popular")
        items = np.asarray(recs.items).tolist()
        scores = np.asarray(recs.scores, dtype=float).tolist()
        return [{"user_id": u, "items": i, "scores": s} for u, i, s in zip(users, items, scores, strict=True)]
