"""The published versions of ``plan_recommendations`` kept for rollback, and serving one again.

Retention (:func:`recsys.recommend.publish.commit`) keeps, for each kept snapshot, the
folder the history reads, the folder being served, and the newest
``catalog.keep_versions - 1`` other published folders. :func:`kept_versions` lists them;
:func:`serve_version`, :func:`serve_previous` and :func:`rollback` (by snapshot date) serve
one again, moving the history's entry for that snapshot along with the current view. A
folder that failed validation carries no ``_PUBLISHED`` mark and is never offered.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.config import Config
from recsys.errors import RecsysError
from recsys.recommend.publish import (
    Published,
    current,
    history_folders,
    move_history,
    move_view,
    published_folders,
    read_folder,
    same_folder,
    snapshot_of,
    staged_at,
    version_id,
)


@dataclass(frozen=True)
class Version:
    """A published version kept for rollback.

    Attributes
    ----------
    id : str
        ``<snapshot date>/v<stamp>``, e.g. ``2026-11-01/v20261101t060102123456``: what
        :func:`serve_version` takes.
    snapshot : dt.date
        The snapshot date of its rows.
    staged_at : dt.datetime
        When its run wrote it (UTC), from the folder's stamp.
    folder : str
        Where its files are.
    rows : int
        Its rows.
    models : tuple[str, ...]
        The distinct ``<model_name>/<model_version>`` stamped on its rows, sorted.
    is_served : bool
        Whether ``plan_recommendations_current`` reads it.
    in_history : bool
        Whether ``plan_recommendations`` reads it for its snapshot.
    """

    id: str
    snapshot: dt.date
    staged_at: dt.datetime
    folder: str
    rows: int
    models: tuple[str, ...]
    is_served: bool
    in_history: bool


def rollback(spark: SparkSession, config: Config, to: dt.date) -> Published:
    """Serve the kept snapshot ``to`` again: the version the history shows for it. Its rows
    were validated when it was published."""
    history = history_folders(spark, config)
    if to not in history:
        listed = ", ".join(str(d) for d in sorted(history)) or "none"
        raise RecsysError(
            f"snapshot {to} is not kept in {config.table(S.PLAN_RECOMMENDATIONS)} "
            f"(kept: {listed}; recommend.publish.keep_snapshots="
            f"{config.recommend.publish.keep_snapshots})"
        )
    move_view(spark, config, history[to])
    return Published(to, history[to])


def kept_versions(spark: SparkSession, config: Config) -> list[Version]:
    """The published versions kept for rollback, oldest first.

    One Spark job counts the rows and models of every version (a few folders, a
    versions-sized result).

    Returns
    -------
    list[Version]
        Every folder marked published, whether served, in the history, or a spare.
    """
    folders = published_folders(spark, config)
    if not folders:
        return []
    served = current(spark, config)
    in_history = set(history_folders(spark, config).values())
    counts_df = reduce(
        DataFrame.unionByName,
        (
            read_folder(spark, f).select(
                F.lit(f).alias("folder"),
                F.concat_ws("/", "model_name", "model_version").alias("model"),
            )
            for f in folders
        ),
    )
    rows: dict[str, int] = dict.fromkeys(folders, 0)
    models: dict[str, set[str]] = {f: set() for f in folders}
    for r in counts_df.groupBy("folder", "model").agg(F.count(F.lit(1)).alias("n")).collect():
        rows[r["folder"]] += r["n"]
        if r["model"] is not None:
            models[r["folder"]].add(r["model"])
    return [
        Version(
            id=version_id(f),
            snapshot=snapshot_of(f),
            staged_at=staged_at(f),
            folder=f,
            rows=rows[f],
            models=tuple(sorted(models[f])),
            is_served=served is not None and same_folder(f, served.folder),
            in_history=any(same_folder(f, h) for h in in_history),
        )
        for f in folders
    ]


def serve_version(spark: SparkSession, config: Config, version: str) -> Published:
    """Serve the kept version ``version`` (an id from :func:`kept_versions`) again.

    The history's entry for its snapshot moves to it first, then the current view; each in
    one metastore operation. Nothing is deleted.

    Raises
    ------
    RecsysError
        When no published version with that id is kept; the message lists the kept ones.
    """
    folders = {version_id(f): f for f in published_folders(spark, config)}
    if version not in folders:
        listed = ", ".join(folders) or "none"
        raise RecsysError(
            f"version {version} of {config.table(S.PLAN_RECOMMENDATIONS)} is not kept "
            f"(kept: {listed}; catalog.keep_versions={config.catalog.keep_versions} per "
            f"snapshot, recommend.publish.keep_snapshots="
            f"{config.recommend.publish.keep_snapshots})"
        )
    folder = folders[version]
    snapshot = snapshot_of(folder)
    move_history(spark, config, {**history_folders(spark, config), snapshot: folder})
    move_view(spark, config, folder)
    return Published(snapshot, folder)


def serve_previous(spark: SparkSession, config: Config) -> Published:
    """Serve the version published just before the one served now (the newest kept version
    staged earlier), whatever its snapshot.

    Raises
    ------
    RecsysError
        When nothing is served, or no kept version is older than the served one.
    """
    served = current(spark, config)
    if served is None:
        raise RecsysError(f"{config.table(S.PLAN_RECOMMENDATIONS_CURRENT)} serves nothing yet")
    older = [
        f
        for f in published_folders(spark, config)
        if staged_at(f) < staged_at(served.folder) and not same_folder(f, served.folder)
    ]
    if not older:
        raise RecsysError(
            f"no kept version is older than the served {served.version} "
            f"(catalog.keep_versions={config.catalog.keep_versions}, "
            f"recommend.publish.keep_snapshots={config.recommend.publish.keep_snapshots})"
        )
    return serve_version(spark, config, version_id(older[-1]))
