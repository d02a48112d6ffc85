"""Validation of raw events: every row is either valid or quarantined with a reason.

Rows are checked in a fixed order and get the first reason that applies, so each bad row is
counted once. Exact duplicates of a valid row are kept once; the copies are quarantined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys import schemas as S
from recsys.columns import literal_map
from recsys.errors import RecsysError
from recsys.tokens import matches_column

MISSING_USER_ID = "missing_user_id"
INVALID_ID = "invalid_id"  # a user or item id that is not valid UTF-8
ID_TOO_LONG = "id_too_long"
UNKNOWN_USER = "unknown_user"  # not in the users table
UNKNOWN_MARKET = "unknown_market"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
MISSING_TIMESTAMP = "missing_timestamp"
UNPARSEABLE_TIMESTAMP = "unparseable_timestamp"
EARLY_TIMESTAMP = "early_timestamp"
FUTURE_TIMESTAMP = "future_timestamp"
UNKNOWN_ITEM = "unknown_item"
UNPARSEABLE_VALUE = "unparseable_value"
NEGATIVE_VALUE = "negative_value"
ABSURD_VALUE = "absurd_value"
DUPLICATE = "duplicate"

REJECT_REASONS = (
    MISSING_USER_ID,
    INVALID_ID,
    ID_TOO_LONG,
    UNKNOWN_USER,
    UNKNOWN_MARKET,
    UNKNOWN_EVENT_TYPE,
    MISSING_TIMESTAMP,
    UNPARSEABLE_TIMESTAMP,
    EARLY_TIMESTAMP,
    FUTURE_TIMESTAMP,
    UNKNOWN_ITEM,
    UNPARSEABLE_VALUE,
    NEGATIVE_VALUE,
    ABSURD_VALUE,
    DUPLICATE,
)

RAW_COLUMNS = [f.name for f in S.EVENTS_SCHEMA.fields]


@dataclass(frozen=True)
class Validated:
    """Every distinct raw row once, with its multiplicity ``n`` and ``reject_reason`` (null
    for valid rows). The three frames below derive from it: persist it when using more
    than one."""

    grouped_df: DataFrame

    def persist(self) -> Validated:
        return Validated(self.grouped_df.persist(StorageLevel.MEMORY_AND_DISK))

    def unpersist(self) -> None:
        self.grouped_df.unpersist()

    @property
    def events_df(self) -> DataFrame:
        """Valid events with the events schema, each distinct row once."""
        return self.grouped_df.where(F.col("reject_reason").isNull()).select(
            "user_id",
            "market",
            "event_type",
            "item_id",
            F.col("ts").alias("event_ts"),
            F.col("num").alias("value"),
        )

    @property
    def quarantine_df(self) -> DataFrame:
        """Rejected rows as they came (strings) with ``reject_reason``; copies of a valid row
        beyond the first are ``duplicate``."""
        is_valid = F.col("reject_reason").isNull()
        copies = F.when(is_valid, F.col("n") - 1).otherwise(F.col("n"))
        return (
            self.grouped_df.where(copies > 0)
            .select(
                *RAW_COLUMNS,
                F.coalesce("reject_reason", F.lit(DUPLICATE)).alias("reject_reason"),
                F.explode(F.array_repeat(F.lit(1), copies.cast("int"))).alias("_copy"),
            )
            .drop("_copy")
        )

    @property
    def unknown_items_df(self) -> DataFrame:
        """Rows quarantined as ``unknown_item`` per (is_behaviour, item_id), with ``rows``;
        ``is_behaviour`` is true where a behaviour event carried the item (a token the config
        does not list) and false where an offer event did (an offer its market does not
        sell). Grain: distinct unknown items."""
        return (
            self.grouped_df.where(F.col("reject_reason") == F.lit(UNKNOWN_ITEM))
            # The event type is known here: an unknown one is the earlier reject reason.
            .groupBy((~F.col("event_type").isin(*S.OFFER_EVENTS)).alias("is_behaviour"), "item_id")
            .agg(F.sum("n").alias("rows"))
        )

    @property
    def tally_df(self) -> DataFrame:
        """Rows per (market, reject_reason), reason null for valid rows. Markets x reasons."""
        is_valid = F.col("reject_reason").isNull()
        kept = F.struct(
            F.col("reject_reason").alias("reason"),
            F.when(is_valid, 1).otherwise(F.col("n")).alias("rows"),
        )
        copies = F.struct(
            F.lit(DUPLICATE).alias("reason"),
            F.when(is_valid, F.col("n") - 1).otherwise(0).alias("rows"),
        )
        return (
            self.grouped_df.select("market", F.explode(F.array(kept, copies)).alias("t"))
            .where(F.col("t.rows") > 0)
            .groupBy("market", F.col("t.reason").alias("reject_reason"))
            .agg(F.sum("t.rows").alias("rows"))
        )


def with_is_offer(
    df: DataFrame, catalog_df: DataFrame, behaviour_tokens: Sequence[str] = S.BEHAVIOUR_TOKENS
) -> DataFrame:
    """``df`` plus ``is_offer``: true where (market, item_id) is an offer the market sells,
    false where item_id is a behaviour token, null where it is neither (an unknown item).

    Parameters
    ----------
    df : DataFrame
        Any rows with ``market`` and ``item_id``.
    catalog_df : DataFrame
        The catalog table: one row per (market, offer_id).
    behaviour_tokens : sequence of str
        ``interactions.behaviour_tokens`` (the synthetic world's by default): tokens, and
        prefix patterns such as ``contract:*`` (:mod:`recsys.tokens`).

    Returns
    -------
    DataFrame
        ``df``'s rows and columns, and ``is_offer``.
    """
    offers_df = catalog_df.select(
        "market", F.col("offer_id").alias("item_id"), F.lit(True).alias("_is_offer")
    )
    # Patterns cannot be listed as rows to join with: a token is matched by its prefix, on
    # the row itself. The config refuses a token or pattern that matches an offer id.
    is_token = matches_column(F.col("item_id"), behaviour_tokens)
    return (
        df.join(F.broadcast(offers_df), on=["market", "item_id"], how="left")
        .withColumn("is_offer", F.when(F.col("_is_offer"), True).when(is_token, False))
        .drop("_is_offer")
    )


def _parsed_ts(column: Column, dtype: T.DataType) -> Column:
    if isinstance(dtype, T.TimestampType | T.TimestampNTZType):
        return column.cast("timestamp")
    if isinstance(dtype, T.DateType):
        return column.cast("timestamp")
    return F.try_to_timestamp(F.trim(column.cast("string")))


def with_parsed_columns(raw_df: DataFrame) -> DataFrame:
    """Adds ``ts`` and ``num`` (parsed timestamp and value; null when unparseable) and keeps
    the raw columns as strings for the quarantine."""
    types = {f.name: f.dataType for f in raw_df.schema.fields}
    missing = [c for c in RAW_COLUMNS if c not in types]
    if missing:
        raise RecsysError(f"events source lacks columns {missing}; expected {RAW_COLUMNS}")
    return raw_df.select(
        *[F.col(c).cast("string").alias(c) for c in RAW_COLUMNS],
        _parsed_ts(F.col("event_ts"), types["event_ts"]).alias("ts"),
        F.col("value").cast("string").try_cast("double").alias("num"),
    )


def is_invalid_text(text: Column) -> Column:
    """True where ``text`` is not valid UTF-8: bytes that do not decode (a Parquet string
    holds them as they came), or U+FFFD, which a CSV reader puts in their place; null where
    ``text`` is null."""
    return ~F.is_valid_utf8(text) | text.contains("\ufffd")


def reject_reason(
    cutoff: Column,
    max_value: Column,
    event_types: Sequence[str] = S.EVENT_TYPES,
    *,
    min_ts: Column | None = None,
    max_id_length: int | None = None,
) -> Column:
    """The first rule a parsed row breaks, or null. Needs columns from ``with_parsed_columns``
    and ``with_is_offer`` (``is_offer``, null when the item is unknown there),
    ``market_known`` and ``user_known`` (false for a user the users table lacks, null when
    there is no users table to ask). ``event_types``: the known ones
    (``InteractionsConfig.event_types``); those that are not offer events are behaviour
    events, whose item is a behaviour token. ``min_ts`` (``interactions.min_event_ts``) and
    ``max_id_length`` (``interactions.max_id_length``): no floor and no limit when None."""
    user, event_type, ts, num = F.col("user_id"), F.col("event_type"), F.col("ts"), F.col("num")
    item = F.col("item_id")
    offer_event = event_type.isin(*S.OFFER_EVENTS)
    no = F.lit(False)
    too_long = (
        (F.length(user) > max_id_length) | (F.length(item) > max_id_length)
        if max_id_length is not None
        else no
    )
    early = ts < min_ts if min_ts is not None else no
    return (
        F.when(user.isNull() | (F.trim(user) == ""), F.lit(MISSING_USER_ID))
        .when(is_invalid_text(user) | F.coalesce(is_invalid_text(item), no), F.lit(INVALID_ID))
        .when(F.coalesce(too_long, no), F.lit(ID_TOO_LONG))
        .when(~F.coalesce(F.col("user_known"), F.lit(True)), F.lit(UNKNOWN_USER))
        .when(~F.coalesce(F.col("market_known"), no), F.lit(UNKNOWN_MARKET))
        .when(event_type.isNull() | ~event_type.isin(*event_types), F.lit(UNKNOWN_EVENT_TYPE))
        .when(F.col("event_ts").isNull(), F.lit(MISSING_TIMESTAMP))
        .when(ts.isNull(), F.lit(UNPARSEABLE_TIMESTAMP))
        .when(early, F.lit(EARLY_TIMESTAMP))
        .when(ts >= cutoff, F.lit(FUTURE_TIMESTAMP))
        .when(F.col("is_offer").isNull() | (F.col("is_offer") != offer_event), F.lit(UNKNOWN_ITEM))
        .when(num.isNull() | F.isnan(num), F.lit(UNPARSEABLE_VALUE))
        .when(num < 0, F.lit(NEGATIVE_VALUE))
        .when(num > max_value, F.lit(ABSURD_VALUE))
    )


def _with_user_known(df: DataFrame, users_df: DataFrame | None) -> DataFrame:
    """``df`` plus ``user_known``: whether ``users_df`` has the row's user (null without
    ``users_df``, or for a row without a user id)."""
    if users_df is None:
        return df.withColumn("user_known", F.lit(None).cast("boolean"))
    known_df = users_df.select("user_id").distinct().withColumn("user_known", F.lit(True))
    return df.join(known_df, on="user_id", how="left").withColumn(
        "user_known", F.when(F.col("user_id").isNotNull(), F.coalesce("user_known", F.lit(False)))
    )


def validate_events(
    raw_df: DataFrame,
    catalog_df: DataFrame,
    *,
    cutoff: Column,
    max_values: dict[str, float],
    event_types: Sequence[str] = S.EVENT_TYPES,
    behaviour_tokens: Sequence[str] = S.BEHAVIOUR_TOKENS,
    users_df: DataFrame | None = None,
    min_ts: Column | None = None,
    max_id_length: int | None = None,
) -> Validated:
    """Split raw events into valid rows and quarantined rows with a reason.

    Parameters
    ----------
    raw_df : DataFrame
        Events with the events columns, any of them possibly strings; one row per event.
    catalog_df : DataFrame
        The catalog table: one row per (market, offer_id).
    cutoff : Column
        The first instant after the snapshot; later events are ``future_timestamp``.
    max_values : dict of str to float
        ``interactions.max_values``: the largest plausible value per event type.
    event_types, behaviour_tokens : sequence of str
        The known vocabularies (``InteractionsConfig.event_types`` and
        ``.behaviour_tokens``, whose entries may be prefix patterns); the synthetic world's
        by default.
    users_df : DataFrame, optional
        The users table (one row per user, ``user_id``): events of other users are
        ``unknown_user``. None: no users table, no such check.
    min_ts : Column, optional
        ``interactions.min_event_ts``: earlier events are ``early_timestamp``.
    max_id_length : int, optional
        ``interactions.max_id_length``: longer user or item ids are ``id_too_long``.

    Returns
    -------
    Validated
        Every distinct raw row once with its multiplicity and reason (null: valid).
    """
    max_value = max_value_of(max_values)
    markets_df = catalog_df.select("market").distinct().withColumn("market_known", F.lit(True))
    labelled_df = (
        raw_df.transform(with_parsed_columns)
        .join(F.broadcast(markets_df), on="market", how="left")
        .transform(with_is_offer, catalog_df, behaviour_tokens)
        .transform(_with_user_known, users_df)
        .withColumn(
            "reject_reason",
            reject_reason(
                cutoff, max_value, event_types, min_ts=min_ts, max_id_length=max_id_length
            ),
        )
        .drop("user_known")
    )
    # One row per distinct event with its multiplicity: duplicates found without a sort.
    return Validated(
        labelled_df.groupBy(*RAW_COLUMNS, "ts", "num", "reject_reason").agg(
            F.count(F.lit(1)).alias("n")
        )
    )


def max_value_of(max_values: dict[str, float]) -> Column:
    """The largest plausible value of each row's ``event_type`` (``interactions.max_values``:
    its own limit, else ``default``, else none)."""
    default_max = F.lit(float(max_values.get("default", float("inf"))))
    per_type = {t: float(v) for t, v in max_values.items() if t != "default"}
    # Without per-type limits (only `default`) an empty map literal would have no key type.
    if not per_type:
        return default_max
    return F.coalesce(literal_map(per_type)[F.col("event_type")], default_max)
