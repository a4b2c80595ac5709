"""The dashboard's pages, in process (Starlette's TestClient) over a store filled by real flow runs."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from matinee.core.store import close_stores, open_store

FLOW = """
    import numpy as np
    import pandas as pd

    from matinee import FlowSpec, Parameter, current, step


    class Opaque:
        pass


    class Shop(FlowSpec):
        alpha = Parameter("alpha", default=0.5, type=float)
        note = Parameter("note", default="<script>alert(1)</script>")

        @step
        def start(self):
            self.items = [1, 2, 3]
            self.scalar = 42
            self.text = "<script>alert(1)</script>"
            self.array = np.arange(12, dtype=np.float32).reshape(3, 4)
            self.table = pd.DataFrame({"user": [1, 2, 3], "score": [0.5, 0.25, 0.125]})
            self.opaque = Opaque()
            print("hello from start <b>bold</b>")
            self.next(self.work, foreach="items")

        @step
        def work(self):
            self.square = self.input ** 2
            self.next(self.join)

        @step
        def join(self, inputs):
            self.total = sum(i.square for i in inputs)
            for i in range(5):
                current.log_metric("loss", (1 + self.alpha) / (i + 1), step=i)
            current.log_metric("auc", self.alpha)
            self.model = {"weights": [self.alpha]}
            self.next(self.end)

        @step
        def end(self):
            pass


    if __name__ == "__main__":
        Shop()
"""
XSS = "<script>alert(1)</script>"
MODEL = "shop-model"


@pytest.fixture(scope="module")
def shop_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A home with three Shop runs (alpha 0.1, 0.9, 0.5), a model with two versions, events and an experiment."""
    import os

    folder = tmp_path_factory.mktemp("shop")
    home = folder / "home"
    flow = folder / "shop.py"
    flow.write_text(textwrap.dedent(FLOW))
    env = {**os.environ, "MATINEE_HOME": str(home), "MATINEE_USER": "tester"}
    for name in ("MATINEE_METADATA_URL", "MATINEE_BLOB_URL", "MATINEE_TRACKING_URI", "MATINEE_TOKEN"):
        env.pop(name, None)
    for args in (["--alpha", "0.1", "--tag", XSS], ["--alpha", "0.9", "--tag", "good"], ["--tag", "good"]):
        done = subprocess.run([sys.executable, str(flow), "run", *args], cwd=folder, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    yield home


@pytest.fixture
def shop(shop_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MATINEE_HOME", str(shop_home))
    close_stores()
    return shop_home


@pytest.fixture
def client(shop: Path) -> Iterator[TestClient]:
    from matinee.web.app import create_app

    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture
def model(shop: Path) -> str:
    """``shop-model`` v1 (run 1) as champion and v2 (run 2), registered once per module's home."""
    from matinee.core.registry import promote, register_model

    if open_store().metadata.model_version(MODEL) is None:
        register_model(MODEL, "Shop/1:model", metrics={"auc": 0.1}, tags=[XSS], description=XSS)
        register_model(MODEL, "Shop/2:model", metrics={"auc": 0.9})
        promote(MODEL, 1)
    return MODEL


@pytest.fixture
def events(shop: Path) -> Path:
    """A few decisions and feedback of two arms in the home's event log."""
    from matinee.core.events import EventLog

    path = shop / "events" / "events.db"
    if not path.exists():
        now = time.time() - 100
        with EventLog(path) as log:
            for i in range(40):
                arm = "champion" if i % 2 else "challenger"
                log.append_decision({"decision_id": f"d{i}", "ts": now + i, "unit_id": f"m{i % 7}", "endpoint": "artwork",
                                     "model": "art", "model_version": 1 if i % 2 else 2, "arm": arm,
                                     "context": [0.5, i], "candidates": [0, 1, 2], "action": i % 3,
                                     "propensity": 1 / 3})
                if i % 3 == 0:
                    log.append_feedback({"decision_id": f"d{i}", "ts": now + i + 0.5, "event": "play", "reward": 1.0})
            log.append_decision({"decision_id": "x1", "ts": now - 50, "unit_id": XSS, "endpoint": "recs", "model": XSS,
                                 "context": [], "candidates": [XSS], "action": XSS, "propensity": 1.0})
    return path


def _main(response: Any) -> str:
    text = response.text
    return text[text.index("<main>"):]


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert match, "no CSRF meta tag"
    return match.group(1)


# -- every page -------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["/runs", "/runs/1", "/runs/2", "/compare?runs=1,2", "/compare?runs=1&runs=3",
                                 "/models", f"/models/{MODEL}", "/experiments", "/bandits", "/events",
                                 "/events?kind=feedback", "/login", "/runs?sort=metric:loss&order=asc&per=2&page=2"])
