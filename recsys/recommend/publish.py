"""Publishing a snapshot of ``plan_recommendations`` so that readers never see half of one.

Every run writes a version: a folder of its own,
``<database folder>/plan_recommendations__versions/snapshot_date=<d>/v<stamp>/market=<m>/``.
Two views read these folders, and each is moved by one ``ALTER VIEW`` (a single metastore
call, :func:`recsys.tables.replace_view`), so a reader sees the old definition or the new
one, whole:

- ``plan_recommendations_current`` reads the served version's folder;
- ``plan_recommendations`` (the history) is a ``UNION ALL`` of one version folder per kept
  snapshot, each branch stamped with its ``snapshot_date``. A filter on ``snapshot_date``
  prunes the other branches, and one on ``market`` prunes the folder's partitions.

1. :func:`stage` writes the snapshot's rows to a fresh version folder; nothing reads it yet.
2. The caller validates what was written (:mod:`recsys.recommend.validate`).
3. :func:`commit` marks the folder published (a ``_PUBLISHED`` file), moves the history view
   (the snapshot now reads the new folder; snapshots beyond
   ``recommend.publish.keep_snapshots`` leave it), then the current view, then deletes the
   folders that retention no longer keeps.

A job that dies before step 3 leaves both views as they were. One that dies inside it leaves
each view on one version: the history may already show the new version while the current
view still shows the old one; rerunning publishes both. A folder that failed validation has
no ``_PUBLISHED`` mark: it stays for inspection until the next successful publish of its
snapshot, and is never offered for rollback.

Retention keeps, for each kept snapshot, the folder the history reads, the folder being
served, and the newest ``catalog.keep_versions - 1`` other published folders, so that a rerun
of a snapshot keeps the version it replaced. :mod:`recsys.recommend.versions` lists the kept
versions and serves one again.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys import schemas as S
from recsys.config import Config
from recsys.errors import RecsysError
from recsys.tables import (
    database_location,
    described,
    filesystem,
    qualified_identifier,
    replace_view,
    sql_identifier,
    sql_string,
)

log = logging.getLogger(__name__)

# A folder as :func:`sql_identifier` quotes it after ``parquet.``: doubled backticks inside.
_FOLDER = re.compile(r"parquet\.`(?P<folder>(?:[^`]|``)+)`")
_SNAPSHOT = re.compile(r"snapshot_date=(?P<date>\d{4}-\d{2}-\d{2})")
_STAMP = re.compile(r"/v(?P<stamp>\d{8}t\d{12})$")
PUBLISHED_MARK = "_PUBLISHED"


class PublishError(RecsysError):
    """A snapshot failed validation; the current view was left as it was."""


@dataclass(frozen=True)
class Published:
    """A version being served: its snapshot date and its folder."""

    snapshot: dt.date
    folder: str

    @property
    def version(self) -> str:
        """The version's id, ``<snapshot>/v<stamp>`` (see
        :class:`recsys.recommend.versions.Version`)."""
        return version_id(self.folder)


def stage(spark: SparkSession, config: Config, rows_df: DataFrame, snapshot: dt.date) -> str:
    """Write ``rows_df`` (the contract columns, all of ``snapshot``) to a fresh version
    folder; returns it. Neither view changes."""
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
    snapshot = snapshot_of(folder)
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
    """The version ``plan_recommendations_current`` shows, or None before the first publish."""
    folders = _view_folders(spark, config.table(S.PLAN_RECOMMENDATIONS_CURRENT))
    if folders is None:
        return None
    if len(folders) != 1:
        raise RecsysError(
            f"{config.table(S.PLAN_RECOMMENDATIONS_CURRENT)} was not written by recsys "
            f"(it reads {len(folders)} folders)"
        )
    folder = next(iter(folders.values()))
    return Published(snapshot_of(folder), folder)


def move_view(spark: SparkSession, config: Config, folder: str) -> None:
    """Point ``plan_recommendations_current`` at ``folder``: one metastore operation."""
    replace_view(spark, config.table(S.PLAN_RECOMMENDATIONS_CURRENT), _select(folder))


def move_history(spark: SparkSession, config: Config, folders: Mapping[dt.date, str]) -> None:
    """Point ``plan_recommendations`` at one folder per snapshot: one metastore operation.

    Parameters
    ----------
    folders : Mapping[dt.date, str]
        The version folder each kept snapshot reads, at least one.
    """
    if not folders:
        raise RecsysError("the history of plan_recommendations needs at least one snapshot")
    table = config.table(S.PLAN_RECOMMENDATIONS)
    _retire_partitioned_table(spark, table)
    query = "\nUNION ALL\n".join(_select(folders[d]) for d in sorted(folders))
    replace_view(spark, table, query)


def commit(spark: SparkSession, config: Config, folder: str) -> Published:
    """Serve the validated ``folder``: mark it published, move the history view, then the
    current view, then delete what retention no longer keeps."""
    _mark_published(spark, folder)
    snapshot = snapshot_of(folder)
    history = {**(history_folders(spark, config)), snapshot: folder}
    keep = sorted(history)[-config.recommend.publish.keep_snapshots :]
    move_history(spark, config, {d: history[d] for d in keep})
    move_view(spark, config, folder)
    _retain(spark, config, snapshot)
    return Published(snapshot, folder)


def snapshots(spark: SparkSession, config: Config) -> list[dt.date]:
    """Snapshot dates the history ``plan_recommendations`` holds, oldest first."""
    return sorted(history_folders(spark, config))


def history_folders(spark: SparkSession, config: Config) -> dict[dt.date, str]:
    """The version folder the history reads for each snapshot; empty before the first
    publish."""
    table = config.table(S.PLAN_RECOMMENDATIONS)
    if not spark.catalog.tableExists(table):
        return {}
    if spark.catalog.getTable(table).tableType != "VIEW":
        return _partition_folders(spark, table)
    return _view_folders(spark, table) or {}


def _partition_folders(spark: SparkSession, table: str) -> dict[dt.date, str]:
    """The version folder of each snapshot of the partitioned history table of older
    releases (whose (snapshot_date, market) partitions point into the versions folder)."""
    quoted = qualified_identifier(table)
    found = {}
    for row in spark.sql(f"SHOW PARTITIONS {quoted}").collect():
        snapshot = snapshot_of(row[0])
        if snapshot not in found:
            location = described(spark, f"{quoted} PARTITION ({_spec(row[0])})", "Location")
            found[snapshot] = location.rstrip("/").rsplit("/market=", 1)[0]
    return found


def _spec(partition: str) -> str:
    """A ``SHOW PARTITIONS`` row (``k1=v1/k2=v2``) as a quoted ``PARTITION`` spec."""
    return ", ".join(
        f"{sql_identifier(k)}={sql_string(v)}"
        for k, v in (part.split("=", 1) for part in partition.split("/"))
    )


def _select(folder: str) -> str:
    """A ``SELECT`` of the contract's columns from a version folder, as SQL text."""
    snapshot = snapshot_of(folder)
    columns = ", ".join(
        f"DATE{sql_string(snapshot)} AS snapshot_date" if c == "snapshot_date" else f"`{c}`"
        for c in S.PLAN_RECOMMENDATION_COLUMNS
    )
    return f"SELECT {columns} FROM parquet.{sql_identifier(folder)}"


