"""What stops `build-interactions` before it publishes, and what it says when it does.

A run publishes nothing when its events source has no rows, when too large a share of a
market's events fails validation (``interactions.max_bad_share``), or when the interactions
would shrink by more than ``interactions.max_drop_share``: every table keeps its previous
version, and the failed run's rejected rows go to ``events_quarantine_failed`` instead of
``events_quarantine``. Under the thresholds the rejected rows are only quarantined, and the
log says how many there were and what the unknown items were.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

from pyspark.sql import DataFrame, Row, SparkSession, Window
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.config import Config
from recsys.errors import RecsysError
from recsys.interactions.validate import UNKNOWN_ITEM, Validated
from recsys.tables import publish_table, read_table
from recsys.tokens import covering_patterns

log = logging.getLogger(__name__)

UNKNOWN_SHOWN = 10  # unknown items named per kind (behaviour token, offer) in a message
# Where a failed run's rejected rows go: events_quarantine keeps matching the interactions
# that are served, and a person can still read why the run failed.
FAILED_QUARANTINE = f"{S.EVENTS_QUARANTINE}_failed"

# market -> reject reason (None for valid rows) -> rows
Tally = dict[str, dict[str | None, int]]


class BadInputError(RecsysError):
    """Too large a share of a market's events failed validation."""


class CollapseError(RecsysError):
    """An events source with no rows, or interactions far fewer than those they replace."""


def source_name(config: Config) -> str:
    """The events source as a person reads it: the table or the path."""
    source = config.interactions.source
    if source.table:
        return f"table {config.table(source.table)} (interactions.source.table)"
    return f"{source.format} files {source.path} (interactions.source.path)"


def check_validation(
    spark: SparkSession, config: Config, validated: Validated, quarantine_df: DataFrame
) -> None:
    """Log what validation rejected, and fail when nothing or too much of it is valid.

    Parameters
    ----------
    spark : SparkSession
        The session that publishes the failed run's quarantine.
    config : Config
        Its ``interactions.max_bad_share`` is the threshold, its markets the ones checked.
    validated : Validated
        The persisted validation of the events source: its tally and unknown items.
    quarantine_df : DataFrame
        The rejected rows with their ``snapshot_date``, published as
        ``events_quarantine_failed`` when the bad-row share fails the run.

    Raises
    ------
    CollapseError
        The source has no rows.
    BadInputError
        A configured market's, or all markets', share of rejected rows is above the threshold.
    """
    tally = _tally(validated.tally_df)
    _log_tally(tally)
    _check_not_empty(tally, config)
    unknown = _unknown_items(validated, config) if _has(tally, UNKNOWN_ITEM) else ""
    with _failed_quarantine(spark, config, quarantine_df):
        _check_bad_share(
            tally,
            config.interactions.max_bad_share,
            set(config.markets.markets),
            unknown=unknown,
            failed_table=config.table(FAILED_QUARANTINE),
        )
    if unknown:  # under the threshold the rows are only quarantined: say what they were
        log.warning("%s", unknown)


def check_shrink(
    spark: SparkSession,
    config: Config,
    interactions_df: DataFrame,
    quarantine_df: DataFrame,
    *,
    snapshot: dt.date,
) -> None:
    """Fail when the interactions would shrink by more than ``interactions.max_drop_share``.

    Parameters
    ----------
    spark : SparkSession
        The session that reads the interactions served and publishes the failed quarantine.
    config : Config
        Its ``interactions.max_drop_share`` is the threshold.
    interactions_df : DataFrame
        The interactions about to be published (persisted: they are counted here).
    quarantine_df : DataFrame
        The run's rejected rows, published as ``events_quarantine_failed`` when it fails.
    snapshot : datetime.date
        The snapshot the interactions are for.

    Raises
    ------
    CollapseError
        Fewer rows than ``1 - max_drop_share`` of the version they replace: that snapshot's,
        else the latest earlier one's (:func:`previous_rows`).
    """
    # generate-world writes the synthetic world at whatever size it is asked for: built
    # from that world's own events, interactions replace the previous ones at any size.
    regenerated = config.interactions.source.table == S.EVENTS and spark.catalog.tableExists(
        config.table(S.WORLD_TRUTH)
    )
    previous = None if regenerated else previous_rows(spark, config, snapshot)
    with _failed_quarantine(spark, config, quarantine_df):
        _check_rows(interactions_df.count(), previous, config.interactions.max_drop_share, snapshot)


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


def _check_not_empty(tally: Tally, config: Config) -> None:
    total = sum(sum(r.values()) for r in tally.values())
    if total == 0:
        raise CollapseError(
            f"the events source, {source_name(config)}, has 0 rows; nothing was written: "
            "interactions, events_quarantine and the tables built with them keep their "
            "previous version. Check that the source (or the file ingest read) holds events."
        )


def _check_rows(
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


def _tally(tally_df: DataFrame) -> Tally:
    """market -> reason (None for valid) -> rows. Markets x reasons: small."""
    tally: Tally = defaultdict(dict)
    for row in tally_df.collect():
        tally[row["market"]][row["reject_reason"]] = row["rows"]
    return tally


def _log_tally(tally: Tally) -> None:
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


def _has(tally: Tally, reason: str) -> bool:
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
    tally: Tally,
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
