"""One SparkSession for the whole test run, with its catalog in a temporary folder, and the
small served world that the recommend, experiment and notebook tests share."""

from __future__ import annotations

import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow import MlflowClient
from pyspark.sql import SparkSession

from recsys import tracking
from recsys.config import Config, load_config
from recsys.experiment import job as experiment_job
from recsys.interactions import job as interactions_job
from recsys.progress import setup_logging
from recsys.recommend import job as recommend_job
from recsys.session import build_session
from recsys.training import job as train_job
from recsys.world import job as world_job

ROOT = Path(__file__).resolve().parents[1]
LOCAL_CONF = ROOT / "conf" / "local.yaml"


def write_conf(folder: Path, extends: Path = LOCAL_CONF, **sections: dict) -> Path:
    """A config file extending ``extends`` (conf/local.yaml) with its state under ``folder``."""
    settings = {
        "extends": str(extends),
        "spark": {
            "master": "local[2]",
            "shuffle_partitions": 2,
            "driver_memory": "4g",
            "checkpoint_dir": str(folder / "checkpoints"),
            "extra": {"spark.ui.enabled": "false"},
        },
        "catalog": {
            "warehouse_dir": str(folder / "warehouse"),
            "metastore_dir": str(folder / "metastore"),
        },
        "mlflow": {
            "tracking_uri": f"sqlite:///{folder / 'mlflow.db'}",
            "artifact_location": str(folder / "mlartifacts"),
        },
        "train": {"model_dir": str(folder / "models"), "report_dir": str(folder / "reports")},
        "analyze": {"report_dir": str(folder / "reports")},
        "logging": {"level": "INFO"},
    }
    for key, value in sections.items():
        settings.setdefault(key, {}).update(value)
    path = folder / "test.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def database_conf(
    folder: Path, config: Config, database: str, extends: Path = LOCAL_CONF, **sections: dict
) -> Path:
    """A config like :func:`write_conf`'s whose tables go to their own ``database`` in the
    session's catalog (``config``'s warehouse and metastore), so that a test replacing
    tables leaves the others' alone."""
    catalog = {
        "database": database,
        "warehouse_dir": config.catalog.warehouse_dir,
        "metastore_dir": config.catalog.metastore_dir,
    }
    return write_conf(folder, extends, catalog=catalog, **sections)


def console_script(name: str) -> str:
    """The path of an executable installed next to this interpreter (the venv's ``recsys``,
    ``spark-submit``, ``spark-class``), else the one on PATH."""
    found = Path(sys.executable).with_name(name)
    return str(found) if found.exists() else shutil.which(name)


def promote_if_needed(config: Config) -> None:
    """Point ``champion`` at version 1 when train did not: a world this small may not pass
    the gate, and an approver promotes by hand in the MLflow UI, which is this call."""
    tracking.setup(config)
    client = MlflowClient()
    name = config.train.registered_model
    if "champion" not in client.get_registered_model(name).aliases:
        client.set_registered_model_alias(name, "champion", "1")


@pytest.fixture(scope="session")
def conf_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_conf(tmp_path_factory.mktemp("recsys"))


@pytest.fixture(scope="session")
def config(conf_path: Path) -> Config:
    return load_config(conf_path)


@pytest.fixture(scope="session")
def spark(config: Config) -> SparkSession:
    setup_logging("INFO")
    session = build_session(config, app_name="recsys tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def served(spark, config, tmp_path_factory):
    """(conf path, config) of a world whose registry has a champion."""
    folder = tmp_path_factory.mktemp("recommend")
    path = database_conf(
        folder,
        config,
        "recommend_tests",
        world={"users": 4_000},
        train={
            "max_trials": 1,
            # The recommend and experiment tests read a conversion champion's lists; on a
            # world this small the validation intervals may send a simpler family forward.
            "candidate": "conversion",
            "models": {"spark_als": {"enabled": False}, "implicit_als": {"enabled": False}},
        },
    )
    small = load_config(path)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {small.catalog.database}")
    world_job.run(spark, small)
    interactions_job.run(spark, small)
    train_job.run(spark, small)
    promote_if_needed(small)
    yield path, small
    mlflow.set_tracking_uri(config.mlflow.tracking_uri)


@pytest.fixture(scope="session")
def experimented(spark, served):
    """(conf path, config) of the served world after recommend, simulate and analyze: every
    table and report that the experiment tests and the notebooks read."""
    _, config = served
    recommend_job.run(spark, config)
    world_job.simulate_run(spark, config)
    experiment_job.analyze_run(spark, config)
    return served


@contextmanager
def reading_all_along(read: Callable[[], list], least_reads: int) -> Iterator[tuple[list, list]]:
    """Call ``read`` in a thread, again and again, while the block runs and until it has read
    ``least_reads`` times, then once more after the block, so the reads see what it left;
    yields (what each read returned, the errors it raised). A read that raises stops the
    thread."""
    stop = threading.Event()
    seen: list = []
    failures: list[str] = []

    def reader() -> None:
        while True:
            done = stop.is_set() and len(seen) >= least_reads
            try:
                seen.extend(read())
            except Exception as error:
                failures.append(repr(error)[:300])
                return
            if done:  # this read began after the block ended
                return

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        yield seen, failures
    finally:
        stop.set()
        thread.join()
