"""``matinee models ...`` run as real processes against a real store, after a real flow run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FLOW = """
from matinee import FlowSpec, current, step

class TrainFlow(FlowSpec):
    @step
    def start(self):
        self.dataset_hash = "ds-42"
        self.model = {"weights": [1, 2, 3]}
        current.register_model("ranker", "model", metrics={"recall": 0.4}, description="from a step")
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    TrainFlow()
"""


def matinee(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "matinee.cli.main", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def as_json(*args: str) -> Any:
    done = matinee(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def trained(write_flow: Any, run_flow: Any) -> str:
    """Run the flow (it registers ranker/1), then register ranker/2 from its end task."""
    done = run_flow(write_flow(FLOW, "train_flow.py"), "run", "--quiet")
    assert done.returncode == 0, done.stderr
    script = "import matinee; print(matinee.register_model('ranker', 'TrainFlow/1:model', tags=['cli']).version)"
    registered = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert registered.stdout.strip() == "2", registered.stderr
    return "TrainFlow/1"


def test_ls_show_and_versions(trained: str) -> None:
    (model,) = as_json("models", "ls")
    assert (model["name"], model["versions"], model["latest_version"], model["aliases"]) == ("ranker", 2, 2, {})
    first = as_json("models", "show", "ranker/1")
    assert first["run_pathspec"] == trained and first["artifact_name"] == "model"
    assert first["dataset_hash"] == "ds-42" and first["description"] == "from a step"
    assert first["metrics"] == {"recall": 0.4} and first["code_version"]
    second = as_json("models", "show", "ranker")
    assert second["version"] == 2 and second["tags"] == ["cli"] and second["source"].endswith("/end/2:model")
    assert second["artifact_key"] == first["artifact_key"]  # the same value, stored once
    assert [v["version"] for v in as_json("models", "versions", "ranker")] == [1, 2]
    table = matinee("models", "versions", "ranker")
    assert table.returncode == 0 and "ranker" in table.stdout and "recall=0.4" in table.stdout


def test_alias_promote_rollback_and_history(trained: str) -> None:
    assert as_json("models", "alias", "ranker", "challenger", "2") == {
        "name": "ranker", "alias": "challenger", "version": 2}
    assert as_json("models", "promote", "ranker", "1")["version"] == 1
    assert as_json("models", "promote", "ranker", "2", "--alias", "champion")["version"] == 2
    assert as_json("models", "show", "ranker@champion")["aliases"] == ["challenger", "champion"]
    rolled = as_json("models", "rollback", "ranker")
    assert (rolled["from_version"], rolled["to_version"]) == (2, 1)
    assert as_json("models", "alias", "ranker", "challenger", "--delete")["version"] == 2
    history = [(h["alias"], h["action"], h["from_version"], h["to_version"])
               for h in as_json("models", "history", "ranker")]
    assert history == [
        ("challenger", "set", None, 2),
        ("champion", "promote", None, 1),
        ("champion", "promote", 1, 2),
        ("champion", "rollback", 2, 1),
        ("challenger", "delete", 2, None),
    ]
    assert len(as_json("models", "history", "ranker", "--alias", "champion")) == 3
    table = matinee("models", "history", "ranker")
    assert table.returncode == 0 and "rollback" in table.stdout
    plain = matinee("models", "promote", "ranker", "2")
    assert plain.returncode == 0 and "promoted ranker/2 to champion" in plain.stdout
    loaded = subprocess.run([sys.executable, "-c", "import matinee; print(matinee.load_model('ranker@champion'))"],
                            capture_output=True, text=True, timeout=60)
    assert loaded.stdout.strip() == "{'weights': [1, 2, 3]}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("models", "show", "nope"), "error: no model named 'nope' is registered"),
        (("models", "show", "ranker/9"), "error: model 'ranker' has no version 9"),
        (("models", "show", "ranker@gone"), "error: model 'ranker' has no alias 'gone'"),
        (("models", "promote", "ranker", "9"), "error: model 'ranker' has no version 9"),
        (("models", "rollback", "ranker"), "error: model 'ranker' has no alias 'champion'"),
        (("models", "alias", "ranker", "x"), "error: give the VERSION"),
        (("models", "alias", "ranker", "1bad", "1"), "error: invalid alias '1bad'"),
        (("models", "versions", "bad name"), "error: invalid model name 'bad name'"),
    ],
)
def test_errors_are_one_line(trained: str, args: tuple[str, ...], message: str) -> None:
    done = matinee(*args)
    assert done.returncode == 2
    assert done.stderr.strip().startswith(message) and len(done.stderr.strip().splitlines()) == 1


def test_ls_on_an_empty_store() -> None:
    assert as_json("models", "ls") == []
    assert matinee("models", "--help").returncode == 0
