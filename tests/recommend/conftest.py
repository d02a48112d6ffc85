"""A small world with a served model, in its own database and MLflow store, shared by the
recommend tests: world -> interactions -> train (BPR against the baselines, one trial)."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from recsys.config import load_config
from recsys.interactions import job as interactions_job
from recsys.training import job as train_job
from recsys.training import tracking
from recsys.world import job as world_job
from tests.conftest import write_conf


@pytest.fixture(scope="session")
def served(spark, config, tmp_path_factory):
    """(conf path, config) of a world whose registry has a champion."""
    folder = tmp_path_factory.mktemp("recommend")
    path = write_conf(
        folder,
        catalog={
            "database": "recommend_tests",
            "warehouse_dir": config.catalog.warehouse_dir,
            "metastore_dir": config.catalog.metastore_dir,
        },
        world={"users": 4_000},
        train={
            "max_trials": 1,
            "models": {"spark_als": {"enabled": False}, "implicit_als": {"enabled": False}},
        },
    )
    small = load_config(path)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {small.catalog.database}")
    world_job.run(spark, small)
    interactions_job.run(spark, small)
    train_job.run(spark, small)
    tracking.setup(small)
    client = MlflowClient()
    name = small.train.registered_model
    if "champion" not in client.get_registered_model(name).aliases:
        # A world this small may not pass the gate; an approver promotes by hand in the
        # MLflow UI, which is this call.
        client.set_registered_model_alias(name, "champion", "1")
    yield path, small
    mlflow.set_tracking_uri(config.mlflow.tracking_uri)
