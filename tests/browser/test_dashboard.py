"""The dashboard in a real browser: Playwright driving Debian's Chromium against `matinee ui --port 0`.

Skipped, saying why, where Playwright or /usr/bin/chromium is missing. Screenshots
go to ``$MATINEE_SCREENSHOTS`` when set (CI keeps them as artifacts), else to
``screenshots/`` under pytest's temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from _web_server import WebServer, create_token, server_env

CHROMIUM = Path("/usr/bin/chromium")
REQUIRED = os.environ.get("MATINEE_REQUIRE_BROWSER") == "1"  # CI installs both: a skip there is a failure


def _unavailable(reason: str) -> None:  # pragma: no cover - depends on the machine
    if REQUIRED:
        pytest.fail(f"{reason}, and MATINEE_REQUIRE_BROWSER=1", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    _unavailable("Playwright is not installed (pip install playwright): the browser tests need it")
if not CHROMIUM.exists():  # pragma: no cover - depends on the machine
    _unavailable(f"{CHROMIUM} is absent (apt-get install chromium): the browser tests drive it")

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
MODEL = "browser-model"
FLOW = """
    from matinee import FlowSpec, Parameter, current, step


    class Tune(FlowSpec):
        alpha = Parameter("alpha", default=0.5, type=float)

        @step
        def start(self):
            for i in range(6):
                current.log_metric("loss", (2 - self.alpha) / (i + 1), step=i)
            current.log_metric("auc", self.alpha)
            self.model = {"alpha": self.alpha}
            self.next(self.end)

        @step
        def end(self):
            pass


    if __name__ == "__main__":
        Tune()
