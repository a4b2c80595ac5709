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
from matinee.core.events import EventLog
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


def test_interleaved_recommendations_merge_two_rankers_and_log_the_teams(home: Path) -> None:
    other = pd.DataFrame({"user_id": [7, 8, 9, 7, 8], "item_id": ["e", "e", "e", "d", "d"]})
    register_model("ranker", MostPopular().fit(Interactions.from_frame(LOG)))  # a, b, c, d, e
    register_model("ranker", MostPopular().fit(Interactions.from_frame(other)))  # e, d
    promote("ranker", 1)
    promote("ranker", 2, alias="challenger")
    deployment = Deployment.from_dict({"recs": {"model": "ranker@champion",
                                                "interleave": ["champion", "challenger"]}})

    async def go() -> list[dict[str, Any]]:
        async with serving(deployment) as client:
            bodies = []
            for member in range(40):
                response = await client.post("/recommendations", json={"user_id": 100 + member, "k": 3})
                assert response.status_code == 200, response.text
                bodies.append(response.json())
            server = client.app.state.server  # type: ignore[attr-defined]
            await asyncio.to_thread(server.events.flush)
            return bodies

    bodies = asyncio.run(go())
    for body in bodies:
        assert body["arm"] == "champion+challenger" and body["versions"] == [1, 2]
        assert len(body["items"]) == 3 == len(set(body["items"])) == len(body["teams"])
        first_a = body["items"][body["teams"].index("a")] if "a" in body["teams"] else None
        first_b = body["items"][body["teams"].index("b")] if "b" in body["teams"] else None
        assert first_a in (None, "a") and first_b in (None, "e")  # each team's first pick is its own top item
    assert {b["teams"][0] for b in bodies} == {"a", "b"}  # the coin decides who picks first
    logged = EventLog(home / "events" / "events.db").read_decisions().set_index("decision_id")
    row = logged.loc[bodies[0]["decision_id"]]
    assert row["arm"] == "champion+challenger" and str(row["model_version"]) == "1+2"
    assert list(row["context"]) == [float(t == "b") for t in bodies[0]["teams"]]
    assert list(row["candidates"]) == bodies[0]["items"]


@pytest.mark.parametrize("table", [
    {"model": "r@c", "interleave": ["c"]},
    {"model": "r@c", "interleave": ["c", "c"]},
    {"model": "r@c", "interleave": ["a", "b"], "split": {"a": 50, "b": 50}},
])
def test_bad_interleave_settings_are_refused(table: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        Deployment.from_dict({"recs": table})
    assert info.value.fields["field"] == "interleave"


def test_an_interleaving_experiment_reads_what_the_interleaved_endpoint_logged(home: Path) -> None:
    from matinee.core.experiments import (
        Experiment,
        analyze,
        create_experiment,
        start_experiment,
        stop_experiment,
    )

    other = pd.DataFrame({"user_id": [7, 8, 9, 7, 8], "item_id": ["e", "e", "e", "d", "d"]})
    register_model("ranker", MostPopular().fit(Interactions.from_frame(LOG)))
    register_model("ranker", MostPopular().fit(Interactions.from_frame(other)))
    promote("ranker", 1)
    promote("ranker", 2, alias="challenger")
    experiment = create_experiment(Experiment.build("ranker-il", ["ranker@champion", "ranker@challenger"],
                                                    kind="interleaving", endpoint="recs"))
    start_experiment(experiment.name)
    deployment = Deployment(recs=Endpoint("ranker@champion", interleave=("champion", "challenger")))

    async def go() -> None:  # members play the challenger's top title, "e", whenever it is shown
        async with serving(deployment) as client:
            for member in range(300):
                body = (await client.post("/recommendations", json={"user_id": 1000 + member, "k": 2})).json()
                if "e" in body["items"]:
                    ok = await client.post("/feedback", json={"decision_id": body["decision_id"],
                                                              "event": "play:e", "reward": 1})
                    assert ok.status_code == 200, ok.text

    asyncio.run(go())
    stop_experiment(experiment.name)
    result = analyze(experiment.name)
    assert result.preference is not None
    pref = result.preference.as_dict()
    assert pref["share_b"] > 0.9 and pref["p_value"] < 0.001  # every win goes to the challenger
