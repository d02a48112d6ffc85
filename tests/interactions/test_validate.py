"""Each reject reason, one row each, on raw string events as they come from a CSV file."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys import schemas as S
from recsys.catalog import catalog_df
from recsys.config import load_config
from recsys.errors import RecsysError
from recsys.interactions import validate as V
from tests.conftest import LOCAL_CONF

RAW = T.StructType([T.StructField(c, T.StringType()) for c in S.EVENTS_SCHEMA.fieldNames()])
OK_TS = "2026-10-20 10:00:00"
CUTOFF = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
LIMITS = {"listen": 1440.0, "default": 1e6}

GOOD = [
    ("u1", "SE", "conversion", "premium_family", OK_TS, "209.0"),
    ("u2", "SE", "listen", "genre:pop", "2026-10-01T08:00:00", "30"),
]
BAD = [
    ((None, "SE", "listen", "genre:pop", OK_TS, "1"), V.MISSING_USER_ID),
    (("  ", "SE", "listen", "genre:pop", OK_TS, "1"), V.MISSING_USER_ID),
    (("u3", "XX", "listen", "genre:pop", OK_TS, "1"), V.UNKNOWN_MARKET),
    (("u3", None, "listen", "genre:pop", OK_TS, "1"), V.UNKNOWN_MARKET),
    (("u4", "SE", "teleport", "genre:pop", OK_TS, "1"), V.UNKNOWN_EVENT_TYPE),
    (("u4", "SE", None, "genre:pop", OK_TS, "1"), V.UNKNOWN_EVENT_TYPE),
    (("u5", "SE", "listen", "genre:pop", None, "1"), V.MISSING_TIMESTAMP),
    (("u6", "SE", "listen", "genre:pop", "yesterday", "1"), V.UNPARSEABLE_TIMESTAMP),
    (("u7", "SE", "listen", "genre:pop", "2026-11-01 00:00:00", "1"), V.FUTURE_TIMESTAMP),
    (("u8", "SE", "conversion", "premium_mini", OK_TS, "1"), V.UNKNOWN_ITEM),  # not sold in SE
    (("u8", "SE", "listen", "premium_family", OK_TS, "1"), V.UNKNOWN_ITEM),  # offer as behaviour
    (("u8", "SE", "listen", None, OK_TS, "1"), V.UNKNOWN_ITEM),
    (("u9", "SE", "listen", "genre:pop", OK_TS, "lots"), V.UNPARSEABLE_VALUE),
    (("u9", "SE", "listen", "genre:pop", OK_TS, None), V.UNPARSEABLE_VALUE),
    (("u10", "SE", "listen", "genre:pop", OK_TS, "-1"), V.NEGATIVE_VALUE),
    (("u11", "SE", "listen", "genre:pop", OK_TS, "5000"), V.ABSURD_VALUE),
    (("u12", "SE", "renewal", "premium_family", OK_TS, "2000000"), V.ABSURD_VALUE),
]


@pytest.fixture(scope="module")
def validated(spark, config):
    # The second good row comes three times: one is kept, two are duplicates.
    rows = [*GOOD, GOOD[1], GOOD[1], *[row for row, _ in BAD]]
    raw_df = spark.createDataFrame(rows, RAW)
    return V.validate_events(
        raw_df, catalog_df(spark, config.markets), cutoff=F.lit(CUTOFF), max_values=LIMITS
    )


def test_every_bad_row_is_quarantined_with_its_reason(spark, validated):
    expected = [(*row, reason) for row, reason in BAD] + [(*GOOD[1], V.DUPLICATE)] * 2
    expected_df = spark.createDataFrame(
        expected, T.StructType([*RAW.fields, T.StructField("reject_reason", T.StringType())])
    )
    assert_df_equality(
        validated.quarantine_df, expected_df, ignore_row_order=True, ignore_nullable=True
    )


def test_valid_rows_come_out_once_and_typed(spark, validated):
    expected_df = spark.createDataFrame(
        [
            ("u1", "SE", "conversion", "premium_family", dt.datetime(2026, 10, 20, 10), 209.0),
            ("u2", "SE", "listen", "genre:pop", dt.datetime(2026, 10, 1, 8), 30.0),
        ],
        S.EVENTS_SCHEMA,
    )
    assert_df_equality(
        validated.events_df, expected_df, ignore_row_order=True, ignore_nullable=True
    )


def test_tally_counts_rows_by_market_and_reason(validated):
    tally = {(r["market"], r["reject_reason"]): r["rows"] for r in validated.tally_df.collect()}
    assert tally[("SE", None)] == 2
    assert tally[("SE", V.DUPLICATE)] == 2
    assert tally[("SE", V.ABSURD_VALUE)] == 2
    assert tally[("XX", V.UNKNOWN_MARKET)] == 1
    assert tally[(None, V.UNKNOWN_MARKET)] == 1
    assert sum(tally.values()) == len(GOOD) + 2 + len(BAD)


def test_missing_columns_are_named(spark, config):
    with pytest.raises(RecsysError, match=r"lacks columns \['value'\]"):
        V.validate_events(
            spark.createDataFrame([], RAW).drop("value"),
            catalog_df(spark, config.markets),
            cutoff=F.lit(CUTOFF),
            max_values=LIMITS,
        )


# Own data's vocabulary: an event type given a weight is a behaviour event type, and its
# items are the configured behaviour tokens (README "Bring your own data").
OWN = [
    ("u1", "SE", "addon_usage", "usage:tv", OK_TS, "1"),
    ("u2", "SE", "listen", "genre:pop", OK_TS, "1"),
    ("u3", "SE", "conversion", "premium_family", OK_TS, "209.0"),
]
OWN_BAD = [
    (("u4", "SE", "gaming", "usage:tv", OK_TS, "1"), V.UNKNOWN_EVENT_TYPE),
    (("u5", "SE", "addon_usage", "usage:radio", OK_TS, "1"), V.UNKNOWN_ITEM),
    (("u6", "SE", "listen", "genre:rock", OK_TS, "1"), V.UNKNOWN_ITEM),  # not a token here
    (("u7", "SE", "addon_usage", "premium_family", OK_TS, "1"), V.UNKNOWN_ITEM),  # an offer
    (("u8", "SE", "addon_usage", "usage:tv", OK_TS, "9"), V.ABSURD_VALUE),
]


def _own_vocabulary(spark, config, rows, settings=None):
    kwargs = (
        {"event_types": settings.event_types, "behaviour_tokens": settings.behaviour_tokens}
        if settings
        else {}
    )
    return V.validate_events(
        spark.createDataFrame(rows, RAW),
        catalog_df(spark, config.markets),
        cutoff=F.lit(CUTOFF),
        max_values=settings.max_values if settings else LIMITS,
        **kwargs,
    )


def test_configured_event_types_and_tokens_are_kept_and_others_quarantined(spark, config):
    settings = load_config(
        LOCAL_CONF,
        [
            "interactions.behaviour_events=[addon_usage]",
            "interactions.weights.addon_usage=1",
            "interactions.max_values.addon_usage=5",
            "interactions.behaviour_tokens=[usage:tv, genre:pop]",
            "train.models.ladder.signals={}",  # the ladder's signals are the music tokens
        ],
    ).interactions
    assert settings.event_types == (*S.EVENT_TYPES, "addon_usage")
    validated = _own_vocabulary(spark, config, OWN + [row for row, _ in OWN_BAD], settings)
    kept_df = spark.createDataFrame(
        [
            ("u1", "SE", "addon_usage", "usage:tv", dt.datetime(2026, 10, 20, 10), 1.0),
            ("u2", "SE", "listen", "genre:pop", dt.datetime(2026, 10, 20, 10), 1.0),
            ("u3", "SE", "conversion", "premium_family", dt.datetime(2026, 10, 20, 10), 209.0),
        ],
        S.EVENTS_SCHEMA,
    )
    assert_df_equality(validated.events_df, kept_df, ignore_row_order=True, ignore_nullable=True)
    quarantined_df = spark.createDataFrame(
        [(*row, reason) for row, reason in OWN_BAD],
        T.StructType([*RAW.fields, T.StructField("reject_reason", T.StringType())]),
    )
    assert_df_equality(
        validated.quarantine_df, quarantined_df, ignore_row_order=True, ignore_nullable=True
    )


def test_a_pattern_makes_every_token_with_its_prefix_known(spark, config):
    """``usage:*`` lets any usage token through; a token of another prefix, one that only
    shares the prefix's first letters, and an offer id stay unknown items."""
    settings = load_config(
        LOCAL_CONF,
        [
            "interactions.behaviour_events=[addon_usage]",
            "interactions.weights.addon_usage=1",
            "interactions.max_values.addon_usage=5",
            "interactions.behaviour_tokens=[usage:*, genre:pop]",
            "train.models.ladder.signals={}",
        ],
    ).interactions
    kept = [
        ("u1", "SE", "addon_usage", "usage:tv", OK_TS, "1"),
        ("u2", "SE", "addon_usage", "usage:radio", OK_TS, "1"),
        ("u3", "SE", "listen", "genre:pop", OK_TS, "1"),
        ("u4", "SE", "conversion", "premium_family", OK_TS, "209.0"),
    ]
    unknown = [
        ("u5", "SE", "addon_usage", "usages:tv", OK_TS, "1"),
        ("u6", "SE", "listen", "genre:rock", OK_TS, "1"),
        ("u7", "SE", "addon_usage", "premium_family", OK_TS, "1"),
    ]
    validated = _own_vocabulary(spark, config, kept + unknown, settings)
    kept_df = spark.createDataFrame(
        [(*row[:4], dt.datetime(2026, 10, 20, 10), float(row[5])) for row in kept],
        S.EVENTS_SCHEMA,
    )
    assert_df_equality(validated.events_df, kept_df, ignore_row_order=True, ignore_nullable=True)
    unknown_df = spark.createDataFrame(
        [(True, "usages:tv", 1), (True, "genre:rock", 1), (True, "premium_family", 1)],
        "is_behaviour boolean, item_id string, rows long",
    )
    assert_df_equality(
        validated.unknown_items_df, unknown_df, ignore_row_order=True, ignore_nullable=True
    )


