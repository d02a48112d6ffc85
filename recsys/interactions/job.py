"""The `build-interactions` step: validate events, quarantine bad rows, write the matrices."""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

from pyspark import StorageLevel
from pyspark.sql import DataFrame, Row, SparkSession, Window
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.config import Config
from recsys.eligibility import states_at
from recsys.errors import RecsysError
from recsys.interactions.build import (
    FULL,
    HOLDOUT,
    TRAIN,
    TUNE,
    cutoffs,
    interaction_rows,
    matrix_stats,
    offer_log_rows,
    with_indices,
)
from recsys.interactions.validate import UNKNOWN_ITEM, Validated, validate_events
from recsys.progress import step
from recsys.tables import publish_partition, read_table
from recsys.tokens import covering_patterns

log = logging.getLogger(__name__)

UNKNOWN_SHOWN = 10  # unknown items named per kind (behaviour token, offer) in a message


class BadInputError(RecsysError):
    """Too large a share of a market's events failed validation."""


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
    settings = config.interactions
    snapshot = settings.snapshot()
    split, cutoff = cutoffs(snapshot, settings.holdout_days)
    log.info(
        "snapshot %s: training on events before %s, holdout %s .. %s",
        snapshot,
        split.date(),
        split.date(),
        cutoff.date(),
    )
    catalog_df = read_table(spark, config, S.CATALOG)
    validated = validate_events(
        read_source(spark, config),
        catalog_df,
        cutoff=F.lit(cutoff),
        max_values=settings.max_values,
        event_types=settings.event_types,
        behaviour_tokens=settings.behaviour_tokens,
    ).persist()
    try:
        with step("build-interactions: validate"):
            tally = _tally(validated.tally_df)
            _log_tally(tally)
            unknown = _unknown_items(validated, config) if _has(tally, UNKNOWN_ITEM) else ""
            publish_partition(
                spark,
                config,
                validated.quarantine_df.withColumn("snapshot_date", F.lit(snapshot)),
                S.EVENTS_QUARANTINE,
                partition_column="snapshot_date",
                value=snapshot,
            )
            _check_bad_share(
                tally, settings.max_bad_share, set(config.markets.markets), unknown=unknown
            )
            if unknown:  # under the threshold the rows are only quarantined: say what they were
                log.warning("%s", unknown)
        with step("build-interactions: matrices"):
            _write_matrices(spark, config, validated.events_df, catalog_df)
        with step("build-interactions: user state"):
            _write_user_state(spark, config, validated.events_df, catalog_df)
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


def _write_matrices(
    spark: SparkSession, config: Config, events_df: DataFrame, catalog_df: DataFrame
) -> None:
    snapshot = config.interactions.snapshot()
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
        publish_partition(
            spark,
            config,
            interactions_df,
            S.INTERACTIONS,
            partition_column="snapshot_date",
            value=snapshot,
        )
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
    spark: SparkSession, config: Config, events_df: DataFrame, catalog_df: DataFrame
) -> None:
    """Each user's plan, add-ons, trial use and verification at the tune split, the split and
    the snapshot, read from events before each moment: what offline evaluation needs to know
    what a user could have been shown then, without looking ahead."""
    snapshot = config.interactions.snapshot()
    split, cutoff = cutoffs(snapshot, config.interactions.holdout_days)
    tune_split = split - dt.timedelta(days=config.interactions.holdout_days)
    moments = {TUNE: tune_split, TRAIN: split, FULL: cutoff}
    state_df = states_at(events_df, catalog_df, moments)  # one pass for the three
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
) -> None:
    """Fail when a configured market, or all rows together, pass the bad-row threshold.

    Rows naming no configured market count towards the overall share only. ``unknown``
    (what the unknown items are, and where to declare them) ends the message when set.
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
            "written to interactions (rejected rows are in events_quarantine):\n  "
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
