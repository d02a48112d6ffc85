"""The `build-interactions` step: validate events, quarantine bad rows, write the matrices."""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

from pyspark import StorageLevel
from pyspark.sql import DataFrame, Row, SparkSession, Window
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.config import Config
from recsys.eligibility import states_at
from recsys.errors import RecsysError
from recsys.interactions.build import (
    cutoffs,
    interaction_rows,
    matrix_stats,
    moments,
    offer_log_rows,
    with_indices,
)
from recsys.interactions.validate import UNKNOWN_ITEM, Validated, validate_events
from recsys.progress import step
from recsys.tables import drop_table, publish_partition, publish_table, read_table
from recsys.tokens import covering_patterns
from recsys.vocabulary import HOLDOUT, TRAIN

log = logging.getLogger(__name__)

UNKNOWN_SHOWN = 10  # unknown items named per kind (behaviour token, offer) in a message
# Where a failed run's rejected rows go: events_quarantine keeps matching the interactions
# that are served, and a person can still read why the run failed.
FAILED_QUARANTINE = f"{S.EVENTS_QUARANTINE}_failed"


class BadInputError(RecsysError):
    """Too large a share of a market's events failed validation."""


class CollapseError(RecsysError):
    """An events source with no rows, or interactions far fewer than those they replace."""


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


def source_name(config: Config) -> str:
    """The events source as a person reads it: the table or the path."""
    source = config.interactions.source
    if source.table:
        return f"table {config.table(source.table)} (interactions.source.table)"
    return f"{source.format} files {source.path} (interactions.source.path)"


def run(spark: SparkSession, config: Config) -> None:
    """Validate the events, then publish the matrices, user state, offer log and quarantine.

    Nothing is published when the source has no rows, when too many rows are rejected
    (``interactions.max_bad_share``) or when the interactions would shrink by more than
    ``interactions.max_drop_share``: every table keeps its previous version, and the failed
    run's rejected rows go to ``events_quarantine_failed`` instead of ``events_quarantine``.
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
    validated = validate_events(
        read_source(spark, config),
        catalog_df,
        cutoff=F.lit(cutoff),
        max_values=settings.max_values,
        event_types=settings.event_types,
        behaviour_tokens=settings.behaviour_tokens,
        users_df=read_table(spark, config, S.USERS) if has_users else None,
        min_ts=F.lit(_utc(settings.min_event_ts)),
        max_id_length=settings.max_id_length,
    ).persist()
    quarantine_df = validated.quarantine_df.withColumn("snapshot_date", F.lit(snapshot))
    try:
        with step("build-interactions: validate"):
            tally = _tally(validated.tally_df)
            _log_tally(tally)
            _check_not_empty(tally, config)
            unknown = _unknown_items(validated, config) if _has(tally, UNKNOWN_ITEM) else ""
            with _failed_quarantine(spark, config, quarantine_df):
                _check_bad_share(
                    tally,
                    settings.max_bad_share,
                    set(config.markets.markets),
                    unknown=unknown,
                    failed_table=config.table(FAILED_QUARANTINE),
                )
            if unknown:  # under the threshold the rows are only quarantined: say what they were
                log.warning("%s", unknown)
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
            _write_user_state(spark, config, validated.events_df, catalog_df, snapshot=snapshot)
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


def _check_not_empty(tally: dict[str, dict[str | None, int]], config: Config) -> None:
    total = sum(sum(r.values()) for r in tally.values())
    if total == 0:
        raise CollapseError(
            f"the events source, {source_name(config)}, has 0 rows; nothing was written: "
            "interactions, events_quarantine and the tables built with them keep their "
            "previous version. Check that the source (or the file ingest read) holds events."
        )


@contextmanager
def _failed_quarantine(
    spark: SparkSession, config: Config, quarantine_df: DataFrame
) -> Iterator[None]:
    """On a :class:`RecsysError` inside, publish the run's rejected rows as
    ``events_quarantine_failed`` (not ``events_quarantine``, which stays with the
    interactions served) and re-raise."""
    try:
        yield
    except RecsysError:
        publish_table(spark, config, quarantine_df, FAILED_QUARANTINE)
        raise


def previous_rows(
    spark: SparkSession, config: Config, snapshot: dt.date
) -> tuple[dt.date, int] | None:
    """(snapshot, rows) of the interactions a run for ``snapshot`` replaces: that snapshot's,
    else the latest earlier one's; None when there are none."""
    if not spark.catalog.tableExists(config.table(S.INTERACTIONS)):
        return None
    table_df = read_table(spark, config, S.INTERACTIONS)
    latest = (
        table_df.where(F.col("snapshot_date") <= F.lit(snapshot))
        .agg(F.max("snapshot_date").alias("latest"))
        .first()["latest"]
    )
    if latest is None:
        return None
    return latest, table_df.where(F.col("snapshot_date") == F.lit(latest)).count()