def test_without_configuration_own_event_types_stay_unknown(spark, config):
    validated = _own_vocabulary(spark, config, OWN[:1])
    reasons = [r["reject_reason"] for r in validated.quarantine_df.collect()]
    assert reasons == [V.UNKNOWN_EVENT_TYPE]


def test_a_default_limit_alone_applies_to_every_event_type(spark, config):
    """max_values with only `default` (natural when the only events are conversions)."""
    rows = [
        ("u1", "SE", "conversion", "premium_family", OK_TS, "209.0"),
        ("u2", "SE", "listen", "genre:pop", OK_TS, "300"),
    ]
    validated = V.validate_events(
        spark.createDataFrame(rows, RAW),
        catalog_df(spark, config.markets),
        cutoff=F.lit(CUTOFF),
        max_values={"default": 250.0},
    )
    assert [r["user_id"] for r in validated.events_df.collect()] == ["u1"]
    assert [r["reject_reason"] for r in validated.quarantine_df.collect()] == [V.ABSURD_VALUE]


# Implausible rows: ids that are not valid UTF-8 or too long, users the users table lacks,
# timestamps before the floor. The valid row's user and the early row's are known users.
PLAUSIBLE = ("u1", "SE", "listen", "genre:pop", OK_TS, "1")
IMPLAUSIBLE = [
    (("u\ufffd2", "SE", "listen", "genre:pop", OK_TS, "1"), V.INVALID_ID),  # as CSV decodes
    (("u1", "SE", "listen", "genre:p\ufffdp", OK_TS, "1"), V.INVALID_ID),
    (("u" * 11, "SE", "listen", "genre:pop", OK_TS, "1"), V.ID_TOO_LONG),
    (("u1", "SE", "listen", "genre:" + "p" * 5, OK_TS, "1"), V.ID_TOO_LONG),
    (("ghost", "SE", "listen", "genre:pop", OK_TS, "1"), V.UNKNOWN_USER),
    (("u1", "SE", "listen", "genre:pop", "1969-12-31 23:59:59", "1"), V.EARLY_TIMESTAMP),
    (("u1", "SE", "listen", "genre:pop", "0001-01-01 00:00:00", "1"), V.EARLY_TIMESTAMP),
]


