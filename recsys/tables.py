"""Reading and publishing catalog tables, so that readers never see a half-written table.

Spark's ``saveAsTable(mode="overwrite")`` drops the old table before the new one is written:
a job killed in between loses both (docs/development.md). Instead every write goes to a new
physical table ``<name>__v<version>``; only once it is complete does ``<name>`` (a view) get
repointed to it, in one metastore operation. Older versions beyond ``keep_versions`` are
dropped afterwards, so a rerun replaces a table and never duplicates it.

A view is repointed with ``ALTER VIEW ... AS``, which Spark runs as one ``alterTable`` call
on the metastore: a reader sees the old definition or the new one. ``CREATE OR REPLACE VIEW``
is no substitute, since Spark implements it as a drop followed by a create, between which
the view does not exist.

Names and paths put into SQL text go through :func:`sql_identifier` and :func:`sql_string`,
so that a warehouse folder with a quote or a backtick in its name is still one token.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
import uuid
from collections.abc import Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys.config import Config
from recsys.errors import RecsysError

log = logging.getLogger(__name__)

_VERSION = re.compile(r"^(?P<name>[a-z0-9_]+)__v(?P<version>\d{8}t\d{6}\d*_[0-9a-f]{6})$")


def sql_string(value: object) -> str:
    """``value`` as a Spark SQL string literal, quotes included.

    Backslashes and single quotes are escaped, since Spark reads backslash escapes in
    literals (``spark.sql.parser.escapedStringLiterals`` off, its default).

    Parameters
    ----------
    value : object
        Anything; its ``str`` is quoted (a path, a date, a partition value).

    Returns
    -------
    str
        E.g. ``'it\\'s'`` for ``it's``.
    """
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def sql_identifier(*parts: str) -> str:
    """A (possibly qualified) name as Spark SQL text, every part in backticks.

    Parameters
    ----------
    *parts : str
        The name's parts, e.g. ``("recsys", "users")``, or one folder for
        ``parquet.<folder>``. A backtick inside a part is doubled, which is how Spark escapes
        it in a quoted identifier.

    Returns
    -------
    str
        E.g. ```recsys`.`users``` or ```/data/a``b```.
    """
    if not parts:
        raise ValueError("sql_identifier needs at least one part")
    return ".".join("`" + part.replace("`", "``") + "`" for part in parts)


def qualified_identifier(qualified: str) -> str:
    """``database.name`` (as :meth:`Config.table` spells it) quoted by :func:`sql_identifier`."""
    return sql_identifier(*qualified.split(".", 1))


def replace_view(spark: SparkSession, qualified: str, query: str) -> None:
    """Point the view ``qualified`` (``database.name``) at ``query`` in one metastore call.

    ``ALTER VIEW`` when the view exists (one ``alterTable``: readers never find it missing),
    ``CREATE VIEW`` when it does not. Refuses to replace a physical table.

    Parameters
    ----------
    spark : SparkSession
    qualified : str
        ``database.name`` of the view.
    query : str
        The view's ``SELECT`` statement, with its names and paths already quoted.
    """
    if _is_physical_table(spark, qualified):
        raise RecsysError(
            f"{qualified} is a physical table, not a view written by recsys; drop or rename it"
        )
    verb = "ALTER VIEW" if spark.catalog.tableExists(qualified) else "CREATE VIEW"
    spark.sql(f"{verb} {qualified_identifier(qualified)} AS {query}")


def read_table(spark: SparkSession, config: Config, name: str) -> DataFrame:
    """The current version of a table, or a clear error naming the step that writes it."""
    qualified = config.table(name)
    if not spark.catalog.tableExists(qualified):
        raise RecsysError(f"table {qualified} does not exist: run the step that writes it first")
    return spark.table(qualified)


def publish_table(
    spark: SparkSession,
    config: Config,
    df: DataFrame,
    name: str,
    *,
    partition_by: tuple[str, ...] = (),
) -> str:
    """Write ``df`` as a new version of table ``name`` and repoint ``name`` at it.

    Returns the physical table written. Raises before repointing if the write fails, leaving
    the previous version readable.
    """
    database = config.catalog.database
    view = f"{database}.{name}"
    if _is_physical_table(spark, view):
        raise RecsysError(
            f"{view} is a physical table, not a view written by recsys; drop or rename it"
        )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dt%H%M%S%f")
    physical_name = f"{name}__v{stamp}_{uuid.uuid4().hex[:6]}"
    physical = f"{database}.{physical_name}"
    started = time.perf_counter()
    writer = df.write.format("parquet").mode("errorifexists")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.saveAsTable(sql_identifier(database, physical_name))
    replace_view(spark, view, f"SELECT * FROM {sql_identifier(database, physical_name)}")
    log.info("published %s -> %s in %.1fs", view, physical, time.perf_counter() - started)
    _drop_old_versions(spark, config, name)
    return physical


def versions(spark: SparkSession, config: Config, name: str) -> list[str]:
    """Physical versions of a table, oldest first."""
    found = []
    for table in spark.catalog.listTables(config.catalog.database):
        match = _VERSION.match(table.name)
        if match and match["name"] == name:
            found.append(match["version"])
    return [f"{config.catalog.database}.{name}__v{v}" for v in sorted(found)]


def drop_table(spark: SparkSession, config: Config, name: str) -> bool:
    """Drop a table published by :func:`publish_table`: its view, then every version.

    Returns whether there was anything to drop.
    """
    view = config.table(name)
    if _is_physical_table(spark, view):
        raise RecsysError(
            f"{view} is a physical table, not a view written by recsys; drop or rename it"
        )
    found = spark.catalog.tableExists(view)
    spark.sql(f"DROP VIEW IF EXISTS {qualified_identifier(view)}")
    old = versions(spark, config, name)
    for physical in old:
        spark.sql(f"DROP TABLE IF EXISTS {qualified_identifier(physical)}")
    return found or bool(old)


def _drop_old_versions(spark: SparkSession, config: Config, name: str) -> None:
    old = versions(spark, config, name)[: -config.catalog.keep_versions]
    for physical in old:
        spark.sql(f"DROP TABLE IF EXISTS {qualified_identifier(physical)}")
        log.debug("dropped old version %s", physical)


def _is_physical_table(spark: SparkSession, qualified: str) -> bool:
    return (
        spark.catalog.tableExists(qualified)
        and spark.catalog.getTable(qualified).tableType != "VIEW"
    )


def publish_partition(
    spark: SparkSession,
    config: Config,
    df: DataFrame,
    name: str,
    *,
    partition_column: str,
    value: object,
) -> str:
    """Replace one partition of a partitioned table, atomically for readers.

    ``df`` holds the rows of that partition (including ``partition_column``, all equal to
    ``value``). The rows are written to a fresh folder; only then is the partition pointed at
    it with one metastore call (``ADD PARTITION`` or ``SET LOCATION``). Older folders of the
    partition beyond ``keep_versions`` are deleted. Returns the folder written.
    """
    qualified = config.table(name)
    data_columns = [c for c in df.columns if c != partition_column]
    if not spark.catalog.tableExists(qualified):
        (
            df.limit(0)
            .write.format("parquet")
            .partitionBy(partition_column)
            .saveAsTable(qualified_identifier(qualified))
        )
    root = table_location(spark, qualified)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dt%H%M%S%f")
    folder = f"{root}__versions/{partition_column}={value}/v{stamp}"
    started = time.perf_counter()
    df.select(*data_columns).write.format("parquet").mode("errorifexists").save(folder)

    table = qualified_identifier(qualified)
    spec = f"{sql_identifier(partition_column)}={sql_string(value)}"
    exists = spark.sql(f"SHOW PARTITIONS {table} PARTITION ({spec})").count() > 0
    if exists:
        spark.sql(f"ALTER TABLE {table} PARTITION ({spec}) SET LOCATION {sql_string(folder)}")
    else:
        spark.sql(f"ALTER TABLE {table} ADD PARTITION ({spec}) LOCATION {sql_string(folder)}")
    spark.catalog.refreshTable(qualified)
    log.info("published %s partition %s in %.1fs", qualified, spec, time.perf_counter() - started)
    _drop_old_folders(spark, f"{root}__versions/{partition_column}={value}", config)
    return folder


def described(spark: SparkSession, target: str, field: str) -> str | None:
    """One field of ``DESCRIBE TABLE EXTENDED <target>`` (a table, a view, or a table with a
    ``PARTITION (...)`` spec, already quoted as SQL text): e.g. its ``Location`` or
    ``View Text``; None if absent."""
    rows = spark.sql(f"DESCRIBE TABLE EXTENDED {target}").collect()
    return next((r["data_type"] for r in rows if r["col_name"] == field), None)


def table_location(spark: SparkSession, qualified: str) -> str:
    """The folder of table ``qualified`` (``database.name``), without a trailing slash."""
    return described(spark, qualified_identifier(qualified), "Location").rstrip("/")


def database_location(spark: SparkSession, database: str) -> str:
    """The folder of ``database``, where its managed tables live, without a trailing slash."""
    # The catalog gives a URI (a space is %20); Hadoop's Path of it is the folder's name.
    uri = spark.catalog.getDatabase(database).locationUri
    jvm = spark.sparkContext._jvm
    return str(jvm.org.apache.hadoop.fs.Path(jvm.java.net.URI(uri)).toString()).rstrip("/")


def filesystem(spark: SparkSession, folder: str):
    """(Hadoop FileSystem, Path) of ``folder``: whatever storage Spark itself writes to."""
    path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(folder)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def _drop_old_folders(spark: SparkSession, parent: str, config: Config) -> None:
    fs, path = filesystem(spark, parent)
    for old in sorted(fs.listStatus(path), key=lambda s: str(s.getPath()))[
        : -config.catalog.keep_versions
    ]:
        fs.delete(old.getPath(), True)


def log_counts(table_df: DataFrame, what: str, markets: Sequence[str]) -> None:
    """Log a table's rows, in all and per market (``what``: its name in the log)."""
    # Grouped by market (names outside the markets file as one): a markets-sized result.
    market = F.when(F.col("market").isin(*markets), F.col("market")).otherwise("(other)")
    counts = {
        r["market"]: r["n"]
        for r in table_df.groupBy(market.alias("market"))
        .agg(F.count(F.lit(1)).alias("n"))
        .collect()
    }
    log.info("%s: %s rows", what, f"{sum(counts.values()):,}")
    for name, n in sorted(counts.items()):
        log.info("  %s %s: %s", what, name, f"{n:,}")
