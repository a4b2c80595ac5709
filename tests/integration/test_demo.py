"""``matinee demo --quick``: the whole loop end to end, as a real process, with its server over real HTTP."""

from __future__ import annotations

import doctest
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from matinee.core.events import EventLog
from matinee.core.registry import alias_history, get_model


def demo(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "matinee.cli.main", "demo", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


@pytest.mark.slow
def test_quick_demo_trains_registers_serves_learns_and_reports(tmp_path, home):
    result = demo("--quick", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)  # stdout is pure JSON; progress went to stderr
    assert "== Serving" in result.stderr
    assert out["dashboard"] == f"MATINEE_HOME={home} matinee ui"
    assert result.stderr.rstrip().splitlines()[-1].strip().startswith(out["dashboard"])  # the last words

    # offline: both flows ran and their winners were registered from the runs' artifacts
    assert out["mode"] == "quick" and len(out["leaderboard"]) == 6 and len(out["artwork"]["leaderboard"]) == 6
    ranker = out["registry"]["demo-ranker"]["champion"]
    assert ranker["source"].startswith(out["run"] + "/end/")
    artwork = out["registry"]["demo-artwork"]
    assert artwork["champion"]["source"].startswith(out["artwork"]["run"] + "/end/")
    assert artwork["champion"]["policy"] == out["artwork"]["leaderboard"][0]["policy"]
    assert artwork["challenger"]["policy"] == out["artwork"]["leaderboard"][1]["policy"]
    assert get_model("demo-ranker", alias="champion").version == ranker["version"]

    # online: both arms answered, every decision got its feedback, the server stopped cleanly
    online = out["online"]
    traffic = online["traffic"]
    assert traffic["decisions"] >= 2_000 and traffic["feedback"] == traffic["decisions"]
    arms = {row["arm"]: row for row in online["arms"]}
    assert set(arms) == {"champion", "challenger"}
    assert all(row["decisions"] > 500 for row in arms.values())
    assert sum(row["decisions"] for row in arms.values()) == traffic["decisions"]
    for row in arms.values():
        assert 0 <= row["low"] <= row["take_rate"] <= row["high"] <= 1
        assert row["uniform"] < row["expected"] <= row["oracle"]  # the policies beat a uniform choice
        assert row["logged_decisions"] == row["decisions"]
        assert row["estimate"] == artwork[row["arm"]]["dr"]
    assert online["server"]["exit_code"] == 0

    # the event log holds every decision and its feedback
    events = online["event_log"]
    assert events["decisions"] == traffic["decisions"] and events["feedback"] == traffic["decisions"]
    joined = EventLog(home / "events" / "events.db").joined()
    joined = joined[joined["model"] == "demo-artwork"]
    assert len(joined) == traffic["decisions"] and (joined["n_feedback"] == 1).all()
    assert set(joined["arm"]) == {"champion", "challenger"}
    assert int(joined["reward"].sum()) == sum(row["plays"] for row in arms.values())

    # the server learned online and snapshotted: the aliases now point at snapshot versions
    assert online["snapshots"] and all("online-snapshot" in v["tags"] for v in online["snapshots"])
    for alias in ("champion", "challenger"):
        current = get_model("demo-artwork", alias=alias)
        assert "online-snapshot" in current.tags and current.version > artwork[alias]["version"]
    assert any(change.action == "snapshot" for change in alias_history("demo-artwork"))
    registered = {(v["model"], v["version"]) for v in online["versions"]}
    assert ("demo-artwork", artwork["champion"]["version"]) in registered

    # the champion/challenger split ran as an experiment, analysed from the same event log
    experiment = online["experiment"]
    assert experiment["experiment"]["status"] == "stopped" and experiment["experiment"]["endpoint"] == "artwork"
    assert {a["arm"]: a["units"] for a in experiment["arms"]}.keys() == {"champion", "challenger"}
    assert sum(a["impressions"] for a in experiment["arms"]) == traffic["decisions"]
    primary = experiment["effects"][0]
    assert primary["metric"] == "take_rate" and primary["diff_low"] <= primary["diff"] <= primary["diff_high"]
    assert experiment["srm"] is not None and experiment["assignment_mismatches"] == 0
    assert Path(experiment["report"]).is_file()

    # the report opens offline
    report = Path(out["report"])
    assert report.is_file() and report.parent.parent == home / "demo"
    page = report.read_text(encoding="utf-8")
    assert '<script src="http' not in page and "Take rate per arm over time" in page
    assert (report.parent / "deployment.toml").is_file()


def test_only_recs_registers_without_serving(tmp_path, home):
    result = demo("--sim-size", "tiny", "--only", "recs", "--json", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert "artwork" not in out and "online" not in out
    assert set(out["registry"]) == {"demo-ranker"}
    assert get_model("demo-ranker", alias="champion").run_pathspec == out["run"]


@pytest.mark.parametrize("module", ["matinee.apps.sim.traffic", "matinee.apps.artwork.live_report"])
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_drive_falls_back_to_single_requests_and_feeds_back_every_decision():
    """Against a server without batch endpoints: one request per visit, one feedback per decision."""
    import threading
    import time

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from matinee.apps.sim import ArtworkEnvironment
    from matinee.apps.sim.traffic import drive
    from matinee.cli.demo_loop import free_port

    feedback: list[dict] = []

    async def recommendations(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse({"user_id": body["user_id"], "items": [0, 1, 2][: body["k"]], "arm": "only"})

    async def artwork(request: Request) -> JSONResponse:
        body = await request.json()
        choices = [{"title_id": t["title_id"], "variant_id": t["variants"][-1]["id"], "propensity": 1.0,
                    "decision_id": f"{body['user_id']}-{t['title_id']}-{time.monotonic_ns()}"} for t in body["titles"]]
        arm = "a" if body["user_id"] % 2 else "b"
        return JSONResponse({"user_id": body["user_id"], "choices": choices, "arm": arm, "version": 3})

    async def record(request: Request) -> JSONResponse:
        feedback.append(await request.json())
        return JSONResponse({"accepted": True})

    app = Starlette(routes=[Route("/recommendations", recommendations, methods=["POST"]),
                            Route("/artwork", artwork, methods=["POST"]),
                            Route("/feedback", record, methods=["POST"])])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        result = drive(f"http://127.0.0.1:{port}", ArtworkEnvironment(seed=3), visits=30, page_size=3,
                       visits_per_step=7)
    finally:
        server.should_exit = True
        thread.join(10)
    assert not result.batch and result.decisions == 90 and len(feedback) == 90
    assert result.requests["/recommendations"] == 30 and result.requests["/artwork"] == 30
    assert result.requests["/recommendations/batch"] == 1 and result.requests["/artwork/batch"] == 1
    assert sorted(f["decision_id"] for f in feedback) == sorted(result.rounds["decision_id"])
    rewards = {f["decision_id"]: f["reward"] for f in feedback}
    assert [rewards[d] for d in result.rounds["decision_id"]] == result.rounds["reward"].tolist()
    assert {f["event"] for f in feedback} <= {"play", "no_play"}
    assert (result.rounds["action"] == 9).all()  # the last of the 10 variants, as the server chose
    arms = result.by_arm()
    assert arms["arm"].tolist() == ["a", "b"] and arms["decisions"].sum() == 90
    assert (arms["versions"].map(tuple) == (3,)).all()
    assert ((arms["uniform"] <= arms["oracle"]) & (arms["expected"] <= arms["oracle"])).all()
