"""The SparkSession, built from config: one per process, shared by every step of a run."""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from recsys.config import Config

log = logging.getLogger(__name__)

_LOG4J = Path(__file__).with_name("log4j2.properties")


def shuffle_partitions(config: Config) -> int:
    """Shuffle partitions sized for the machine: 4 tasks per local core, else Spark's 200.

    Adaptive query execution (on by default) coalesces small shuffles further, so erring
    high on a cluster costs little; on two local cores 200 tiny tasks cost seconds each stage.
    """
    setting = config.spark.shuffle_partitions
    if setting != "auto":
        return setting
    match = re.fullmatch(r"local\[(\*|\d+)(?:,\d+)?\]", config.spark.master or "")
    if match is None:
        return 200
    cores = (os.cpu_count() or 2) if match.group(1) == "*" else int(match.group(1))
    return max(4, 4 * cores)


def build_session(config: Config, app_name: str | None = None) -> SparkSession:
    """Create (or return) the SparkSession for a job.

    Under ``spark-submit`` the launcher has already started the JVM with its own master and
    deploy settings (it sets PYSPARK_GATEWAY_PORT for the Python driver); those win over
    ``spark.master`` from the config file.
    """
    spark_cfg, catalog = config.spark, config.catalog
    builder = SparkSession.builder.appName(app_name or spark_cfg.app_name)
    launched_by_submit = "PYSPARK_GATEWAY_PORT" in os.environ
    if spark_cfg.master and not launched_by_submit:
        builder = builder.master(spark_cfg.master)
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(shuffle_partitions(config)),
        "spark.sql.warehouse.dir": catalog.warehouse_dir,
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.extraJavaOptions": _java_options(config),
    }
    if spark_cfg.driver_memory and not launched_by_submit:
        settings["spark.driver.memory"] = spark_cfg.driver_memory
    is_local = (spark_cfg.master or "").startswith("local")
    if is_local and not launched_by_submit and "PYSPARK_PYTHON" not in os.environ:
        # Python workers (pandas UDFs, per-market training) run this interpreter, with its
        # packages, rather than whatever `python3` is first on PATH. PySpark reads the
        # variable when the context starts; on a cluster set it in the environment.
        os.environ["PYSPARK_PYTHON"] = sys.executable
    if catalog.metastore_dir:
        settings["spark.hadoop.javax.jdo.option.ConnectionURL"] = (
            f"jdbc:derby:;databaseName={catalog.metastore_dir};create=true"
        )
    settings.update(spark_cfg.extra)
    for key, value in settings.items():
        builder = builder.config(key, value)
    if spark_cfg.hive:
        builder = builder.enableHiveSupport()

    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(config.logging.spark_level)
    if spark_cfg.checkpoint_dir:
        spark.sparkContext.setCheckpointDir(spark_cfg.checkpoint_dir)
    if not spark.catalog.databaseExists(catalog.database):
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {catalog.database}")
    log.info(
        "spark %s up: master=%s, shuffle partitions=%s, warehouse=%s",
        spark.version,
        spark.sparkContext.master,
        settings["spark.sql.shuffle.partitions"],
        catalog.warehouse_dir,
    )
    return spark


def _java_options(config: Config) -> str:
    # Quiet log4j from the first line the JVM prints, and keep Derby's log out of the cwd.
    options = [f"-Dlog4j2.configurationFile={_LOG4J.as_uri()}"]
    if config.catalog.metastore_dir:
        home = Path(config.catalog.metastore_dir).parent
        home.mkdir(parents=True, exist_ok=True)
        options.append(f"-Dderby.system.home={home}")
    return " ".join(options)
