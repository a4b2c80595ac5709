"""Batch endpoints, feedback across restarts, and a served policy that learns online and snapshots itself."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from test_serving import serving

from matinee.apps.artwork.policies import EpsilonGreedy, UniformRandom
from matinee.apps.recs import Interactions
from matinee.apps.recs.models import MostPopular
from matinee.core.registry import alias_history, get_model, promote, register_model, versions
from matinee.core.serving import Deployment, Endpoint, serve
from matinee.errors import ConfigError

LOG = pd.DataFrame({
    "user_id": [1, 1, 2, 2, 3, 3, 4, 4, 5, 5],
    "item_id": ["a", "b", "a", "c", "a", "d", "b", "c", "e", "a"],
})

FEATURES = np.array([[[1.0, 0.0], [0.0, 1.0]]])  # TITLES[0]'s variants

TITLES = [
    {"title_id": "t1", "variants": [{"id": "v1", "features": [1.0, 0.0]}, {"id": "v2", "features": [0.0, 1.0]}]},
    {"title_id": "t2", "variants": [{"id": "w1", "features": [0.5, 0.5]}, {"id": "w2", "features": [0.2, 0.1]}]},
]


def test_recommendation_batch_answers_like_single_requests() -> None:
    register_model("ranker", MostPopular().fit(Interactions.from_frame(LOG)))
    promote("ranker", 1)
    requests = [{"user_id": 2, "k": 2}, {"user_id": 999, "k": 2, "exclude": ["a"]},
                {"user_id": 999, "k": 5, "candidates": ["e", "c", "zz"]}, {"user_id": 1}]

    async def go() -> None:
        async with serving(Deployment(recs=Endpoint("ranker@champion"))) as client:
            batch = await client.post("/recommendations/batch", json={"requests": requests})
            assert batch.status_code == 200, batch.text
            singles = [(await client.post("/recommendations", json=r)).json() for r in requests]
            results = batch.json()["results"]
            ids = [r.pop("decision_id") for r in results + singles]
            assert results == singles
            assert len(set(ids)) == len(ids) == 8  # every non-empty list is logged as a decision
            server = client.app.state.server  # type: ignore[attr-defined]
            await asyncio.to_thread(server.events.flush)
            logged = await asyncio.to_thread(server.events.read_decisions)
            assert set(logged["decision_id"]) == set(ids)
            first = logged.set_index("decision_id").loc[ids[0]]
            assert (first["endpoint"], first["arm"], first["propensity"]) == ("recs", "champion", 1.0)
            play = await client.post("/feedback", json={"decision_id": ids[0], "event": "play:b", "reward": 1})
            assert play.status_code == 200, play.text
            assert [r["items"] for r in singles[:3]] == [["b", "d"], ["b", "c"], ["c", "e"]]
            bad = await client.post("/recommendations/batch", json={"requests": [{"user_id": 1}, {"user_id": 1, "k": 0}]})
            assert bad.status_code == 422 and bad.json()["field"] == "requests.1.k"
            for body, field in [({}, "requests"), ({"requests": []}, "requests"), ({"requests": [3]}, "requests.0"),
                                ({"requests": [{}], "x": 1}, "x")]:
                bad = await client.post("/recommendations/batch", json=body)
                assert bad.status_code == 422 and bad.json()["field"] == field, body

    asyncio.run(go())


def test_artwork_batch_gives_one_choice_per_title_and_logs_them(home: Path) -> None:
    register_model("art", UniformRandom(random_state=0))
    promote("art", 1)
    log = home / "events.db"

    async def go() -> list[str]:
        async with serving(Deployment(artwork=Endpoint("art@champion"), event_log=str(log))) as client:
            body = {"requests": [{"user_id": f"m{i}", "context": [0.1 * i], "titles": TITLES} for i in range(3)]}
            response = await client.post("/artwork/batch", json=body)
            assert response.status_code == 200, response.text
            results = response.json()["results"]
            assert [r["user_id"] for r in results] == ["m0", "m1", "m2"]
            assert all([c["title_id"] for c in r["choices"]] == ["t1", "t2"] for r in results)
            bad = await client.post("/artwork/batch", json={"requests": [
                {"user_id": "m", "context": [0.1], "titles": TITLES},
                {"user_id": "m", "context": [0.1], "titles": [{"title_id": "t", "variants": []}]}]})
            assert bad.status_code == 422 and bad.json()["field"] == "requests.1.titles.0.variants"
            mixed = await client.post("/artwork/batch", json={"requests": [
                {"user_id": "m", "context": [0.1], "titles": TITLES},
                {"user_id": "m", "context": [0.1, 0.2], "titles": TITLES}]})
            assert mixed.status_code == 422 and mixed.json()["field"] == "requests.1.context"
            return [c["decision_id"] for r in results for c in r["choices"]]

    ids = asyncio.run(go())
    assert len(set(ids)) == 6

    async def after_restart() -> None:  # a new process knows the old decisions through the log
        async with serving(Deployment(artwork=Endpoint("art@champion"), event_log=str(log))) as client:
            ok = await client.post("/feedback", json={"decision_id": ids[0], "event": "play", "reward": 1})
            assert ok.status_code == 200, ok.text
            missing = await client.post("/feedback", json={"decision_id": "f" * 32, "reward": 1})
            assert missing.status_code == 404 and missing.json()["field"] == "decision_id"

    asyncio.run(after_restart())


def _feed(client: httpx.AsyncClient, n: int, good: str = "v1") -> Any:
    """``n`` decisions on a one-title page; feedback 1 when the good variant was shown, else 0."""

    async def go() -> None:
        for i in range(n):
            body = {"user_id": f"m{i}", "context": [1.0], "titles": [TITLES[0]]}
            choice = (await client.post("/artwork", json=body)).json()["choices"][0]
            reward = 1.0 if choice["variant_id"] == good else 0.0
            ok = await client.post("/feedback", json={"decision_id": choice["decision_id"], "reward": reward})
            assert ok.status_code == 200, ok.text

    return go()


def test_served_policy_learns_online_and_snapshots_to_the_registry(home: Path) -> None:
    register_model("art", EpsilonGreedy(epsilon=0.2, n_actions=2, random_state=0))
    promote("art", 1)
    deployment = Deployment(artwork=Endpoint("art@champion"), learn=True, learn_batch=10, snapshot_interval=0)

    async def go() -> None:
        async with serving(deployment) as client:
            server = client.app.state.server  # type: ignore[attr-defined]
            await _feed(client, 200)
            slot = server.slots[("art", "champion")]
            probs = slot.current.model.probabilities(np.ones((1, 1)), FEATURES)[0]
            assert probs[0] == pytest.approx(0.9)  # learned that v1 plays: greedy on it, 0.2 spread evenly
            await server.snapshot()
            assert slot.current.version == 2  # the object in memory now answers as the snapshot
            assert (await client.post("/artwork", json={"user_id": "m", "context": [1.0],
                                                        "titles": [TITLES[0]]})).json()["version"] == 2
            metrics = (await client.get("/metrics")).text
            assert 'matinee_online_rounds_total{alias="champion",model="art"} 200.0' in metrics
            assert 'matinee_snapshots_total{alias="champion",model="art"} 1.0' in metrics
            await server.snapshot()  # nothing learned since: no new version
            assert len(versions("art")) == 2

    asyncio.run(go())
    snap = get_model("art", alias="champion")
    assert snap.version == 2 and "online-snapshot" in snap.tags and snap.metrics["online_rounds"] == 200.0
    assert alias_history("art", "champion")[-1].action == "snapshot"
    assert snap.load().probabilities(np.ones((1, 1)), FEATURES)[0][0] == pytest.approx(0.9)

    async def restart() -> None:  # resumes from the snapshot, and a promotion made meanwhile wins
        async with serving(deployment) as client:
            server = client.app.state.server  # type: ignore[attr-defined]
            assert server.slots[("art", "champion")].current.version == 2
            await _feed(client, 20, good="v2")
            promote("art", 1)  # someone moves the alias while this server learns
            await server.snapshot()

    asyncio.run(restart())
    assert [v.version for v in versions("art")] == [1, 2, 3]  # the work is kept as a version...
    assert get_model("art", alias="champion").version == 1  # ...but the alias stays where it was put


def test_online_learning_needs_one_worker() -> None:
    deployment = Deployment(artwork=Endpoint("art@champion"), learn=True)
    with pytest.raises(ConfigError) as info:
        serve(deployment, workers=2)
    assert info.value.fields["field"] == "workers"
