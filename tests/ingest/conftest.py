"""A config of its own catalog database for the ingest tests, so that replacing users and
events (and dropping world_truth) leaves the other tests' world alone."""

from __future__ import annotations

import pytest

from recsys.config import load_config
from tests.conftest import database_conf


@pytest.fixture(scope="session")
def ingest_conf(spark, config, tmp_path_factory):
    """(conf path, config) of the database ``ingest_tests`` in the session's metastore."""
    folder = tmp_path_factory.mktemp("ingest")
    # Tests replace the tables with files of every size: the shrink guard has its own test.
    path = database_conf(folder, config, "ingest_tests", ingest={"max_drop_share": 1.0})
    small = load_config(path)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {small.catalog.database}")
    return path, small