def test_implausible_rows_are_quarantined_with_their_reason(spark, config):
    raw_df = spark.createDataFrame([PLAUSIBLE, *[row for row, _ in IMPLAUSIBLE]], RAW)
    # Bytes that are not UTF-8 at all, as a Parquet string column may hold them.
    raw_df = raw_df.unionByName(
        raw_df.limit(1).withColumn("user_id", F.unhex(F.lit("75FF33")).cast("string"))
    )
    users_df = spark.createDataFrame([("u1",), ("u" * 11,)], "user_id string")
    validated = V.validate_events(
        raw_df,
        catalog_df(spark, config.markets),
        cutoff=F.lit(CUTOFF),
        max_values=LIMITS,
        users_df=users_df,
        min_ts=F.lit(dt.datetime(1970, 1, 1, tzinfo=dt.UTC)),
        max_id_length=10,
    )
    quarantined = [
        (r["user_id"].encode("utf-8", "surrogateescape"), r["item_id"], r["reject_reason"])
        for r in validated.quarantine_df.collect()
    ]
    expected = [(row[0].encode(), row[3], reason) for row, reason in IMPLAUSIBLE]
    # Spark hands invalid bytes to Python as U+FFFD too.
    expected.append(("u\ufffd3".encode(), "genre:pop", V.INVALID_ID))
    assert sorted(quarantined) == sorted(expected)
    assert [tuple(r) for r in validated.events_df.select("user_id", "item_id").collect()] == [
        ("u1", "genre:pop")
    ]
    tally = {r["reject_reason"]: r["rows"] for r in validated.tally_df.collect()}
    assert sum(tally.values()) == raw_df.count()  # rows in = valid + quarantined


def test_without_a_users_table_no_user_is_unknown(spark, config):
    validated = V.validate_events(
        spark.createDataFrame([("ghost", *PLAUSIBLE[1:])], RAW),
        catalog_df(spark, config.markets),
        cutoff=F.lit(CUTOFF),
        max_values=LIMITS,
    )
    assert validated.quarantine_df.count() == 0
