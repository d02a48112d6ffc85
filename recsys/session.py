"""The SparkSession, built from config: one per process, shared by every step of a run."""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys.config import Config

log = logging.getLogger(__name__)

_LOG4J = Path(__file__).with_name("log4j2.properties")
JAVA_OPTIONS = "spark.driver.extraJavaOptions"


# Input bytes per shuffle partition when partitions follow the data. A step's tables are
# compressed Parquet, an order of magnitude smaller than the rows it shuffles and caches: at
# 10M users 32 partitions of the events (2.3 GiB of Parquet, 219M rows) made cached blocks
# too large to read back into a 12 GiB heap (OutOfMemoryError in build-interactions). At
# 16 MiB, 1M users' events (231 MiB) get 15 partitions and 10M users' (2,311 MiB) 145.
BYTES_PER_PARTITION = 16 * 2**20


def shuffle_partitions(config: Config) -> int:
    """The floor of the shuffle partitions: 4 tasks per local core, else Spark's 200.

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


def table_bytes(spark: SparkSession, table: str, snapshot: dt.date) -> int | None:
    """The size of the files a step reads from ``table`` as the planner sees them: for a
    table partitioned by ``snapshot_date``, the partition of ``snapshot`` only. None when the
    table does not exist or its size is unknown (Spark then reports a huge default)."""
    if not spark.catalog.tableExists(table):
        return None
    table_df = spark.table(table)
    if "snapshot_date" in table_df.columns:
        table_df = table_df.where(F.col("snapshot_date") == F.lit(snapshot))
    stats = table_df._jdf.queryExecution().optimizedPlan().stats()
    size = int(str(stats.sizeInBytes()))  # a Scala BigInt: py4j gives an int or an object
    return size if size < 2**62 else None


def size_shuffle_partitions(spark: SparkSession, config: Config, tables: Sequence[str]) -> int:
    """Set the session's shuffle partitions for a step that reads ``tables``, and return it.

    ``auto`` follows the data: one partition per 16 MiB of the tables' files (of the
    configured snapshot, where a table has snapshots), never fewer than
    :func:`shuffle_partitions`' floor; a number in the config is used as it is.
    """
    partitions = shuffle_partitions(config)
    if config.spark.shuffle_partitions == "auto":
        snapshot = config.interactions.snapshot_date
        sizes = [table_bytes(spark, f"{config.catalog.database}.{t}", snapshot) for t in tables]
        total = sum(s for s in sizes if s is not None)
        partitions = max(partitions, math.ceil(total / BYTES_PER_PARTITION))
        if tables:
            log.info(
                "shuffle partitions: %d for %s MiB in %s",
                partitions,
                f"{total / 2**20:,.0f}",
                ", ".join(tables),
            )
    spark.conf.set("spark.sql.shuffle.partitions", str(partitions))
    return partitions


def build_session(
    config: Config, app_name: str | None = None, *, jvm_log: Path | None = None
) -> SparkSession:
    """Create (or return) the SparkSession for a job.

    Under ``spark-submit`` the launcher has already started the JVM with its own master and
    deploy settings (it sets PYSPARK_GATEWAY_PORT for the Python driver); those win over
    ``spark.master`` from the config file.

    Parameters
    ----------
    config
        The job's validated configuration.
    app_name
        The Spark application's name (default: ``spark.app_name``).
    jvm_log
        A file for everything the JVM prints (its start-up notices, log4j's errors with
        their stack traces, native-library warnings), when this call starts the JVM. None
        leaves the JVM on this process's stdout and stderr.
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
        # The UI's status store keeps every retained query's plan in the driver's heap, and
        # a train run's plans run to thousands of nodes: Spark's default of 1,000 queries
        # leaves a 4g driver no room to build a broadcast join after a few train runs in one
        # process (a notebook, the test suite).
        "spark.sql.ui.retainedExecutions": "100",
        "spark.ui.retainedJobs": "200",
        "spark.ui.retainedStages": "200",
        JAVA_OPTIONS: _java_options(config),
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
    settings = with_extra(settings, spark_cfg.extra)
    for key, value in settings.items():
        builder = builder.config(key, value)
    if spark_cfg.hive:
        builder = builder.enableHiveSupport()

    with _jvm_output(jvm_log):
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


def jvm_is_dead(grace_s: float = 10.0) -> bool:
    """Whether the JVM this process started has exited (False when there is none, or when
    another process started it, as spark-submit does).

    Parameters
    ----------
    grace_s : float
        How long to wait for it to finish exiting. A killed JVM closes its sockets before
        the kernel has released its heap and reaped it, so the broken connection that
        prompts the question can come first; on a loaded machine, seconds first.
    """
    return jvm_exit_status(grace_s) is not None


def jvm_exit_status(grace_s: float = 10.0) -> int | None:
    """The exit status of the JVM this process started, once it has exited (negative: the
    signal that ended it, as :mod:`subprocess` reports it); None while it runs after
    ``grace_s`` seconds, or when this process did not start it."""
    from pyspark import SparkContext

    process = getattr(SparkContext._gateway, "proc", None)
    if process is None:
        return None
    try:
        return process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        return None


@contextmanager
def _jvm_output(path: Path | None) -> Iterator[None]:
    """While the JVM is launched, point this process's stdout and stderr at ``path``: the JVM
    inherits them for its whole life, so its output lands there, and ours is restored after.

    Nothing changes when the JVM runs already (a notebook's or a test's session, or
    spark-submit's launcher, which started it before Python)."""
    from pyspark import SparkContext

    if path is None or SparkContext._gateway is not None or "PYSPARK_GATEWAY_PORT" in os.environ:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    target = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for fd in saved:
            os.dup2(target, fd)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(target)


def with_extra(settings: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """``settings`` with ``spark.extra`` over them; the user's driver JVM options go beside
    ours, since replacing them would lose the quiet log4j setup."""
    merged = {**settings, **extra}
    if JAVA_OPTIONS in settings and JAVA_OPTIONS in extra:
        merged[JAVA_OPTIONS] = f"{settings[JAVA_OPTIONS]} {extra[JAVA_OPTIONS]}"
    return merged


def _java_options(config: Config) -> str:
    # Quiet log4j from the first line the JVM prints, and keep Derby's log out of the cwd.
    options = [f"-Dlog4j2.configurationFile={_LOG4J.as_uri()}"]
    if config.catalog.metastore_dir:
        home = Path(config.catalog.metastore_dir).parent
        home.mkdir(parents=True, exist_ok=True)
        options.append(f"-Dderby.system.home={home}")
    return " ".join(options)
