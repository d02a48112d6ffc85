"""Runs that a killed process left RUNNING are marked KILLED by the next one, on a real
SQLite MLflow store; runs whose process still runs, here or elsewhere, are left alone."""

from __future__ import annotations

import signal
import subprocess
import sys

import mlflow
import pytest
from mlflow import MlflowClient

from recsys import tracking
from recsys.config import load_config
from tests.conftest import ROOT, write_conf

# A train-like process: parent and nested run open, then killed before it can close them.
CHILD = """
import sys, time
import mlflow
from recsys.config import load_config
from recsys import tracking
tracking.setup(load_config(sys.argv[1]))
with mlflow.start_run(run_name="train killed"):
    mlflow.set_tag("recsys.step", "train")
    with mlflow.start_run(run_name="als killed", nested=True):
        print("running", flush=True)
        time.sleep(600)
"""


@pytest.fixture
def own_store(tmp_path):
    before = mlflow.get_tracking_uri()
    config = load_config(write_conf(tmp_path))
    yield config
    mlflow.set_tracking_uri(before)


def test_the_next_run_marks_a_killed_processs_runs_killed(own_store):
    config = own_store
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, config.source],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "running"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        child.kill()

    tracking.setup(config)  # what train, recommend and analyze call first
    client = MlflowClient()
    experiment = client.get_experiment_by_name(config.mlflow.experiment).experiment_id
    elsewhere = client.create_run(experiment, tags={tracking.OWNER_TAG: "other-host:1:1"})
    with mlflow.start_run(run_name="this process, still running") as alive:
        assert tracking.end_abandoned_runs(client, experiment) == []  # setup did it
        status = {run.info.run_name: run.info.status for run in client.search_runs([experiment])}
        assert client.get_run(alive.info.run_id).info.status == "RUNNING"
    assert status == {
        "train killed": "KILLED",
        "als killed": "KILLED",
        "this process, still running": "RUNNING",
        elsewhere.info.run_name: "RUNNING",  # another host: nothing here can tell
    }
    client.set_terminated(elsewhere.info.run_id)
