"""Publishing a snapshot of ``plan_recommendations`` so that readers never see half of one.

1. :func:`stage` writes the snapshot's rows to a fresh folder,
   ``<table>__versions/snapshot_date=<d>/v<stamp>/market=<m>/``; nothing reads it yet.
2. The caller validates what was written (:mod:`recsys.recommend.validate`).
3. :func:`commit` repoints the view ``plan_recommendations_current`` at that folder (one
   metastore operation: readers see the old snapshot or the new one, whole), then points the
   table's (snapshot_date, market) partitions at it for history queries, then drops
   snapshots beyond ``recommend.publish.keep_snapshots``.

The view reads the folder itself rather than the table, so that even a rerun for the
snapshot already being served switches in one step instead of market by market. A job that
dies before step 3 leaves the current view as it was; rerunning publishes. A folder that
failed validation stays for inspection until the next successful publish of its snapshot.
:func:`rollback` points the view back at a kept snapshot.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys import schemas as S
from recsys.config import Config
from recsys.errors import RecsysError
from recsys.tables import described, filesystem, table_location

log = logging.getLogger(__name__)

_FOLDER = re.compile(r"parquet\.`(?P<folder>[^`]+)`")
_SNAPSHOT = re.compile(r"snapshot_date=(?P<date>\d{4}-\d{2}-\d{2})")


class PublishError(RecsysError):
    """A snapshot failed validation; the current view was left as it was."""


@dataclass(frozen=True)
class Published:
    snapshot: dt.date
    folder: str


def stage(spark: SparkSession, config: Config, rows_df: DataFrame, snapshot: dt.date) -> str:
    """Write ``rows_df`` (the contract columns, all of ``snapshot``) to a fresh folder;
    returns it. The table and the view do not change."""
    table = config.table(S.PLAN_RECOMMENDATIONS)
    if not spark.catalog.tableExists(table):
        (
            spark.createDataFrame([], S.PLAN_RECOMMENDATIONS_SCHEMA)
            .write.format("parquet")
            .partitionBy("snapshot_date", "market")
            .saveAsTable(table)
        )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dt%H%M%S%f")
    folder = f"{_versions_root(spark, config)}/snapshot_date={snapshot}/v{stamp}"
    (
        rows_df.select(*(c for c in S.PLAN_RECOMMENDATION_COLUMNS if c != "snapshot_date"))
        .write.format("parquet")
        .mode("errorifexists")
        .partitionBy("market")
        .save(folder)
    )
    return folder


def read_folder(spark: SparkSession, folder: str) -> DataFrame:
    """The rows of a staged or published folder, with the contract's columns and types."""
    snapshot = _snapshot_of(folder)
    stored = [f for f in S.PLAN_RECOMMENDATIONS_SCHEMA if f.name != "snapshot_date"]
    return (
        spark.read.schema(T.StructType(stored))
        .parquet(folder)
        .select(
            *(
                F.lit(snapshot).alias(c) if c == "snapshot_date" else F.col(c)
                for c in S.PLAN_RECOMMENDATION_COLUMNS
            )
        )
    )


def current(spark: SparkSession, config: Config) -> Published | None:
    """The snapshot ``plan_recommendations_current`` shows, or None before the first publish."""
    view = config.table(S.PLAN_RECOMMENDATIONS_CURRENT)
    if not spark.catalog.tableExists(view):
        return None
    text = described(spark, view, "View Text") or ""
    match = _FOLDER.search(text)
    if match is None:
        raise RecsysError(f"{view} was not written by recsys (view text: {text[:200]!r})")
    return Published(_snapshot_of(match["folder"]), match["folder"])


def move_view(spark: SparkSession, config: Config, folder: str) -> None:
    """Point ``plan_recommendations_current`` at ``folder``: one metastore operation."""
    snapshot = _snapshot_of(folder)
    columns = ", ".join(
        f"DATE'{snapshot}' AS snapshot_date" if c == "snapshot_date" else f"`{c}`"
        for c in S.PLAN_RECOMMENDATION_COLUMNS
    )
    view = config.table(S.PLAN_RECOMMENDATIONS_CURRENT)
    spark.sql(f"CREATE OR REPLACE VIEW {view} AS SELECT {columns} FROM parquet.`{folder}`")


def commit(spark: SparkSession, config: Config, folder: str) -> Published:
    """Serve the validated ``folder``: move the view, then the table's partitions, then drop
    what retention no longer keeps."""
    move_view(spark, config, folder)
    snapshot = _snapshot_of(folder)
    _point_partitions(spark, config, snapshot, folder)
    _retain(spark, config, keep_folder=folder)
    return Published(snapshot, folder)


def rollback(spark: SparkSession, config: Config, to: dt.date) -> Published:
    """Serve the kept snapshot ``to`` again. Its rows were validated when it was published."""
    kept = snapshots(spark, config)
    if to not in kept:
        listed = ", ".join(str(d) for d in kept) or "none"
        raise RecsysError(
            f"snapshot {to} is not kept in {config.table(S.PLAN_RECOMMENDATIONS)} "
            f"(kept: {listed}; recommend.publish.keep_snapshots="
            f"{config.recommend.publish.keep_snapshots})"
        )
    folder = _folder_of(spark, config, to)
    move_view(spark, config, folder)
    return Published(to, folder)