def _check_shrink(
    rows: int, previous: tuple[dt.date, int] | None, max_drop_share: float, snapshot: dt.date
) -> None:
    if previous is None:
        return
    before_snapshot, before = previous
    if before and rows < before * (1 - max_drop_share):
        raise CollapseError(
            f"interactions of snapshot {snapshot} would have {rows:,} rows, "
            f"{1 - rows / before:.1%} fewer than the {before:,} of the version they replace "
            f"(snapshot {before_snapshot}); more than "
            f"interactions.max_drop_share={max_drop_share:.0%}, so nothing was written and "
            "the previous version stays served. If the smaller input is right, rerun with "
            "--set interactions.max_drop_share=1"
        )


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
        # generate-world writes the synthetic world at whatever size it is asked for: built
        # from that world's own events, interactions replace the previous ones at any size.
        regenerated = config.interactions.source.table == S.EVENTS and spark.catalog.tableExists(
            config.table(S.WORLD_TRUTH)
        )
        previous = None if regenerated else previous_rows(spark, config, snapshot)
        with _failed_quarantine(spark, config, quarantine_df):
            _check_shrink(
                interactions_df.count(), previous, config.interactions.max_drop_share, snapshot
            )
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
        stats_df = matrix_stats(interactions_df).withColumn("snapshot_date", F.lit(snapshot))
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
    *,
    snapshot: dt.date,
) -> None:
    """Each user's plan, add-ons, trial use and verification at every split's moment (the
    past windows', the tune split, the split and the snapshot), read from events before each:
    what offline evaluation needs to know what a user could have been shown then, without
    looking ahead."""
    settings = config.interactions
    at = moments(snapshot, settings.holdout_days, settings.past_windows)
    state_df = states_at(events_df, catalog_df, at)  # one pass for all of them
    publish_partition(
        spark,
        config,
        state_df.withColumn("snapshot_date", F.lit(snapshot)),
        S.USER_STATE,
        partition_column="snapshot_date",
        value=snapshot,
    )


def _tally(tally_df: DataFrame) -> dict[str, dict[str | None, int]]:
    """market -> reason (None for valid) -> rows. Markets x reasons: small."""
    tally: dict[str, dict[str | None, int]] = defaultdict(dict)
    for row in tally_df.collect():
        tally[row["market"]][row["reject_reason"]] = row["rows"]
    return tally


def _log_tally(tally: dict[str, dict[str | None, int]]) -> None:
    total = sum(sum(r.values()) for r in tally.values())
    bad = sum(n for r in tally.values() for reason, n in r.items() if reason)
    log.info(
        "validated %s events: %s quarantined (%.3f%%)",
        f"{total:,}",
        f"{bad:,}",
        100 * bad / max(total, 1),
    )
    for market, reasons in sorted(tally.items(), key=lambda kv: str(kv[0])):
        rejected = {k: v for k, v in reasons.items() if k}
        if rejected:
            log.info("  quarantined in %s: %s", market, _describe(rejected))


def _describe(reasons: dict[str, int]) -> str:
    return ", ".join(f"{reason} {n:,}" for reason, n in sorted(reasons.items()))


