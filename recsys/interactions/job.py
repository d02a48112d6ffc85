"""The `build-interactions` step: validate events, quarantine bad rows, write the matrices."""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

from pyspark import StorageLevel
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.config import Config
from recsys.eligibility import states_at
from recsys.interactions.build import (
    cutoffs,
    interaction_rows,
    matrix_stats,
    moments,
    offer_log_rows,
    with_indices,
)
from recsys.interactions.guards import FAILED_QUARANTINE, check_shrink, check_validation
from recsys.interactions.validate import validate_events
from recsys.progress import step
from recsys.tables import drop_table, publish_partition, read_table
from recsys.vocabulary import HOLDOUT, TRAIN, VALIDATION

log = logging.getLogger(__name__)


def read_source(spark: SparkSession, config: Config) -> DataFrame:
    source = config.interactions.source
    if source.table:
        return read_table(spark, config, source.table)
    reader = spark.read.format(source.format)
    if source.format == "csv":
        # Everything as strings: unparseable values must reach the quarantine, not vanish.
        # enforceSchema off: the header's names are checked against the schema, so columns
        # in another order or a missing column fail instead of being read by position.
        reader = (
            reader.option("header", True)
            .option("enforceSchema", False)
            .schema(", ".join(f"{c} STRING" for c in S.EVENTS_SCHEMA.fieldNames()))
        )
    return reader.load(source.path)


def run(spark: SparkSession, config: Config) -> None:
    """Validate the events, then publish the matrices, user state, offer log and quarantine.

    Nothing is published when the source has no rows, when too many rows are rejected
    (``interactions.max_bad_share``) or when the interactions would shrink by more than
    ``interactions.max_drop_share``: every table keeps its previous version, and the failed
    run's rejected rows go to ``events_quarantine_failed`` instead of ``events_quarantine``
    (:mod:`recsys.interactions.guards`).
    """
    settings = config.interactions
    snapshot = settings.snapshot_date
    split, cutoff = cutoffs(snapshot, settings.holdout_days)
    log.info(
        "snapshot %s: training on events before %s, holdout %s .. %s",
        snapshot,
        split.date(),
        split.date(),
        cutoff.date(),
    )
    catalog_df = read_table(spark, config, S.CATALOG)
    # Own data and the synthetic world have a users table; a bare events source may not.
    has_users = spark.catalog.tableExists(config.table(S.USERS))
    users_df = read_table(spark, config, S.USERS) if has_users else None
    validated = validate_events(
        read_source(spark, config),
        catalog_df,
        cutoff=F.lit(cutoff),
        max_values=settings.max_values,
        event_types=settings.event_types,
        behaviour_tokens=settings.behaviour_tokens,
        users_df=users_df,
        min_ts=F.lit(_utc(settings.min_event_ts)),
        max_id_length=settings.max_id_length,
    ).persist()
    quarantine_df = validated.quarantine_df.withColumn("snapshot_date", F.lit(snapshot))
    try:
        with step("build-interactions: validate"):
            check_validation(spark, config, validated, quarantine_df)
        with step("build-interactions: matrices"):
            _write_matrices(
                spark,
                config,
                validated.events_df,
                catalog_df,
                quarantine_df,
                snapshot=snapshot,
            )
        with step("build-interactions: user state"):
            _write_user_state(
                spark, config, validated.events_df, catalog_df, users_df, snapshot=snapshot
            )
        with step("build-interactions: offer log"):
            publish_partition(
                spark,
                config,
                offer_log_rows(
                    validated.events_df,
                    snapshot=snapshot,
                    attribution_days=settings.attribution_days,
                ),
                S.OFFER_LOG,
                partition_column="snapshot_date",
                value=snapshot,
            )
    finally:
        validated.unpersist()
    _log_stats(spark, config, snapshot)


def _utc(moment: dt.datetime) -> dt.datetime:
    """A config instant without a zone is UTC, not the machine's local time."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _write_matrices(
    spark: SparkSession,
    config: Config,
    events_df: DataFrame,
    catalog_df: DataFrame,
    quarantine_df: DataFrame,
    *,
    snapshot: dt.date,
) -> None:
    """Publish interactions, their quarantine and their stats, once the shrink guard passes."""
    rows_df = interaction_rows(events_df, config.interactions, snapshot=snapshot).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    interactions_df = with_indices(
        rows_df,
        catalog_df,
        snapshot=snapshot,
        partitions=int(spark.conf.get("spark.sql.shuffle.partitions")),
        behaviour_tokens=config.interactions.behaviour_tokens,
    ).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        check_shrink(spark, config, interactions_df, quarantine_df, snapshot=snapshot)
        # The quarantine goes out beside the interactions it belongs to, never alone.
        publish_partition(
            spark,
            config,
            interactions_df,
            S.INTERACTIONS,
            partition_column="snapshot_date",
            value=snapshot,
        )
        publish_partition(
            spark,
            config,
            quarantine_df,
            S.EVENTS_QUARANTINE,
            partition_column="snapshot_date",
            value=snapshot,
        )
        if drop_table(spark, config, FAILED_QUARANTINE):
            log.info("dropped %s: this run succeeded", config.table(FAILED_QUARANTINE))
        settings = config.interactions
        written = [
            *moments(snapshot, settings.holdout_days, settings.past_windows),
            VALIDATION,
            HOLDOUT,
        ]
        stats_df = matrix_stats(interactions_df, written).withColumn(
            "snapshot_date", F.lit(snapshot)
        )
        publish_partition(
            spark,
            config,
            stats_df,
            S.INTERACTION_STATS,
            partition_column="snapshot_date",
            value=snapshot,
        )
    finally:
        interactions_df.unpersist()
        rows_df.unpersist()


def _write_user_state(
    spark: SparkSession,
    config: Config,
    events_df: DataFrame,
    catalog_df: DataFrame,
    users_df: DataFrame | None,
    *,
    snapshot: dt.date,
) -> None:
    """Each user's plan, add-ons, trial use and verification at every split's moment (the
    past windows', the tune split, the split and the snapshot), read from events before each
    (and a trial older than the events from ``users_df``): what offline evaluation needs to
    know what a user could have been shown then, without looking ahead."""
    settings = config.interactions
    at = moments(snapshot, settings.holdout_days, settings.past_windows)
    state_df = states_at(events_df, catalog_df, at, users_df)  # one pass for all of them
    publish_partition(
        spark,
        config,
        state_df.withColumn("snapshot_date", F.lit(snapshot)),
        S.USER_STATE,
        partition_column="snapshot_date",
        value=snapshot,
    )


def _log_stats(spark: SparkSession, config: Config, snapshot: dt.date) -> None:
    stats_df = read_table(spark, config, S.INTERACTION_STATS).where(
        F.col("snapshot_date") == F.lit(snapshot)
    )
    by_market: dict[str, dict[str, Row]] = defaultdict(dict)
    for row in stats_df.collect():  # splits x markets rows
        by_market[row["market"]][row["split"]] = row
    for market, splits in sorted(by_market.items()):
        train, holdout = splits.get(TRAIN), splits.get(HOLDOUT)
        if train is None:
            log.warning("  %s: no training interactions", market)
            continue
        log.info(
            "  %s: train %s users x %d items, nnz %s (density %.3f, %.0f%% with an offer row); "
            "holdout %s users",
            market,
            f"{train['users']:,}",
            train["items"],
            f"{train['nnz']:,}",
            train["density"],
            100 * train["offer_user_share"],
            f"{holdout['users']:,}" if holdout else 0,
        )