def test_every_page_renders(client: TestClient, model: str, events: Path, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 200, response.text[-600:]
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<meta name="csrf-token" content="' in page
    assert "<script>" not in page.replace('<script type="application/json"', "")  # no inline code anywhere
    assert re.search(r"<script(?![^>]*(src=|type=\"application/json\"))", page) is None


def test_root_redirects_to_runs(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/runs"


def test_empty_states_say_how_to_fill_them(home: Path) -> None:
    from matinee.web.app import create_app

    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        for url, hint in (("/runs", "matinee demo"), ("/models", "matinee demo"), ("/bandits", "matinee demo"),
                          ("/events", "matinee demo"), ("/experiments", "matinee demo")):
            response = c.get(url)
            assert response.status_code == 200 and hint in response.text, url


# -- runs -------------------------------------------------------------------------------------------
def _run_ids(page: str) -> list[int]:
    return [int(x) for x in re.findall(r'<tr data-run="(\d+)">', page)]


def test_runs_sort_by_metric_both_ways(client: TestClient) -> None:
    assert _run_ids(client.get("/runs?sort=metric:auc&order=desc").text) == [2, 3, 1]
    assert _run_ids(client.get("/runs?sort=metric:auc&order=asc").text) == [1, 3, 2]
    assert _run_ids(client.get("/runs").text) == [3, 2, 1]
    page = client.get("/runs?sort=metric:loss").text
    assert re.search(r'<th class="num sorted"><a[^>]*data-metric="loss"', page)  # the sorted column comes first


def test_runs_filters(client: TestClient) -> None:
    assert _run_ids(client.get("/runs", params={"tag": "good"}).text) == [3, 2]
    assert _run_ids(client.get("/runs", params={"tag": XSS}).text) == [1]
    assert _run_ids(client.get("/runs", params={"flow": "Shop", "status": "completed", "user": "tester"}).text) == [3, 2, 1]
    assert _run_ids(client.get("/runs", params={"user": "nobody"}).text) == []
    assert _run_ids(client.get("/runs", params={"since": "2000-01-01", "until": str(time.time() + 60)}).text) == [3, 2, 1]
    assert "No run matches" in client.get("/runs", params={"since": str(time.time() + 60)}).text
    assert _run_ids(client.get("/runs", params={"per": "1", "page": "2"}).text) == [2]


def test_runs_show_metric_columns_and_paging(client: TestClient) -> None:
    page = client.get("/runs?per=2").text
    assert 'data-metric="auc"' in page and 'data-metric="loss"' in page
    assert "page 1 of 2" in page and 'rel="next"' in page


@pytest.mark.parametrize(("query", "field"), [
    ({"status": "exploded"}, "status"), ({"sort": "colour"}, "sort"), ({"order": "sideways"}, "order"),
    ({"per": "0"}, "per"), ({"page": "x"}, "page"), ({"since": "yesterday-ish"}, "since"),
    ({"tag": "'; DROP TABLE runs; --"}, None),
])
def test_runs_bad_filters_name_the_field(client: TestClient, query: dict[str, str], field: str | None) -> None:
    response = client.get("/runs", params=query)
    if field is None:  # SQL metacharacters are just text to match
        assert response.status_code == 200 and _run_ids(response.text) == []
        return
    assert response.status_code == 400
    assert f"<code>{field}</code>" in response.text


# -- a run ---------------------------------------------------------------------------------------------
def test_run_page_graph_for_a_foreach(client: TestClient) -> None:
    page = _main(client.get("/runs/1"))
    svg = page[page.index("<svg"):page.index("</svg>")]
    steps = re.findall(r'data-step="([^"]+)"', svg)
    assert steps == ["start", "work", "join", "end"]
    assert "work x 3" in svg and "status-completed" in svg
    assert 'stroke-dasharray' in svg  # the foreach edge is drawn dashed
    assert svg.count('class="edge"') == 3


def test_graph_layout_from_tasks(shop: Path) -> None:
    from matinee.web.graph import layout, to_svg, to_text

    graph = layout(open_store().metadata.list_tasks(1))
    assert [[n.step for n in layer] for layer in graph.layers] == [["start"], ["work"], ["join"], ["end"]]
    assert graph.node("work").tasks == 3 and graph.node("work").seconds is not None
    assert [(e.source, e.target, e.foreach) for e in graph.edges] == [
        ("start", "work", True), ("work", "join", False), ("join", "end", False)]
    text = to_text(graph)
    assert "work x 3" in text and "-> work (foreach)" in text
    assert "<" not in to_svg(layout([{"id": 1, "step_name": "<b>", "input_paths": "[]", "status": "failed",
                                      "transition": None, "started_at": None, "finished_at": None}])).split(
        "<g", 1)[1].split(">", 1)[1].split("<title>")[1].split("</title>")[0]


def test_run_page_shows_params_tags_artifacts_logs_and_charts(client: TestClient) -> None:
    page = _main(client.get("/runs/1"))
    assert "<th>alpha</th><td><code>0.1</code>" in page
    assert "42" in page and "array (3, 4) float32" in page
    assert "table, 3 rows x 2 columns" in page and "user: int64" in page and "score: double" in page
    assert "Python object (__main__.Opaque)" in page and "loading it would run its code" in page
    assert "hello from start &lt;b&gt;bold&lt;/b&gt;" in page
    series = json.loads(re.search(r'<script type="application/json" id="metric-series">(.*?)</script>', page).group(1))
    assert series["loss"]["x"] == [0, 1, 2, 3, 4] and "auc" not in series  # one value: in the table, not charted
    assert "<th>auc</th>" in page


def test_user_strings_render_escaped(client: TestClient, model: str, events: Path) -> None:
    pages = [client.get(u).text for u in ("/runs", "/runs/1", "/compare?runs=1,2", f"/models/{MODEL}", "/events")]
    for page in pages:
        assert XSS not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0]  # the tag
    assert pages[1].count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3  # tag, parameter, artifact preview
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[3]  # the version's tag and description
    assert "&lt;script&gt;" in pages[4]  # the decision's unit, model and action


@pytest.mark.parametrize(("url", "names"), [
    ("/runs/999", "999"), ("/runs/abc", "abc"), ("/runs/99999999999999999999999", "99999999999999999999999"),
    ("/compare?runs=1&runs=99999999999999999999999", "99999999999999999999999"), ("/models/nope", "nope"), ("/experiments/nope", "nope"),
    ("/compare?runs=1,999", "999"), ("/static/secret.txt", "secret.txt"), ("/static/..%2F..%2Fpages.py", "pages.py"),
    ("/nowhere", "/nowhere"),
])
def test_not_found_names_what_is_missing(client: TestClient, url: str, names: str) -> None:
    response = client.get(url)
    assert response.status_code == 404
    assert names in response.text and "<h1>404" in response.text


# -- compare ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("runs", ["1", "", ",".join(str(i) for i in range(1, 12)), "1,a", "1,-2", "1,2.5", "1,1"])
def test_compare_refuses_bad_runs(client: TestClient, runs: str) -> None:
    response = client.get("/compare", params={"runs": runs})
    assert response.status_code == 400
    assert "<code>runs</code>" in response.text and "runs must" in response.text


def test_compare_lays_runs_side_by_side(client: TestClient) -> None:
    page = _main(client.get("/compare?runs=1,2"))
    assert 'href="/runs/1">Shop/1' in page and 'href="/runs/2">Shop/2' in page
    assert '<tr class="differs"><th>alpha</th>' in page
    assert '<tr><th>note</th>' in page  # the same in both: not highlighted
    series = json.loads(re.search(r'id="compare-series">(.*?)</script>', page).group(1))
    assert set(series["loss"]) == {"Shop/1", "Shop/2"}


# -- models ----------------------------------------------------------------------------------------------
def test_model_page_shows_versions_lineage_aliases_and_history(client: TestClient, model: str) -> None:
    page = _main(client.get(f"/models/{model}"))
    assert 'href="/runs/1">Shop/1</a>' in page and 'href="/runs/2">Shop/2</a>' in page
    assert re.search(r'<tr data-alias="champion">.*?v1</td>', page, re.S)
    assert "promote" in page.lower() and 'name="csrf"' in page  # local mode: the principal is an admin
    listing = client.get("/models").text
    assert "champion → v1" in listing


def _alias(home: Path, name: str = MODEL) -> int:
    close_stores()
    return int(open_store().metadata.model_alias(name, "champion")["version"])


def test_promote_and_rollback_need_csrf_and_are_audited(client: TestClient, model: str, shop: Path) -> None:
    page = client.get(f"/models/{model}").text
    token = _csrf(page)
    refused = client.post(f"/models/{model}/promote", data={"version": "2", "alias": "champion"})
    assert refused.status_code == 403 and "csrf" in refused.text.lower()
    wrong = client.post(f"/models/{model}/promote", data={"version": "2", "alias": "champion", "csrf": "x" * 32})
    assert wrong.status_code == 403
    assert _alias(shop) == 1
    moved = client.post(f"/models/{model}/promote", data={"version": "2", "alias": "champion", "csrf": token},
                        follow_redirects=False)
    assert moved.status_code == 303, moved.text
    assert _alias(shop) == 2
    after = client.get(moved.headers["location"]).text
    assert "Alias champion version 1 -&gt; 2" in after
    assert re.search(r'<tr data-alias="champion">.*?v2</td>', after, re.S)
    back = client.post(f"/models/{model}/rollback", data={"alias": "champion", "csrf": token}, follow_redirects=False)
    assert back.status_code == 303 and _alias(shop) == 1
    missing = client.post(f"/models/{model}/promote", data={"version": "9", "alias": "champion", "csrf": token})
    assert missing.status_code == 404 and "version 9" in missing.text
    huge = client.post(f"/models/{model}/promote", data={"version": "9" * 25, "alias": "champion", "csrf": token})
    assert huge.status_code == 404
    bad = client.post(f"/models/{model}/promote", data={"version": "two", "alias": "champion", "csrf": token})
    assert bad.status_code == 400 and "<code>version</code>" in bad.text
    rows = open_store().metadata.audit_log(limit=50)
    actions = [(r["action"], r["outcome"]) for r in rows]
    assert ("alias.promote", "ok") in actions and ("alias.rollback", "ok") in actions
    assert any(r["outcome"] == "denied" and r["status"] == 403 for r in rows)
    history = open_store().metadata.alias_history(model, "champion")
    assert [h["action"] for h in history][-2:] == ["promote", "rollback"]
    assert history[-1]["user_name"] == "local"


def test_roles_decide_who_moves_aliases(client: TestClient, model: str, shop: Path) -> None:
    from matinee.web.auth import create_token

    meta = open_store().metadata
    reader, _ = create_token(meta, "page-reader", "reader", "tester")
    admin, _ = create_token(meta, "page-admin", "admin", "tester")
    try:
        assert client.get("/runs", follow_redirects=False).status_code == 303  # tokens exist: log in first
        as_reader = {"authorization": f"Bearer {reader}"}
        page = client.get(f"/models/{model}", headers=as_reader).text
        assert "/promote" not in page and "page-reader" in page
        denied = client.post(f"/models/{model}/promote", data={"version": "2"}, headers=as_reader)
        assert denied.status_code == 403
        ok = client.post(f"/models/{model}/promote", data={"version": "2", "alias": "staging"},
                         headers={"authorization": f"Bearer {admin}"}, follow_redirects=False)
        assert ok.status_code == 303  # a bearer token needs no CSRF value
        assert meta.model_alias(model, "staging")["updated_by"] == "page-admin"
        # a browser session from the login form
        form = client.get("/login").text
        failed = client.post("/login", data={"token": "mt_000000000000_" + "x" * 43, "next": "/models",
                                             "csrf": _csrf(form)})
        assert failed.status_code == 401 and "Log in" in failed.text
        forged = client.post("/login", data={"token": admin, "next": "/models"}, follow_redirects=False)
        assert forged.status_code == 403 and "matinee_session" not in forged.headers.get("set-cookie", "")
        login = client.post("/login", data={"token": admin, "next": "//evil.example/", "csrf": _csrf(form)},
                            follow_redirects=False)
        assert login.status_code == 303 and login.headers["location"] == "/runs"
        page = client.get(f"/models/{model}").text
        assert "page-admin" in page and "log out" in page
        assert client.post(f"/models/{model}/rollback", data={"alias": "staging"}).status_code == 403  # no CSRF
        out = client.post("/logout", data={"csrf": _csrf(page)}, follow_redirects=False)
        assert out.status_code == 303
        client.cookies.delete("matinee_session")
        assert client.get("/runs", follow_redirects=False).status_code == 303
    finally:
        meta.revoke_token("page-reader")
        meta.revoke_token("page-admin")


# -- experiments, bandits, events ---------------------------------------------------------------------
def test_bandits_page_summarises_reward_per_policy(client: TestClient, events: Path) -> None:
    page = _main(client.get("/bandits"))
    assert "art@champion" in page and "art@challenger" in page
    data = json.loads(re.search(r'id="bandit-data">(.*?)</script>', page).group(1))
    by_name = {p["name"]: p for p in data["policies"]}
    assert by_name["art@champion"]["decisions"] == 20 and by_name["art@challenger"]["decisions"] == 20
    total = sum(p["reward"] * p["decisions"] for p in data["policies"] if p["model"] == "art")
    assert total == pytest.approx(14)  # every third decision played
    assert all(p["low"] <= p["reward"] <= p["high"] for p in data["policies"])
    only = client.get("/bandits?endpoint=recs").text
    assert "art@champion" not in only and "No decisions" not in only
    assert "No decisions in the event log for endpoint nowhere" in client.get("/bandits?endpoint=nowhere").text


def test_pages_of_live_data_reload_themselves(client: TestClient, events: Path) -> None:
    """Bandits and events reload every LIVE_SECONDS (a link turns it off); finished runs do not."""
    for url in ("/bandits", "/events"):
        page = client.get(url).text
        assert 'data-refresh="15"' in page and "live · 15 s" in page
        assert "data-refresh" not in client.get(url + "?refresh=0").text
    assert "data-refresh" not in client.get("/runs").text  # every run of the fixture has finished
    assert "data-refresh" not in client.get("/models").text


def test_events_page_filters(client: TestClient, events: Path) -> None:
    rows = re.findall(r"<code>(d\d+)</code>", client.get("/events?arm=champion&limit=5").text)
    assert len(rows) == 5 and all(int(r[1:]) % 2 for r in rows)
    assert rows[0] == "d39"  # newest first
    feedback = client.get("/events", params={"kind": "feedback", "unit": "m0"}).text
    assert re.findall(r"<code>(d\d+)</code>", feedback) == ["d21", "d0"]
    assert re.findall(r"<code>(d\d+)</code>", client.get("/events?kind=feedback&decision=d21").text) == ["d21"]
    assert client.get("/events?kind=gossip").status_code == 400
    assert client.get("/events?limit=0").status_code == 400


def test_experiment_page(client: TestClient, events: Path) -> None:
    from matinee.core.experiments import Experiment, create_experiment, start_experiment
    from matinee.core.registry import register_model, set_alias

    for alias in ("champion", "challenger"):
        set_alias("exp-art", alias, register_model("exp-art", {"policy": alias}).version)
    create_experiment(Experiment.build("art-test", ["exp-art@champion=0.5", "exp-art@challenger=0.5"],
                                       endpoint="artwork"))
    assert "art-test" in client.get("/experiments").text
    draft = client.get("/experiments/art-test")
    assert draft.status_code == 200 and "has not started" in draft.text and "data-refresh" not in draft.text
    experiment = start_experiment("art-test")
    running = client.get("/experiments/art-test").text
    assert "no exposures yet" in running and 'data-refresh="15"' in running  # live while it runs
    from matinee.core.events import EventLog
    from matinee.web import pages

    now = time.time()
    with EventLog(events) as log:
        for i in range(60):
            unit = f"u{i}"
            log.append_decision({"decision_id": f"e{i}", "ts": now + i / 100, "unit_id": unit, "endpoint": "artwork",
                                 "model": "exp-art", "model_version": 1, "arm": experiment.assign(unit), "context": [1.0],
                                 "candidates": [0, 1], "action": 0, "propensity": 0.5})
            if i % 4 == 0:
                log.append_feedback({"decision_id": f"e{i}", "ts": now + i / 100 + 0.001, "event": "play", "reward": 1.0})
    pages._analyses.clear()
    page = _main(client.get("/experiments/art-test"))
    assert "<h2>Arms</h2>" in page and "<h2>Effects</h2>" in page, page[:2000]
    assert 'id="effects-data"' in page


# -- static files and the terminal ------------------------------------------------------------------
def test_static_files_are_served_from_packages_and_cached(client: TestClient) -> None:
    plotly = client.get("/static/plotly.min.js")
    assert plotly.status_code == 200 and plotly.headers["content-type"].startswith("text/javascript")
    assert "max-age=31536000" in plotly.headers["cache-control"] and len(plotly.content) > 1_000_000
    assert plotly.headers.get("content-encoding") == "gzip"  # the client asked for it
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    assert "Plotly.newPlot" in client.get("/static/app.js").text


def test_show_graph_in_the_terminal(shop: Path) -> None:
    import os

    env = {**os.environ, "MATINEE_HOME": str(shop), "COLUMNS": "120"}
    done = subprocess.run([sys.executable, "-m", "matinee.cli.main", "show", "Shop/1", "--graph"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Run Shop/1") and "completed" in lines[0]
    steps = [line.split()[0] for line in lines[1:] if line.strip() and line.strip() not in ("|", "v")]
    assert steps == ["start", "work", "join", "end"]
    assert any("work x 3" in line and "completed" in line and re.search(r"\d+\.\d+s", line) for line in lines)
    shape = json.loads(subprocess.run([sys.executable, "-m", "matinee.cli.main", "show", "Shop/1", "--graph", "--json"],
                                      env=env, capture_output=True, text=True, timeout=60).stdout)
    assert [layer[0]["label"] for layer in shape["layers"]] == ["start", "work x 3", "join", "end"]
    wrong = subprocess.run([sys.executable, "-m", "matinee.cli.main", "show", "Shop", "--graph"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode != 0 and "Flow/RUN" in wrong.stderr


# -- scale ---------------------------------------------------------------------------------------------
def test_runs_page_pages_10k_runs_and_20_metrics(home: Path) -> None:
    """At the issue's scale, one page of 50 is rendered, sorted right (its speed is in benchmarks/web)."""
    import random

    from matinee.web.app import create_app

    meta = open_store().metadata
    rng = random.Random(7)
    pending: list[tuple[int, int | None, str, int | None, float, float]] = []
    now = time.time()
    for i in range(10_000):
        run_id = meta.create_run(("A", "B", "C")[i % 3], ("ana", "bo")[i % 2], tags=[("x", "y")[i % 2]])
        pending += [(run_id, None, f"m{j:02d}", 0, rng.random(), now) for j in range(20)]
        if len(pending) >= 20_000:
            meta.log_metrics(pending)
            pending = []
    meta.log_metrics(pending)
    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        for url in ("/runs", "/runs?sort=metric:m07", "/runs?sort=metric:m13&order=asc&page=40",
                    "/runs?flow=B&tag=y&user=bo&sort=metric:m03"):
            page = c.get(url)
            assert page.status_code == 200
            assert len(_run_ids(page.text)) == 50
        top = c.get("/runs?sort=metric:m07").text
    values = [float(v) for v in re.findall(r'data-metric="m07">([0-9.]+)<', top)]
    assert values == sorted(values, reverse=True) and len(values) == 50


# -- a failed run, and previews that must not load much ---------------------------------------------------
def test_failed_run_shows_where_it_stopped(home: Path, write_flow: Any, run_flow: Any) -> None:
    from matinee.web.app import create_app

    flow = write_flow("""
        from matinee import FlowSpec, step


        class Breaks(FlowSpec):
            @step
            def start(self):
                self.fail = True
                self.next(self.a, self.b)

            @step
            def a(self):
                self.next(self.join)

            @step
            def b(self):
                print("about to fail")
                if self.fail:
                    raise ValueError("b <broke>")
                self.next(self.join)

            @step
            def join(self, inputs):
                self.next(self.end)

            @step
            def end(self):
                pass


        if __name__ == "__main__":
            Breaks()
    """)
    done = run_flow(flow, "run")
    assert done.returncode != 0
    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        page = _main(c.get("/runs/1"))
    svg = page[page.index("<svg"):page.index("</svg>")]
    assert re.search(r'class="step status-failed" data-step="b"', svg)
    assert re.search(r'class="step status-completed" data-step="a"', svg)
    assert re.search(r'class="step status-pending" data-step="join"', svg)  # planned, never reached
    assert "ValueError" in page and "b &lt;broke&gt;" in page and "about to fail" in page
    assert "<broke>" not in page


def test_previews_of_large_values_read_little(home: Path) -> None:
    import numpy as np
    import pandas as pd

    from matinee.web.previews import TABLE_BYTES, preview

    artifacts = open_store().artifacts
    big_array = artifacts.save(np.zeros((1000, 400), dtype=np.float64))  # 3.2 MB: shape and dtype only
    shown = preview(artifacts.blobs, big_array)
    assert shown["summary"] == "array (1000, 400) float64" and "text" not in shown
    small = preview(artifacts.blobs, artifacts.save(np.arange(5)))
    assert small["text"] == "[0, 1, 2, 3, 4]"
    frame = pd.DataFrame({"a": np.arange(1_200_000, dtype=np.int64), "b": np.ones(1_200_000)})
    big_table = artifacts.save(frame)
    assert big_table.size > TABLE_BYTES
    shown = preview(artifacts.blobs, big_table)
    assert shown["kind"] == "table" and shown["columns"][:2] == ["a: int64", "b: double"]
    assert len(shown["rows"]) == 8 and "first rows" in shown["note"]
    large_pickle = preview(artifacts.blobs, artifacts.save(list(range(100_000))))
    assert "too large to preview" in large_pickle["summary"]
    assert preview(artifacts.blobs, artifacts.save({"a": [1, 2]}))["text"] == "{'a': [1, 2]}"
    import datetime

    refused = preview(artifacts.blobs, artifacts.save(datetime.date(2026, 1, 1)))
    assert refused["kind"] == "object" and "datetime.date" in refused["summary"]


def test_markup_in_a_run_name_renders_as_text(home: Path) -> None:
    import matinee
    from matinee.web.app import create_app

    name = "<img src=x onerror=alert(1)>"
    with matinee.start_run(name, tags=["<b>t</b>"], params={"<i>p</i>": "<u>v</u>"}) as run:
        run.log_metrics({"<s>m</s>": 1.0}, step=0)
        run.log_metrics({"<s>m</s>": 2.0}, step=1)
    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        pages = [c.get(u).text for u in ("/runs", "/runs/1", "/runs?sort=metric:<s>m</s>", "/compare?runs=1,1")]
        pages.append(c.get("/runs", params={"flow": name}).text)
    for page in pages[:3] + pages[4:]:
        assert "<img src=x" not in page and "<b>t</b>" not in page and "<s>m</s>" not in page.split("</script>")[-1]
        assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;i&gt;p&lt;/i&gt;" in pages[1] and "&lt;u&gt;v&lt;/u&gt;" in pages[1]
    assert "\\u003cs\\u003em\\u003c/s\\u003e" in pages[1]  # the metric's name inside the chart data, JSON-escaped


def test_a_diverged_run_renders_nan_and_its_chart_data_stays_json(home: Path) -> None:
    import matinee
    from matinee.web.app import create_app

    with matinee.start_run("diverging") as run:
        for step, loss in enumerate([1.0, 0.5, math.inf, math.nan]):
            run.log_metric("loss", loss, step=step)
        run.log_metric("grad", -math.inf)
    with matinee.start_run("fine") as other:
        other.log_metric("loss", 0.25, step=0)
        other.log_metric("loss", 0.2, step=1)

    def blocks(page: str) -> list[Any]:
        found = re.findall(r'<script type="application/json" id="[^"]+">(.*?)</script>', page, re.S)
        assert found
        return [json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in a JSON block")) for text in found]

    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        detail = c.get(f"/runs/{run.id}")
        assert detail.status_code == 200
        assert blocks(detail.text)[0]["loss"] == {"x": [0, 1, 2, 3], "y": [1.0, 0.5, None, None]}  # gaps
        latest = _main(detail)
        assert re.search(r"<th>loss</th><td class=\"num\">nan</td>", latest)
        assert re.search(r"<th>grad</th><td class=\"num\">-inf</td>", latest)
        for order in ("desc", "asc"):
            page = c.get(f"/runs?sort=metric:loss&order={order}")
            assert page.status_code == 200 and _run_ids(page.text) == [other.id, run.id]  # NaN last either way
        compare = c.get(f"/compare?runs={run.id},{other.id}")
        assert compare.status_code == 200 and ">nan<" in compare.text
        assert blocks(compare.text)[0]["loss"][f"diverging/{run.id}"]["y"][-1] is None


def test_bandits_page_shows_the_training_runs_off_policy_estimates(home: Path) -> None:
    import matinee
    from matinee.core.events import EventLog
    from matinee.web.app import create_app

    with matinee.start_run("ArtworkTraining") as run:
        for policy, value in (("LinUCB", 0.42), ("<b>Uniform</b>", 0.2)):
            for estimator in ("dr", "ips"):
                run.log_metrics({f"{policy}/ope/{estimator}": value, f"{policy}/ope/{estimator}_low": value - 0.05,
                                 f"{policy}/ope/{estimator}_high": value + 0.05})
        run.log_metrics({"best/ope/dr": 0.42})
    meta = open_store().metadata
    meta.add_model_version("art", {"run_id": 1, "artifact_key": "0" * 64,
                                   "metrics": json.dumps({"dr": 0.42, "dr_low": 0.37, "dr_high": 0.47})})
    with EventLog(home / "events" / "events.db") as log:
        for i in range(10):
            log.append_decision({"decision_id": f"d{i}", "unit_id": "u", "endpoint": "artwork", "model": "art",
                                 "model_version": 1, "arm": "champion", "context": [], "candidates": [0, 1],
                                 "action": 0, "propensity": 0.5})
    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        page = _main(c.get("/bandits"))
    assert 'Off-policy estimates of <a href="/runs/1">ArtworkTraining/1</a>' in page
    assert "<td>LinUCB</td>" in page and "&lt;b&gt;Uniform&lt;/b&gt;" in page and "<td>best</td>" not in page
    assert "0.42 <span class=\"muted\">[0.37, 0.47]</span>" in page
    data = json.loads(re.search(r'id="bandit-data">(.*?)</script>', page).group(1))
    assert [p["policy"] for p in data["ope"][0]["policies"]] == ["LinUCB", "<b>Uniform</b>"]  # best DR first
    assert data["ope"][0]["estimators"] == ["dr", "ips"]
    assert data["policies"][0]["estimate"] == {"version": 1, "value": 0.42, "low": 0.37, "high": 0.47}