"""


@dataclass
class Dashboard:
    url: str
    home: Path
    env: dict[str, str]
    shots: Path
    problems: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """Three Tune runs (alpha 0.2, 0.8, 0.5), a model with two versions (v1 champion), and `matinee ui` on them."""
    folder = tmp_path_factory.mktemp("dashboard")
    home = folder / "home"
    env = server_env(home)
    flow = folder / "tune.py"
    flow.write_text(textwrap.dedent(FLOW))
    for alpha in ("0.2", "0.8", "0.5"):
        done = subprocess.run([sys.executable, str(flow), "run", "--alpha", alpha, "--tag", "<script>alert(1)</script>"],
                              cwd=folder, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    register = ("from matinee.core.registry import promote, register_model\n"
                f"register_model({MODEL!r}, 'Tune/1:model', metrics={{'auc': 0.2}})\n"
                f"register_model({MODEL!r}, 'Tune/2:model', metrics={{'auc': 0.8}})\n"
                f"promote({MODEL!r}, 1)\n")
    subprocess.run([sys.executable, "-c", register], env=env, check=True, timeout=60)
    shots = Path(os.environ.get("MATINEE_SCREENSHOTS") or tmp_path_factory.getbasetemp() / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    with WebServer(env, command="ui", log_path=folder / "ui.log") as server:
        yield Dashboard(server.url, home, env, shots)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, dashboard: Dashboard) -> Iterator[Any]:
    """A fresh page that records console errors, uncaught exceptions and CSP violations; none may happen."""
    context = browser.new_context(viewport={"width": 1360, "height": 900}, base_url=dashboard.url)
    tab = context.new_page()
    problems: list[str] = []

    def console(message: Any) -> None:
        text = message.text
        if "Content Security Policy" in text or (message.type == "error" and "Failed to load resource" not in text):
            problems.append(f"console {message.type}: {text}")

    tab.on("console", console)
    tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    tab.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    # a page asked for on purpose may answer 4xx; anything it loads must not
    tab.on("response", lambda r: problems.append(f"{r.status} for {r.url}")
           if r.status >= 400 and r.request.resource_type != "document" else None)
    tab.on("request", lambda r: problems.append(f"left 127.0.0.1: {r.url}")
           if not r.url.startswith((dashboard.url, "data:", "blob:", "about:")) else None)
    yield tab
    context.close()
    assert problems == [], problems


def _run_order(page: Any) -> list[int]:
    return [int(x) for x in page.eval_on_selector_all("tr[data-run]", "rows => rows.map(r => r.dataset.run)")]


def test_runs_page_sorts_by_a_metric(page: Any, dashboard: Dashboard) -> None:
    page.goto("/runs")
    assert _run_order(page) == [3, 2, 1]
    assert page.locator("td .tag").first.inner_text() == "<script>alert(1)</script>"  # shown as text, not run
    page.select_option("#sort", "metric:auc")
    page.select_option("#order", "desc")
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(r"sort=metric%3Aauc"))
    assert _run_order(page) == [2, 3, 1]  # auc 0.8, 0.5, 0.2
    page.click("th a[data-metric=auc]")  # the sorted column's header flips the order
    page.wait_for_url(re.compile(r"order=asc"))
    assert _run_order(page) == [1, 3, 2]
    cells = page.eval_on_selector_all("td.metric[data-metric=auc]", "cs => cs.map(c => parseFloat(c.textContent))")
    assert cells == sorted(cells)
    page.screenshot(path=str(dashboard.shots / "runs-sorted-by-auc.png"), full_page=True)


def test_run_page_draws_its_charts_and_graph(page: Any, dashboard: Dashboard) -> None:
    page.goto("/runs")
    page.click("tr[data-run='2'] td a")
    page.wait_for_url(re.compile(r"/runs/2$"))
    page.wait_for_selector(".charts .main-svg", timeout=15_000)
    assert page.locator(".charts > .chart").count() == 1  # loss; auc has one value, shown in the table only
    assert page.locator(".charts > .chart[data-metric=loss] .scatterlayer .point").count() == 6
    assert page.locator("svg.flow-graph g.step").count() == 2
    assert page.locator("svg.flow-graph g.status-completed").count() == 2
    page.screenshot(path=str(dashboard.shots / "run-2.png"), full_page=True)


def test_compare_two_runs(page: Any, dashboard: Dashboard) -> None:
    page.goto("/runs")
    page.check("tr[data-run='1'] input[name=runs]")
    page.check("tr[data-run='2'] input[name=runs]")
    page.click("#compare-button")
    page.wait_for_url(re.compile(r"/compare\?runs=\d&runs=\d"))
    page.wait_for_selector(".charts .main-svg", timeout=15_000)
    assert page.locator("tr.differs th", has_text="alpha").count() == 1
    loss = page.locator(".charts > .chart[data-metric=loss]")
    assert loss.locator(".scatterlayer .trace").count() == 2  # one line per run, overlaid
    assert set(loss.locator(".legendtext").evaluate_all("ts => ts.map(t => t.textContent)")) == {"Tune/1", "Tune/2"}
    page.screenshot(path=str(dashboard.shots / "compare-1-2.png"), full_page=True)


def test_compare_with_one_run_says_why(page: Any, dashboard: Dashboard) -> None:
    response = page.goto("/compare?runs=1")
    assert response is not None and response.status == 400
    assert "runs must name 2 to 10 runs" in page.inner_text("main")


def test_promote_a_version_through_the_ui(page: Any, dashboard: Dashboard) -> None:
    page.goto(f"/models/{MODEL}")
    assert page.inner_text("tr[data-alias=champion] .alias-version") == "v1"
    dialogs: list[str] = []

    def answer(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss() if len(dialogs) == 1 else dialog.accept()

    page.on("dialog", answer)
    row = page.locator("tr[data-version='2']")
    row.locator("button", has_text="Promote").click()  # first asked: dismissed, nothing moves
    assert page.inner_text("tr[data-alias=champion] .alias-version") == "v1"
    with page.expect_navigation():
        row.locator("button", has_text="Promote").click()  # asked again: confirmed
    assert dialogs == [f"Point {MODEL}@champion at version 2?"] * 2
    assert page.inner_text("tr[data-alias=champion] .alias-version") == "v2"
    assert "champion version 1 -> 2" in page.inner_text("#moved")
    assert page.locator("table.history tbody tr").first.inner_text().split("\t")[1:5] == ["champion", "promote", "v1", "v2"]
    page.screenshot(path=str(dashboard.shots / "model-promoted.png"), full_page=True)
    listed = subprocess.run([sys.executable, "-m", "matinee.cli.main", "models", "ls", "--json"], env=dashboard.env,
                            capture_output=True, text=True, timeout=60, check=True)
    model = next(m for m in json.loads(listed.stdout) if m["name"] == MODEL)
    assert model["aliases"] == {"champion": 2}
    page.goto("/models")
    assert "champion → v2" in page.inner_text("main")


def test_log_in_and_out_through_the_form(browser: Any, tmp_path: Path) -> None:
    """With a token in the store every page asks for a login; the form (and its CSRF field) lets a browser in."""
    env = server_env(tmp_path / "home")
    token = create_token(env, "browser-user", "reader")
    with WebServer(env, command="ui", log_path=tmp_path / "ui.log") as server:
        context = browser.new_context(viewport={"width": 1360, "height": 900}, base_url=server.url)
        tab = context.new_page()
        problems: list[str] = []
        tab.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
               if "Content Security Policy" in m.text else None)
        tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        try:
            tab.goto("/runs")
            tab.wait_for_url(re.compile(r"/login\?next="))
            tab.fill("#token", "mt_000000000000_" + "x" * 43)
            tab.click("form[action='/login'] button[type=submit]")
            assert "the token is not valid" in tab.inner_text(".alert")
            tab.fill("#token", token)
            with tab.expect_navigation():
                tab.click("form[action='/login'] button[type=submit]")
            assert re.search(r"/runs$", tab.url), tab.url
            assert "browser-user" in tab.inner_text(".principal")
            with tab.expect_navigation():
                tab.click("form[action='/logout'] button")
            assert "/login" in tab.url
            tab.goto("/runs")
            tab.wait_for_url(re.compile(r"/login\?next="))
        finally:
            context.close()
    assert problems == [], problems