def _view_folders(spark: SparkSession, view: str) -> dict[dt.date, str] | None:
    """The folders a view written by :func:`_select` reads, by snapshot; None when the view
    does not exist or is a table."""
    if not spark.catalog.tableExists(view) or spark.catalog.getTable(view).tableType != "VIEW":
        return None
    text = described(spark, qualified_identifier(view), "View Text") or ""
    folders = [m["folder"].replace("``", "`") for m in _FOLDER.finditer(text)]
    if not folders:
        raise RecsysError(f"{view} was not written by recsys (view text: {text[:200]!r})")
    return {snapshot_of(f): f for f in folders}


def _retire_partitioned_table(spark: SparkSession, table: str) -> None:
    """Replace the partitioned history table of older releases by nothing, keeping its data.

    Its partitions point into the versions folder, and dropping a managed table deletes the
    folders of its partitions too: each partition is first pointed at an empty folder inside
    the table's own folder. Runs once; the history view takes the name right after.
    """
    if not spark.catalog.tableExists(table) or spark.catalog.getTable(table).tableType == "VIEW":
        return
    quoted = qualified_identifier(table)
    root = described(spark, quoted, "Location").rstrip("/")
    for i, row in enumerate(spark.sql(f"SHOW PARTITIONS {quoted}").collect()):
        spark.sql(
            f"ALTER TABLE {quoted} PARTITION ({_spec(row[0])}) "
            f"SET LOCATION {sql_string(f'{root}/retired/{i}')}"
        )
    spark.sql(f"DROP TABLE {quoted}")
    log.info("replaced the partitioned table %s by a view over its versions", table)


