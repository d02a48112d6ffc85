"""One SparkSession for the whole test run, with its catalog in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pyspark.sql import SparkSession

from recsys.config import Config, load_config
from recsys.progress import setup_logging
from recsys.session import build_session

ROOT = Path(__file__).resolve().parents[1]
LOCAL_CONF = ROOT / "conf" / "local.yaml"


def write_conf(folder: Path, **sections: dict) -> Path:
    """A config file extending conf/local.yaml with its state under ``folder``."""
    settings = {
        "extends": str(LOCAL_CONF),
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
        "logging": {"level": "INFO"},
    }
    for key, value in sections.items():
        settings.setdefault(key, {}).update(value)
    path = folder / "test.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


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