def _has(tally: dict[str, dict[str | None, int]], reason: str) -> bool:
    return any(reasons.get(reason) for reasons in tally.values())


def _unknown_items(validated: Validated, config: Config) -> str:
    """What the ``unknown_item`` rows carried, most frequent first, and where to declare it:
    tokens (or patterns) in ``interactions.behaviour_tokens``, offers in the market
    catalogue. Runs one small Spark job on the persisted validation."""
    kind = Window.partitionBy("is_behaviour")
    ranked = kind.orderBy(F.desc("rows"), F.asc_nulls_first("item_id"))  # ties: stable order
    rows = (
        validated.unknown_items_df.withColumn("_rank", F.row_number().over(ranked))
        .withColumn("_items", F.count(F.lit(1)).over(kind))
        .where(F.col("_rank") <= UNKNOWN_SHOWN)
        .orderBy("_rank")
        .collect()  # at most UNKNOWN_SHOWN rows per kind
    )
    tokens_found = [r for r in rows if r["is_behaviour"]]
    offers_found = [r for r in rows if not r["is_behaviour"]]
    parts = []
    if tokens_found:
        offer_ids = list(config.markets.offer_types)
        # An offer id, or no item, in a behaviour event is not a token to declare.
        tokens = [r["item_id"] for r in tokens_found if r["item_id"] not in [None, *offer_ids]]
        misplaced = [r["item_id"] for r in tokens_found if r["item_id"] in offer_ids]
        part = (
            "behaviour events carry items that interactions.behaviour_tokens does not list: "
            + _listed(tokens_found)
        )
        if tokens:
            part += (
                f"; add the tokens, or patterns that cover them such as "
                f"{covering_patterns(tokens, avoid=offer_ids)}, to "
                f"interactions.behaviour_tokens in {config.source or 'the config file'}"
            )
        if misplaced:
            part += f"; {misplaced} are offer ids, which only offer events may name"
        parts.append(part)
    if offers_found:
        parts.append(
            f"offer events name offers their market does not sell: {_listed(offers_found)}; "
            f"add them to the market catalogue ({config.markets_file}) or fix the ids"
        )
    return "unknown_item: " + "\n  ".join(parts)


def _listed(found: list[Row]) -> str:
    """``'a' (5 rows), 'b' (1 row) and 3 more``: the ranked unknown items of one kind."""
    listed = ", ".join(
        f"{r['item_id']!r} ({r['rows']:,} row{'s' if r['rows'] != 1 else ''})" for r in found
    )
    more = found[0]["_items"] - len(found)
    return listed + (f" and {more:,} more (in events_quarantine)" if more > 0 else "")


def _check_bad_share(
    tally: dict[str, dict[str | None, int]],
    threshold: float,
    markets: set[str],
    *,
    unknown: str = "",
    failed_table: str = FAILED_QUARANTINE,
) -> None:
    """Fail when a configured market, or all rows together, pass the bad-row threshold.

    Rows naming no configured market count towards the overall share only. ``unknown``
    (what the unknown items are, and where to declare them) ends the message when set;
    ``failed_table`` is where the message says the rejected rows are.
    """
    failures = []
    for market in sorted(markets & set(tally)):
        reasons = tally[market]
        rows = sum(reasons.values())
        rejected = {k: v for k, v in reasons.items() if k}
        share = sum(rejected.values()) / rows
        if share > threshold:
            failures.append(f"{market}: {share:.1%} of {rows:,} rows ({_describe(rejected)})")
    total = sum(sum(r.values()) for r in tally.values())
    bad = sum(n for r in tally.values() for reason, n in r.items() if reason)
    if total and bad / total > threshold:
        failures.append(f"all markets: {bad / total:.1%} of {total:,} rows")
    if failures:
        raise BadInputError(
            f"bad-row share above interactions.max_bad_share={threshold:.1%}; nothing was "
            f"written to interactions (this run's rejected rows are in {failed_table}; "
            "events_quarantine still holds those of the interactions served):\n  "
            + "\n  ".join([*failures, *([unknown] if unknown else [])])
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
