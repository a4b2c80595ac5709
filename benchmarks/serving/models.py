"""The served models, built once per run: a factor recommender and an artwork policy.

``python models.py WORKDIR`` (run with ``MATINEE_HOME`` set) fits a matinee
``ALS`` with 64 factors on seeded synthetic interactions over a 10,000-title
catalogue, registers it as ``ranker`` (versions 1 and 2: the same object twice,
for the hot-swap case) and points ``champion`` at version 1; fits a LinUCB
policy on seeded random rounds and registers it as ``artwork@champion``. It
writes, in WORKDIR:

- ``factors.npz``: the ALS user and item factors and ids, which the bare ASGI
  app scores with directly;
- ``ranker.pkl``: the fitted ALS object, which the MLflow pyfunc wraps;
- ``mlflow_model/``: that pyfunc saved with ``mlflow.pyfunc.save_model``
  (skipped when MLflow is not importable);
- ``bodies.json``: the request bodies the load generator sends (``recs_batch``: 100
  members per ``/recommendations/batch`` request);
- ``models.json``: what was built (sizes, fit time).
"""

import json
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

N_USERS = 20_000
N_ITEMS = 10_000
FACTORS = 64
PER_USER = 30  # interactions per user, drawn with a popularity skew
ART_TITLES = 20  # titles per artwork request
ART_VARIANTS = 5
ART_CONTEXT = 8
ART_FEATURES = 4
N_BODIES = 2_000


def interactions(seed=0):
    """Seeded synthetic plays: every user has PER_USER distinct items, popular items more often."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.8
    weights /= weights.sum()
    users, items = [], []
    for user in range(N_USERS):
        chosen = rng.choice(N_ITEMS, size=PER_USER, replace=False, p=weights)
        users.append(np.full(PER_USER, user))
        items.append(chosen)
    return pd.DataFrame({"user_id": np.concatenate(users), "item_id": np.concatenate(items)})


def fit_ranker():
    from matinee.apps.recs import Interactions
    from matinee.apps.recs.models import ALS

    frame = interactions()
    data = Interactions.from_frame(frame)
    started = time.perf_counter()
    model = ALS(factors=FACTORS, iterations=3, random_state=0).fit(data)
    return model, time.perf_counter() - started, len(frame)


def fit_policy(seed=0):
    """LinUCB over the joint context x variant features, after one batch of random rounds."""
    from matinee.apps.artwork import LoggedFeedback
    from matinee.apps.artwork.policies import LinUCB

    rng = np.random.default_rng(seed)
    n = 2_000
    context = rng.normal(size=(n, ART_CONTEXT))
    features = rng.normal(size=(n, ART_VARIANTS, ART_FEATURES))
    action = rng.integers(0, ART_VARIANTS, size=n)
    reward = (rng.random(n) < 0.1).astype(float)
    feedback = LoggedFeedback(context=context, action=action, reward=reward,
                              propensity=np.full(n, 1 / ART_VARIANTS), n_actions=ART_VARIANTS,
                              action_features=features)
    return LinUCB(alpha=0.5, random_state=0).update(feedback)


def recs_bodies(rng, known_users):
    users = rng.choice(known_users, size=N_BODIES)
    return [json.dumps({"user_id": int(u), "k": 10}) for u in users]


def batch_bodies(rng, known_users, size=100):
    return [json.dumps({"requests": [{"user_id": int(u), "k": 10} for u in rng.choice(known_users, size=size)]})
            for _ in range(N_BODIES // 20)]


def mlflow_bodies(rng, known_users):
    users = rng.choice(known_users, size=N_BODIES)
    return [json.dumps({"dataframe_records": [{"user_id": int(u)}]}) for u in users]


def artwork_bodies(rng):
    bodies = []
    for i in range(N_BODIES // 4):
        titles = [
            {"title_id": f"t{int(t)}",
             "variants": [{"id": f"v{j}", "features": np.round(rng.normal(size=ART_FEATURES), 4).tolist()}
                          for j in range(ART_VARIANTS)]}
            for t in rng.choice(N_ITEMS, size=ART_TITLES, replace=False)
        ]
        context = np.round(rng.normal(size=ART_CONTEXT), 4).tolist()
        bodies.append(json.dumps({"user_id": f"m{i}", "context": context, "titles": titles}))
    return bodies


def save_mlflow(model_path, workdir):
    """The pyfunc wrapping ``ranker.pkl``; its class lives in mlflow_model.py (shipped as code)."""
    import mlflow.pyfunc

    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    from mlflow_model import MatineeRecommender

    mlflow.pyfunc.save_model(
        path=str(workdir / "mlflow_model"),
        python_model=MatineeRecommender(),
        artifacts={"ranker": str(model_path)},
        code_paths=[str(here / "mlflow_model.py")],
        pip_requirements=["matinee", "numpy", "pandas"],
    )


def main(workdir):
    from matinee.core.registry import promote, register_model

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    model, fit_seconds, n_interactions = fit_ranker()
    first = register_model("ranker", model, tags=["benchmark"])
    register_model("ranker", model, tags=["benchmark"])
    promote("ranker", first.version)
    policy = fit_policy()
    promote("artwork", register_model("artwork", policy, tags=["benchmark"]).version)

    np.savez(workdir / "factors.npz", user_factors=model.user_factors_, item_factors=model.item_factors_,
             user_ids=np.asarray(model.user_ids_), item_ids=np.asarray(model.item_ids_))
    with open(workdir / "ranker.pkl", "wb") as f:
        pickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)
    mlflow_saved = False
    if os.environ.get("BENCH_NO_MLFLOW") != "1":
        try:
            save_mlflow(workdir / "ranker.pkl", workdir)
            mlflow_saved = True
        except ImportError:
            pass

    rng = np.random.default_rng(1)
    known = np.asarray(model.user_ids_)
    bodies = {"recs": recs_bodies(rng, known), "mlflow": mlflow_bodies(rng, known), "artwork": artwork_bodies(rng),
              "recs_batch": batch_bodies(rng, known)}
    (workdir / "bodies.json").write_text(json.dumps(bodies))
    info = {"users": N_USERS, "items": N_ITEMS, "factors": FACTORS, "interactions": n_interactions,
            "als_fit_seconds": fit_seconds, "mlflow_model": mlflow_saved,
            "artwork": {"titles": ART_TITLES, "variants": ART_VARIANTS, "context": ART_CONTEXT,
                        "features": ART_FEATURES, "policy": repr(policy)}}
    (workdir / "models.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info))


if __name__ == "__main__":
    main(sys.argv[1])
