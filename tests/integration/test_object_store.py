"""Artifacts in an S3 bucket, end to end: a flow run as a real process stores its
artifacts through ``MATINEE_ARTIFACT_URL=s3://...`` on a moto server (127.0.0.1,
real HTTP), the client reads them back, a model registered from the run loads,
gc deletes from the bucket exactly the blobs nothing references any more, and a
missing bucket fails the run with one line naming the bucket and the setting."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import matinee
from _s3 import s3_client, s3_server, s3_url  # noqa: F401  (fixtures)
from matinee.core.artifacts.store import ArtifactStore
from matinee.core.gc import apply_gc, plan_gc
from matinee.core.storage.blobs import LocalBlobStore, S3BlobStore
from matinee.core.store import close_stores, open_store

FLOW = """
import numpy as np
from matinee import FlowSpec, Parameter, current, step

class S3Flow(FlowSpec):
    seed = Parameter("seed", default=0)

    @step
    def start(self):
        self.items = [1, 2, 3]
        print("starting", self.seed)
        self.next(self.square, foreach="items")

    @step
    def square(self):
        self.value = self.input ** 2
        self.next(self.join)

    @step
    def join(self, inputs):
        self.squares = sorted(i.value for i in inputs)
        self.model = {"seed": self.seed, "weights": np.full(1000, float(self.seed))}
        self.next(self.end)

    @step
    def end(self):
        current.log_metric("total", float(sum(self.squares)))


if __name__ == "__main__":
    S3Flow()
"""


def content_key_of(value: Any, tmp_path: Path) -> str:
    """The key ``value`` is stored under (encoding is deterministic)."""
    return ArtifactStore(LocalBlobStore(tmp_path / f"scratch-{uuid.uuid4().hex}")).save(value).key


def bucket_keys(client: Any, url: str) -> set[str]:
    bucket = url.removeprefix("s3://").split("/", 1)[0]
    return {path.rsplit("/", 1)[-1] for path in client.find(f"{bucket}/blobs")}


def run_id(proc: Any) -> int:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    flow = matinee.Flow("S3Flow")
    return flow.latest_run.id  # type: ignore[no-any-return]


def test_a_flow_stores_artifacts_in_s3_and_everything_reads_them_back(
    write_flow: Callable[..., Path],
    run_flow: Callable[..., Any],
    s3_url: str,  # noqa: F811
    s3_client: Any,  # noqa: F811
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MATINEE_ARTIFACT_URL", s3_url)
    close_stores()
    path = write_flow(FLOW)
    env = {"MATINEE_ARTIFACT_URL": s3_url}

    first = run_id(run_flow(path, "run", "--seed", "1", env=env))
    run = matinee.Run(f"S3Flow/{first}")
    assert run.data.squares == [1, 4, 9]
    assert run.data.model["seed"] == 1
    np.testing.assert_array_equal(run.data.model["weights"], np.full(1000, 1.0))
    assert sorted(t.data.value for t in run["square"]) == [1, 4, 9]  # from forked tasks
    assert isinstance(open_store().artifacts.blobs, S3BlobStore)
    assert not (home / "blobs").exists()  # nothing went to the local folder
    stored = bucket_keys(s3_client, s3_url)
    model_key = content_key_of(run.data.model, tmp_path)
    assert model_key in stored

    version = matinee.register_model("s3-model", f"S3Flow/{first}:model")
    close_stores()  # a new process's view
    loaded = matinee.load_model(f"s3-model/{version.version}")
    assert loaded["seed"] == 1 and loaded["weights"].shape == (1000,)

    second = run_id(run_flow(path, "run", "--seed", "2", env=env))
    doomed_key = content_key_of(matinee.Run(f"S3Flow/{second}").data.model, tmp_path)
    before = bucket_keys(s3_client, s3_url)
    assert {model_key, doomed_key} <= before

    store = open_store()
    plan = plan_gc(store, keep_last=0, grace=0)  # every run but the first: a model comes from it
    assert [r["id"] for r in plan.runs] == [second]
    assert plan.kept_for_models == [first]
    assert doomed_key in {b.key for b in plan.blobs}
    apply_gc(store, plan)

    after = bucket_keys(s3_client, s3_url)
    assert doomed_key not in after
    assert model_key in after
    assert before - after == {b.key for b in plan.blobs}
    close_stores()
    assert matinee.load_model(f"s3-model/{version.version}")["seed"] == 1
    assert matinee.Run(f"S3Flow/{first}").data.squares == [1, 4, 9]  # every blob of the kept run is there
    assert sorted(t.data.value for t in matinee.Run(f"S3Flow/{first}")["square"]) == [1, 4, 9]
    assert plan_gc(open_store(), grace=0).blobs == []  # nothing left to collect


def test_a_run_against_a_missing_bucket_fails_naming_the_bucket_and_the_setting(
    write_flow: Callable[..., Path], run_flow: Callable[..., Any], s3_server: str  # noqa: F811
) -> None:
    bucket = f"absent-{uuid.uuid4().hex[:8]}"
    proc = run_flow(write_flow(FLOW), "run", env={"MATINEE_ARTIFACT_URL": f"s3://{bucket}/blobs"})
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert f"the bucket '{bucket}' does not exist at {s3_server}" in out
    assert "MATINEE_ARTIFACT_URL" in out
