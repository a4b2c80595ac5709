"""Flows, tracking and the registry against a real ``matinee server``, through MATINEE_TRACKING_URI.

A flow runs as its own process with only ``MATINEE_TRACKING_URI`` and
``MATINEE_TOKEN`` telling it where the store is; what it made is then read back
through the client API both remotely and from the server's own local store, and
the registry's promote / rollback go through the server with an admin token and
are refused with a writer's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import matinee
from _web_server import create_token, matinee_server, server_env
from matinee.core import registry
from matinee.core.store import close_stores, open_store
from matinee.errors import ConfigError, NotFoundError, NotSupportedError

FLOW = """
from matinee import FlowSpec, Parameter, current, step


class RemoteFlow(FlowSpec):
    scale = Parameter("scale", default=2)

    @step
    def start(self):
        self.items = [1, 2, 3]
        current.log_params({"optimizer": "sgd"})
        for epoch in range(20):
            current.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
        self.next(self.each, foreach="items")

    @step
    def each(self):
        self.value = self.input * self.scale
        current.log_metric("value", float(self.value), step=self.index)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.values = sorted(i.value for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        self.model = {"weights": self.values, "blob": bytes(range(256)) * 400}
        current.register_model("remote-recs", self.model, metrics={"total": float(sum(self.values))})


if __name__ == "__main__":
    RemoteFlow()
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    home = tmp_path / "server-home"
    env = server_env(home)
    tokens = {role: create_token(env, role, role) for role in ("writer", "admin")}
    with matinee_server(env) as url:
        yield {"url": url, "home": home, "tokens": tokens}


@pytest.fixture
def use(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Point this process's store at the server (with a token) or at the server's local home."""

    def switch(server: dict[str, Any], role: str | None = None) -> None:
        if role is None:
            monkeypatch.delenv("MATINEE_TRACKING_URI", raising=False)
            monkeypatch.delenv("MATINEE_TOKEN", raising=False)
            monkeypatch.setenv("MATINEE_HOME", str(server["home"]))
        else:
            monkeypatch.setenv("MATINEE_TRACKING_URI", server["url"])
            monkeypatch.setenv("MATINEE_TOKEN", server["tokens"][role])
        close_stores()

    return switch


def read_back(run_id: int) -> dict[str, Any]:
    run = matinee.Run(f"RemoteFlow/{run_id}")
    return {
        "status": run.status, "params": run.params, "values": run.data.values,
        "weights": run["end"].task.data.model["weights"],
        "loss": list(run.metric("loss").values), "value": sorted(run.metric("value").values),
        "each": sorted(t.data.value for t in run["each"].tasks()),
    }


def test_a_flow_run_through_the_server_reads_back_the_same_remotely_and_locally(
    server: dict[str, Any], write_flow: Callable[..., Path], run_flow: Callable[..., Any], tmp_path: Path,
    use: Callable[..., None],
) -> None:
    flow = write_flow(FLOW)
    elsewhere = tmp_path / "client-home"  # the client's own home stays empty: everything goes to the server
    env = {"MATINEE_TRACKING_URI": server["url"], "MATINEE_TOKEN": server["tokens"]["writer"],
           "MATINEE_HOME": str(elsewhere)}
    done = run_flow(flow, "run", "--scale", "3", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (elsewhere / "meta.db").exists()

    use(server, "writer")
    run_id = matinee.Flow("RemoteFlow").latest_run.id
    remote = read_back(run_id)
    assert remote == {
        "status": "completed", "params": {"scale": 3, "optimizer": "sgd"}, "values": [3, 6, 9],
        "weights": [3, 6, 9], "loss": [1.0 / (e + 1) for e in range(20)], "value": [3.0, 6.0, 9.0],
        "each": [3, 6, 9],
    }
    model = registry.get_model("remote-recs")
    assert (model.version, model.run_id) == (1, run_id)
    assert matinee.load_model("remote-recs/1")["weights"] == [3, 6, 9]

    use(server, None)  # the same, from the server's own SQLite file and blob folder
    assert read_back(run_id) == remote
    assert registry.get_model("remote-recs").version == 1
    assert isinstance(open_store().metadata, type(open_store().metadata)) and open_store().settings.tracking_uri is None


def test_promote_and_rollback_need_an_admin_token(server: dict[str, Any], use: Callable[..., None]) -> None:
    use(server, "writer")
    first = matinee.register_model("ranker", {"w": 1})
    second = matinee.register_model("ranker", {"w": 2})
    with pytest.raises(ConfigError, match="MATINEE_TOKEN"):
        registry.promote("ranker", first.version, "champion")

    use(server, "admin")
    registry.promote("ranker", first.version, "champion")
    registry.promote("ranker", second.version, "champion")
    assert registry.get_model("ranker", alias="champion").version == second.version
    assert registry.rollback("ranker", "champion").version == first.version
    assert [c.action for c in registry.alias_history("ranker", "champion")] == ["promote", "promote", "rollback"]

    use(server, "writer")
    with pytest.raises(ConfigError, match="MATINEE_TOKEN"):
        registry.rollback("ranker", "champion")
    assert matinee.load_model("ranker@champion") == {"w": 1}
    with pytest.raises(NotSupportedError, match="server"):
        open_store().metadata.referenced_keys()

    use(server, None)
    history = registry.alias_history("ranker", "champion")
    assert [(c.action, c.to_version) for c in history] == [("promote", 1), ("promote", 2), ("rollback", 1)]
    audit = open_store().metadata.audit_log(limit=50)
    actions = {(a["action"], a["outcome"], a["actor"]) for a in audit}
    assert ("alias.move", "ok", "admin") in actions and ("alias.rollback", "ok", "admin") in actions
    assert any(a["outcome"] == "denied" and a["actor"] == "writer" for a in audit)
    assert os.environ.get("MATINEE_TRACKING_URI") is None


def test_experiments_are_managed_through_the_server(server: dict[str, Any], use: Callable[..., None],
                                                    tmp_path: Path) -> None:
    """The experiments CLI with MATINEE_TRACKING_URI: every change lands in the server's store, checked there."""
    import json
    import subprocess
    import sys

    from matinee.core.experiments import get_experiment

    use(server, "admin")
    for version in (matinee.register_model("exp-ranker", {"w": 1}).version,
                    matinee.register_model("exp-ranker", {"w": 2}).version):
        registry.promote("exp-ranker", version, "champion" if version == 1 else "challenger")
    env = {**os.environ, "MATINEE_TRACKING_URI": server["url"], "MATINEE_TOKEN": server["tokens"]["writer"],
           "MATINEE_HOME": str(tmp_path / "client-home"), "MATINEE_USER": "remote-alice"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "matinee.cli.main", "experiments", *args], env=env,
                              capture_output=True, text=True, timeout=120)

    made = cli("create", "remote-ab", "--arm", "exp-ranker@champion=0.9", "--arm", "exp-ranker@challenger=0.1",
               "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["owner"] == "remote-alice"
    unknown = cli("create", "remote-bad", "--arm", "exp-ranker@champion", "--arm", "exp-ranker@nowhere")
    assert unknown.returncode == 2 and "exp-ranker@nowhere" in unknown.stderr and unknown.stderr.count("\n") == 1
    assert cli("create", "remote-gone", "--arm", "exp-ranker@champion", "--arm", "exp-ranker@challenger").returncode == 0
    assert cli("start", "remote-ab").returncode == 0
    again = cli("start", "remote-ab")
    assert again.returncode == 2 and "only a draft can start" in again.stderr
    listed = json.loads(cli("ls", "--status", "running", "--json").stdout)
    assert [e["name"] for e in listed] == ["remote-ab"]
    assert json.loads(cli("show", "remote-ab", "--json").stdout)["deployment"]["split"] == {
        "champion": 90.0, "challenger": 10.0}  # percent, as the deployment file takes it
    assert cli("stop", "remote-ab").returncode == 0
    assert cli("delete", "remote-gone").returncode == 0
    refused = cli("delete", "remote-ab")
    assert refused.returncode == 2 and "only a draft can be deleted" in refused.stderr

    use(server, None)  # what the server's own store holds
    stored = get_experiment("remote-ab")
    assert (stored.status, stored.owner, stored.weights) == ("stopped", "remote-alice",
                                                             {"champion": 0.9, "challenger": 0.1})
    assert stored.started_at is not None and stored.stopped_at is not None
    with pytest.raises(NotFoundError, match="no experiment named 'remote-gone'"):
        get_experiment("remote-gone")
    actions = [a["action"] for a in open_store().metadata.audit_log(limit=50) if a["action"].startswith("experiment.")]
    assert sorted(actions) == sorted(["experiment.create"] * 2 + ["experiment.start", "experiment.stop",
                                                                  "experiment.delete"])