def snapshots(spark: SparkSession, config: Config) -> list[dt.date]:
    """Snapshot dates held by the table, oldest first."""
    table = config.table(S.PLAN_RECOMMENDATIONS)
    if not spark.catalog.tableExists(table):
        return []
    found = {
        dt.date.fromisoformat(_SNAPSHOT.search(r[0])["date"])
        for r in spark.sql(f"SHOW PARTITIONS {table}").collect()
    }
    return sorted(found)


def _point_partitions(spark: SparkSession, config: Config, snapshot: dt.date, folder: str) -> None:
    table = config.table(S.PLAN_RECOMMENDATIONS)
    fs, path = filesystem(spark, folder)
    markets = sorted(
        str(s.getPath().getName()).split("=", 1)[1]
        for s in fs.listStatus(path)
        if s.isDirectory() and str(s.getPath().getName()).startswith("market=")
    )
    existing = {
        r[0].split("market=", 1)[1]
        for r in spark.sql(
            f"SHOW PARTITIONS {table} PARTITION (snapshot_date='{snapshot}')"
        ).collect()
    }
    for market in markets:
        spec = f"snapshot_date='{snapshot}', market='{market}'"
        location = f"{folder}/market={market}"
        if market in existing:
            spark.sql(f"ALTER TABLE {table} PARTITION ({spec}) SET LOCATION '{location}'")
        else:
            spark.sql(f"ALTER TABLE {table} ADD PARTITION ({spec}) LOCATION '{location}'")
    for market in sorted(existing - set(markets)):
        spark.sql(
            f"ALTER TABLE {table} DROP IF EXISTS PARTITION "
            f"(snapshot_date='{snapshot}', market='{market}')"
        )
    spark.catalog.refreshTable(table)


def _retain(spark: SparkSession, config: Config, keep_folder: str) -> None:
    """Keep the newest ``keep_snapshots`` snapshots (and the one being served), and within
    each the folder in use plus the newest ``catalog.keep_versions - 1`` others."""
    table = config.table(S.PLAN_RECOMMENDATIONS)
    served = current(spark, config)
    kept = snapshots(spark, config)
    keep = set(kept[-config.recommend.publish.keep_snapshots :])
    if served is not None:
        keep.add(served.snapshot)
    root = _versions_root(spark, config)
    fs, root_path = filesystem(spark, root)
    for snapshot in kept:
        if snapshot not in keep:
            spark.sql(f"ALTER TABLE {table} DROP IF EXISTS PARTITION (snapshot_date='{snapshot}')")
            _delete(spark, f"{root}/snapshot_date={snapshot}")
            log.info("dropped snapshot %s of %s (retention)", snapshot, table)
    in_use = {keep_folder, *(_folder_of(spark, config, s) for s in keep if s in kept)}
    if served is not None:
        in_use.add(served.folder)
    if not fs.exists(root_path):
        return
    # Within a snapshot, also keep the newest catalog.keep_versions - 1 other folders: a query
    # that started on the folder just replaced can finish.
    spare = config.catalog.keep_versions - 1
    for snapshot_dir in fs.listStatus(root_path):
        folders = sorted(str(v.getPath()) for v in fs.listStatus(snapshot_dir.getPath()))
        unused = [f for f in folders if not any(_same(f, used) for used in in_use)]
        for folder in unused[: len(unused) - spare] if spare else unused:
            _delete(spark, folder)
            log.debug("deleted unused version %s", folder)


def _folder_of(spark: SparkSession, config: Config, snapshot: dt.date) -> str:
    """The folder the table's partitions of ``snapshot`` point into."""
    table = config.table(S.PLAN_RECOMMENDATIONS)
    partition = spark.sql(f"SHOW PARTITIONS {table} PARTITION (snapshot_date='{snapshot}')").first()
    if partition is None:
        raise RecsysError(f"{table} has no partitions for snapshot {snapshot}")
    spec = ", ".join(
        f"{k}='{v}'" for k, v in (part.split("=", 1) for part in partition[0].split("/"))
    )
    location = described(spark, f"{table} PARTITION ({spec})", "Location")
    return location.rstrip("/").rsplit("/market=", 1)[0]


def _versions_root(spark: SparkSession, config: Config) -> str:
    return table_location(spark, config.table(S.PLAN_RECOMMENDATIONS)) + "__versions"


def _snapshot_of(folder: str) -> dt.date:
    match = _SNAPSHOT.search(folder)
    if match is None:
        raise RecsysError(f"{folder} is not a snapshot folder of plan_recommendations")
    return dt.date.fromisoformat(match["date"])


def _same(left: str, right: str) -> bool:
    """Whether two spellings of a folder (``file:/x`` and ``file:///x``) are the same."""

    def bare(path: str) -> str:
        return re.sub(r"^[a-z0-9]+:/+", "/", path.rstrip("/"))

    return bare(left) == bare(right)


def _delete(spark: SparkSession, folder: str) -> None:
    fs, path = filesystem(spark, folder)
    if fs.exists(path):
        fs.delete(path, True)
