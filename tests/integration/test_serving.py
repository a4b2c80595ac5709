"""The serving app over real HTTP: recommendations, artwork decisions, feedback, hot swap, splits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from matinee.apps.artwork.policies import UniformRandom
from matinee.apps.recs import Interactions
from matinee.apps.recs.models import MostPopular
from matinee.core.events import EventLog
from matinee.core.registry import promote, register_model
from matinee.core.serving import Deployment, Endpoint, assign_arm, build_app, load_deployment
from matinee.errors import ConfigError

LOG = pd.DataFrame({
    "user_id": [1, 1, 2, 2, 3, 3, 4, 4, 5, 5],
    "item_id": ["a", "b", "a", "c", "a", "d", "b", "c", "e", "a"],
})


def recommender(log: pd.DataFrame = LOG) -> MostPopular:
    return MostPopular().fit(Interactions.from_frame(log))


def champion(name: str = "ranker", model: Any = None) -> int:
    version = register_model(name, recommender() if model is None else model).version
    promote(name, version)
    return version


@contextlib.asynccontextmanager
async def serving(deployment: Deployment) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(deployment)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            client.app = app  # type: ignore[attr-defined]  # for tests that reach the Server behind it
            yield client


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_recommendations_for_known_and_unknown_members() -> None:
    version = champion()

    async def go() -> None:
        async with serving(Deployment(recs=Endpoint("ranker@champion"))) as client:
            known = (await client.post("/recommendations", json={"user_id": 2, "k": 2})).json()
            assert known["items"] == ["b", "d"]
            assert known["fallback"] is False
            assert (known["model"], known["version"], known["arm"]) == ("ranker", version, "champion")
            unknown = (await client.post("/recommendations", json={"user_id": 999, "k": 3})).json()
            assert unknown["items"] == ["a", "b", "c"] and unknown["scores"] == [4.0, 2.0, 2.0]
            assert unknown["fallback"] is True
            excluded = (await client.post("/recommendations", json={"user_id": 999, "k": 2, "exclude": ["a"]})).json()
            assert excluded["items"] == ["b", "c"]
            among = (await client.post("/recommendations",
                                       json={"user_id": 999, "k": 5, "candidates": ["e", "c", "zz"]})).json()
            assert among["items"] == ["c", "e"]

    run(go())


BAD_RECS = [
    ({}, 422, "user_id"),
    ({"user_id": True}, 422, "user_id"),
    ({"user_id": 1, "k": 0}, 422, "k"),
    ({"user_id": 1, "k": "3"}, 422, "k"),
    ({"user_id": 1, "exclude": "a"}, 422, "exclude"),
    ({"user_id": 1, "candidates": [1.5]}, 422, "candidates.0"),
    ({"user_id": 1, "colour": "red"}, 422, "colour"),
    ([1, 2], 422, None),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD_RECS)
def test_bad_recommendation_requests_name_the_field(body: Any, status: int, field: str | None) -> None:
    champion()

    async def go() -> None:
        async with serving(Deployment(recs=Endpoint("ranker@champion"))) as client:
            response = await client.post("/recommendations", json=body)
            assert response.status_code == status
            data = response.json()
            assert data["field"] == field
            assert data["error"] and data["detail"]

    run(go())


def test_malformed_json_and_unserved_endpoint() -> None:
    champion()

    async def go() -> None:
        async with serving(Deployment(recs=Endpoint("ranker@champion"))) as client:
            response = await client.post("/recommendations", content=b"{not json")
            assert response.status_code == 400
            assert response.json()["error"] == "InvalidRequest"
            huge = await client.post("/recommendations", content=b"[" + b"1," * 600_000 + b"1]")
            assert huge.status_code == 413 and huge.json()["field"] is None
            response = await client.post("/artwork", json={"user_id": 1, "context": [], "titles": []})
            assert response.status_code == 422 and response.json()["field"] == "titles"
            response = await client.post("/artwork", json={
                "user_id": 1, "context": [0.0], "titles": [{"title_id": "t", "variants": [{"id": "v"}]}]})
            assert response.status_code == 404

    run(go())


def test_health_readiness_metrics_and_openapi() -> None:
    champion()

    async def go() -> None:
        async with serving(Deployment(recs=Endpoint("ranker@champion"))) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok", "pid": os.getpid()}
            ready = await client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["models"]["ranker@champion"]["version"] == 1
            for _ in range(3):
                await client.post("/recommendations", json={"user_id": 1})
            await client.post("/recommendations", json={"user_id": 1, "k": -1})
            text = (await client.get("/metrics")).text
            assert ('matinee_requests_total{endpoint="recommendations",model="ranker",status="200",version="1"} 3.0'
                    in text)
            assert 'matinee_requests_total{endpoint="recommendations",model="",status="422",version=""} 1.0' in text
            assert 'matinee_request_seconds_bucket{endpoint="recommendations",le="0.5",model="ranker",version="1"} 3.0' \
                in text
            document = (await client.get("/openapi.json")).json()
            assert document["openapi"].startswith("3.")
            assert {"/recommendations", "/artwork", "/feedback", "/readyz"} <= set(document["paths"])

    run(go())


def test_not_ready_until_the_alias_exists() -> None:
    register_model("ranker", recommender())

    async def go() -> None:
        async with serving(Deployment(recs=Endpoint("ranker@champion"), poll_interval=0.05)) as client:
            response = await client.get("/readyz")
            assert response.status_code == 503
            assert "champion" in response.json()["models"]["ranker@champion"]["error"]
            busy = await client.post("/recommendations", json={"user_id": 1})
            assert busy.status_code == 503 and busy.json()["error"] == "ModelUnavailable"
            promote("ranker", 1)
            for _ in range(100):
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert (await client.post("/recommendations", json={"user_id": 1})).json()["version"] == 1

    run(go())


def test_hot_swap_without_a_failed_request() -> None:
    champion()
    newer = recommender(pd.DataFrame({"user_id": [1, 2, 3], "item_id": ["e", "e", "d"]}))

    async def go() -> None:
        async with serving(Deployment(recs=Endpoint("ranker@champion"), poll_interval=0.1)) as client:
            seen: list[int] = []
            failures: list[int] = []
            done = asyncio.Event()

            async def traffic() -> None:
                while not done.is_set():
                    response = await client.post("/recommendations", json={"user_id": 42, "k": 1})
                    if response.status_code != 200:
                        failures.append(response.status_code)
                        continue
                    body = response.json()
                    seen.append(body["version"])
                    assert body["items"] == (["a"] if body["version"] == 1 else ["e"])
                    await asyncio.sleep(0)

            workers = [asyncio.create_task(traffic()) for _ in range(4)]
            await asyncio.sleep(0.2)
            promote("ranker", register_model("ranker", newer).version)
            moved_at = time.monotonic()
            while time.monotonic() - moved_at < 3 and (not seen or seen[-1] != 2):
                await asyncio.sleep(0.02)
            waited = time.monotonic() - moved_at
            await asyncio.sleep(0.1)
            done.set()
            await asyncio.gather(*workers)
            assert failures == []
            assert seen[0] == 1 and seen[-1] == 2
            assert waited < 2.5  # a few polls (0.1 s each) and a model load, with room for a loaded machine
            last_old = max(i for i, v in enumerate(seen) if v == 1)
            first_new = seen.index(2)
            assert last_old < first_new + 8  # only requests already running finish on the old version
            metrics = (await client.get("/metrics")).text
            assert 'matinee_model_version{alias="champion",model="ranker"} 2.0' in metrics

    run(go())


def test_traffic_split_is_deterministic_and_close_to_the_shares() -> None:
    champion()
    challenger = register_model("ranker", recommender()).version
    promote("ranker", challenger, alias="challenger")
    endpoint = Endpoint("ranker@champion", split={"champion": 50, "challenger": 50}, salt="exp-1")

    async def go() -> None:
        async with serving(Deployment(recs=endpoint)) as client:
            arms = {}
            for user in range(1000):
                body = (await client.post("/recommendations", json={"user_id": user, "k": 1})).json()
                assert body["version"] == (1 if body["arm"] == "champion" else challenger)
                arms[user] = body["arm"]
            counts = Counter(arms.values())
            assert 450 <= counts["champion"] <= 550, counts
            for user in range(0, 1000, 37):
                again = (await client.post("/recommendations", json={"user_id": user, "k": 1})).json()
                assert again["arm"] == arms[user]

    run(go())
    shares = Counter(assign_arm("s", f"m{i}", {"a": 90, "b": 10}) for i in range(10_000))
    assert 0.88 < shares["a"] / 10_000 < 0.92
    assert assign_arm("s", "m1", {"a": 50, "b": 50}) == assign_arm("s", "m1", {"a": 50, "b": 50})
    assert {assign_arm("other", f"m{i}", {"a": 50, "b": 50}) for i in range(50)} == {"a", "b"}


def test_artwork_decisions_are_logged_and_take_feedback(home: Path) -> None:
    register_model("art", UniformRandom(random_state=0))
    promote("art", 1)
    titles = [
        {"title_id": "t1", "variants": [{"id": "v1", "features": [1.0, 0.0]}, {"id": "v2", "features": [0.0, 1.0]}]},
        {"title_id": "t2", "variants": [{"id": "w1", "features": [0.5, 0.5]}, {"id": "w2", "features": [0.2, 0.1]},
                                        {"id": "w3", "features": [0.3, 0.3]}]},
    ]
    log_path = home / "serving-events.db"

    async def go() -> list[str]:
        deployment = Deployment(artwork=Endpoint("art@champion"), event_log=str(log_path))
        async with serving(deployment) as client:
            response = await client.post("/artwork", json={"user_id": "m7", "context": [0.1, 0.2], "titles": titles})
            assert response.status_code == 200, response.text
            body = response.json()
            assert (body["model"], body["version"], body["arm"]) == ("art", 1, "champion")
            choices = body["choices"]
            assert [c["title_id"] for c in choices] == ["t1", "t2"]
            assert choices[0]["variant_id"] in {"v1", "v2"} and choices[1]["variant_id"] in {"w1", "w2", "w3"}
            assert choices[0]["propensity"] == pytest.approx(0.5)
            assert choices[1]["propensity"] == pytest.approx(1 / 3)
            ids = [c["decision_id"] for c in choices]
            assert len(set(ids)) == 2
            ok = await client.post("/feedback", json={"decision_id": ids[0], "event": "play", "reward": 1.0})
            assert ok.status_code == 200 and ok.json()["accepted"] is True
            unknown = await client.post("/feedback", json={"decision_id": "nope", "reward": 1.0})
            assert unknown.status_code == 404 and unknown.json()["field"] == "decision_id"
            missing = await client.post("/feedback", json={"decision_id": ids[1]})
            assert missing.status_code == 422 and missing.json()["field"] == "reward"
            bad = await client.post("/artwork", json={"user_id": "m7", "context": [0.1, 0.2], "titles": [
                {"title_id": "t", "variants": [{"id": "v", "features": ["x", 1.0]}]}]})
            assert bad.status_code == 422 and bad.json()["field"] == "titles.0.variants.0.features.0"
            metrics = (await client.get("/metrics")).text
            assert 'matinee_decisions_total{arm="champion",model="art",version="1"} 2.0' in metrics
            assert 'matinee_feedback_total{event="play"} 1.0' in metrics
            return ids

    ids = run(go())
    joined = EventLog(log_path).joined().set_index("decision_id")
    assert set(joined.index) == set(ids)
    assert joined.loc[ids[0], "reward"] == 1.0 and joined.loc[ids[1], "reward"] == 0.0
    assert joined.loc[ids[0], "arm"] == "champion"
    assert 0 < joined.loc[ids[1], "propensity"] <= 1


def test_deployment_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "deploy.toml"
    path.write_text('poll_interval = 0.5\n[recs]\nmodel = "ranker@champion"\n'
                    '[artwork]\nmodel = "art@champion"\nsalt = "x"\nsplit = { champion = 90, challenger = 10 }\n')
    deployment = load_deployment(path)
    assert deployment.poll_interval == 0.5
    assert deployment.recs == Endpoint("ranker@champion")
    assert deployment.artwork is not None and deployment.artwork.aliases == ["champion", "challenger"]


@pytest.mark.parametrize(("make", "field"), [
    (lambda: Endpoint("ranker"), "model"),
    (lambda: Endpoint("ranker@champion", split={"a": 60, "b": 30}), "split"),
    (lambda: Endpoint("ranker@champion", split={"a": -1, "b": 101}), "split"),
    (lambda: Deployment(recs=Endpoint("r@c"), poll_interval=0), "poll_interval"),
    (lambda: Deployment(), "recs"),
    (lambda: Deployment.from_dict({"recs": {"model": "r@c", "colour": 1}}), "colour"),
    (lambda: Deployment(recs=Endpoint("r@c"), max_in_flight=0), "max_in_flight"),
    (lambda: Deployment(recs=Endpoint("r@c"), learn_batch=2.5), "learn_batch"),
    (lambda: Deployment(recs=Endpoint("r@c"), learn="yes"), "learn"),
    (lambda: Deployment(recs=Endpoint("r@c"), snapshot_interval=-1), "snapshot_interval"),
    (lambda: Deployment(recs=Endpoint("r@c"), durability="eventually"), "durability"),
    (lambda: Deployment.from_dict({"recs": "r@c", "max_in_flight": True}), "max_in_flight"),
])
def test_bad_deployments(make: Any, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        make()
    assert info.value.fields["field"] == field


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_matinee_serve_over_real_http(home: Path) -> None:
    champion()
    port = _free_port()
    env = {**os.environ, "MATINEE_HOME": str(home)}
    process = subprocess.Popen(
        [sys.executable, "-m", "matinee.cli.main", "serve", "--recs", "ranker@champion", "--port", str(port),
         "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        body = httpx.post(f"http://127.0.0.1:{port}/recommendations", json={"user_id": 1, "k": 2}).json()
        assert body["items"] == ["c", "d"] and body["version"] == 1
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_workers_each_listen_and_a_taken_port_stops_the_server(home: Path) -> None:
    champion()
    env = {**os.environ, "MATINEE_HOME": str(home)}
    with socket.socket() as taken:  # a plain listener, without SO_REUSEPORT: the workers cannot share it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "matinee.cli.main", "serve", "--recs", "ranker@champion", "--port", str(port),
             "--workers", "2", "--log-level", "warning"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "could not start" in result.stderr

    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "matinee.cli.main", "serve", "--recs", "ranker@champion", "--port", str(port),
         "--workers", "2", "--log-level", "warning"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        answered: set[int] = set()
        while len(answered) < 2:  # new connections reach both workers
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, answered
            try:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=2) as client:
                    if client.post("/recommendations", json={"user_id": 1, "k": 2}).status_code == 200:
                        answered.add(client.get("/healthz").json()["pid"])
            except httpx.TransportError:
                time.sleep(0.1)
        assert process.pid not in answered
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_serve_needs_a_model() -> None:
    result = subprocess.run([sys.executable, "-m", "matinee.cli.main", "serve"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "--recs" in result.stderr


def test_split_arms_are_balanced_statistically() -> None:
    rng = np.random.default_rng(0)
    members = rng.integers(0, 10**9, 2000).tolist()
    arms = [assign_arm("salt", m, {"a": 50, "b": 50}) for m in members]
    assert 0.45 < arms.count("a") / len(arms) < 0.55


@pytest.mark.parametrize("module", ["matinee.core.serving.app", "matinee.core.serving.config"])
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    assert doctest.testmod(importlib.import_module(module)).failed == 0


def test_serving_does_not_import_the_apps() -> None:
    folder = Path(__file__).resolve().parents[2] / "src" / "matinee" / "core" / "serving"
    for path in folder.glob("*.py"):
        assert "matinee.apps" not in path.read_text(), path