def _retain(spark: SparkSession, config: Config, committed: dt.date) -> None:
    """Delete what neither view reads and retention does not keep: snapshots older than the
    history's oldest, unpublished folders of the ``committed`` snapshot, and published
    folders beyond the newest ``catalog.keep_versions - 1`` spares of each snapshot. A newer
    snapshot that never passed validation keeps its folders for inspection."""
    history = history_folders(spark, config)
    served = current(spark, config)
    in_use = [*history.values(), *([served.folder] if served else [])]
    root = _versions_root(spark, config)
    fs, root_path = filesystem(spark, root)
    if not fs.exists(root_path):
        return
    spare = config.catalog.keep_versions - 1
    oldest = min(history, default=committed)
    for snapshot_dir in fs.listStatus(root_path):
        name = str(snapshot_dir.getPath().getName())
        match = _SNAPSHOT.fullmatch(name)
        if match is None:
            continue
        snapshot = dt.date.fromisoformat(match["date"])
        held = snapshot in history or (served is not None and snapshot == served.snapshot)
        if not held and snapshot < oldest:
            fs.delete(snapshot_dir.getPath(), True)
            log.info("dropped snapshot %s of %s (retention)", snapshot, S.PLAN_RECOMMENDATIONS)
            continue
        folders = sorted(str(v.getPath()) for v in fs.listStatus(snapshot_dir.getPath()))
        unused = [f for f in folders if not any(same_folder(f, used) for used in in_use)]
        published = [f for f in unused if _is_published(spark, f)]
        # Spares let a rerun be rolled back, and a query that started on a folder just
        # replaced finish.
        doomed = published[: max(len(published) - spare, 0)]
        if snapshot == committed:
            doomed += [f for f in unused if f not in published]
        for folder in doomed:
            _delete(spark, folder)
            log.debug("deleted unused version %s", folder)


def published_folders(spark: SparkSession, config: Config) -> list[str]:
    """Every published version folder, oldest (by stamp) first.

    Returns
    -------
    list[str]
        The folders marked published, plus the folders the views read whether or not they
        carry the mark; a folder that failed validation is not among them.
    """
    root = _versions_root(spark, config)
    fs, root_path = filesystem(spark, root)
    if not fs.exists(root_path):
        return []
    served = current(spark, config)
    in_use = [*history_folders(spark, config).values(), *([served.folder] if served else [])]
    found = []
    for snapshot_dir in fs.listStatus(root_path):
        if _SNAPSHOT.fullmatch(str(snapshot_dir.getPath().getName())) is None:
            continue
        for version in fs.listStatus(snapshot_dir.getPath()):
            folder = str(version.getPath())
            if _STAMP.search(folder) and (
                _is_published(spark, folder) or any(same_folder(folder, u) for u in in_use)
            ):
                found.append(folder)
    return sorted(found, key=staged_at)


def _mark_published(spark: SparkSession, folder: str) -> None:
    fs, path = filesystem(spark, f"{folder}/{PUBLISHED_MARK}")
    fs.create(path, True).close()


def _is_published(spark: SparkSession, folder: str) -> bool:
    fs, path = filesystem(spark, f"{folder}/{PUBLISHED_MARK}")
    return bool(fs.exists(path))


def _versions_root(spark: SparkSession, config: Config) -> str:
    database = database_location(spark, config.catalog.database)
    return f"{database}/{S.PLAN_RECOMMENDATIONS}__versions"


def snapshot_of(folder: str) -> dt.date:
    """The snapshot date of a version folder (or of a ``snapshot_date=<d>`` path).

    Parameters
    ----------
    folder : str
        A path holding ``snapshot_date=<YYYY-MM-DD>``; any other raises RecsysError.

    Returns
    -------
    dt.date
    """
    match = _SNAPSHOT.search(folder)
    if match is None:
        raise RecsysError(f"{folder} is not a snapshot folder of plan_recommendations")
    return dt.date.fromisoformat(match["date"])


def staged_at(folder: str) -> dt.datetime:
    """When the run that wrote a version folder staged it (UTC), from the folder's stamp.

    Parameters
    ----------
    folder : str
        A version folder, ending in ``/v<stamp>``; any other raises RecsysError.

    Returns
    -------
    dt.datetime
    """
    match = _STAMP.search(folder.rstrip("/"))
    if match is None:
        raise RecsysError(f"{folder} is not a version folder of plan_recommendations")
    return dt.datetime.strptime(match["stamp"], "%Y%m%dt%H%M%S%f").replace(tzinfo=dt.UTC)


def version_id(folder: str) -> str:
    """A version folder's id, ``<snapshot date>/v<stamp>``.

    Parameters
    ----------
    folder : str
        A version folder.

    Returns
    -------
    str
        E.g. ``2026-11-01/v20261101t060102123456``.
    """
    return f"{snapshot_of(folder)}/{folder.rstrip('/').rsplit('/', 1)[1]}"


def same_folder(left: str, right: str) -> bool:
    """Whether two spellings of a folder (``file:/x`` and ``file:///x``) are the same.

    Parameters
    ----------
    left, right : str
        Folders, with or without a scheme and a trailing slash.

    Returns
    -------
    bool
        True when both name the same path.
    """

    def bare(path: str) -> str:
        return re.sub(r"^[a-z0-9]+:/+", "/", path.rstrip("/"))

    return bare(left) == bare(right)


def _delete(spark: SparkSession, folder: str) -> None:
    fs, path = filesystem(spark, folder)
    if fs.exists(path):
        fs.delete(path, True)
