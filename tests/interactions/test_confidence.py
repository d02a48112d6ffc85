"""Weighting, decay and damping against hand-computed values."""

from __future__ import annotations

import datetime as dt
import math

from chispa import assert_approx_df_equality
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys import schemas as S
from recsys.interactions.confidence import with_confidence

REF = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
# The reference time: only events before it count, so it is a microsecond after the events
# of age 0 (a decay of 2.7e-13, far inside the tolerance).
JUST_AFTER = REF + dt.timedelta(microseconds=1)
WEIGHTS = {"plan_page_view": 2.0, "conversion": 20.0, "offer_impression": 0.0}
OUT = T.StructType(
    [
        T.StructField("market", T.StringType()),
        T.StructField("user_id", T.StringType()),
        T.StructField("item_id", T.StringType()),
        T.StructField("confidence", T.DoubleType()),
    ]
)


def _events(spark, rows):
    return spark.createDataFrame(
        [
            (u, "SE", t, i, (REF - dt.timedelta(days=age)).replace(tzinfo=None), 1.0)
            for u, t, i, age in rows
        ],
        S.EVENTS_SCHEMA,
    )


def _confidence(events_df, aggregation="log", cap=10.0, references=None):
    rows_df = with_confidence(
        events_df,
        references=references or {"full": F.lit(JUST_AFTER)},
        weights=WEIGHTS,
        half_life_days=30.0,
        aggregation=aggregation,
        cap=cap,
    )
    return rows_df if references else rows_df.drop("split")


def test_weight_decay_and_log_damping(spark):
    events_df = _events(
        spark,
        [
            ("a", "plan_page_view", "premium_family", 30),  # decay 0.5
            ("a", "plan_page_view", "premium_family", 0),  # decay 1.0
            ("a", "conversion", "premium_family", 60),  # decay 0.25
            ("a", "offer_impression", "premium_duo", 0),  # weight 0: no row
            ("b", "plan_page_view", "premium_duo", 15),  # decay 2 ** -0.5
        ],
    )
    expected = spark.createDataFrame(
        [
            ("SE", "a", "premium_family", 2 * math.log1p(1.5) + 20 * math.log1p(0.25)),
            ("SE", "b", "premium_duo", 2 * math.log1p(2**-0.5)),
        ],
        OUT,
    )
    assert_approx_df_equality(
        _confidence(events_df), expected, 1e-9, ignore_row_order=True, ignore_nullable=True
    )


def test_ten_thousand_page_views_cannot_swamp_the_matrix(spark):
    spam = [("spammer", "plan_page_view", "premium_duo", 0)] * 10_000
    events_df = _events(spark, [*spam, ("buyer", "conversion", "premium_duo", 0)])
    expected_cap = spark.createDataFrame(
        [("SE", "spammer", "premium_duo", 2 * 10.0), ("SE", "buyer", "premium_duo", 20 * 1.0)],
        OUT,
    )
    assert_approx_df_equality(
        _confidence(events_df, aggregation="cap"),
        expected_cap,
        1e-9,
        ignore_row_order=True,
        ignore_nullable=True,
    )
    expected_log = spark.createDataFrame(
        [
            ("SE", "spammer", "premium_duo", 2 * math.log1p(10_000)),
            ("SE", "buyer", "premium_duo", 20 * math.log1p(1)),
        ],
        OUT,
    )
    assert_approx_df_equality(
        _confidence(events_df), expected_log, 1e-9, ignore_row_order=True, ignore_nullable=True
    )


def test_each_reference_counts_only_earlier_events_decayed_to_it(spark):
    events_df = _events(
        spark,
        [
            ("a", "plan_page_view", "premium_family", 30),
            ("a", "plan_page_view", "premium_family", 0),
            ("b", "plan_page_view", "premium_duo", 5),  # after the earlier reference
        ],
    )
    earlier = REF - dt.timedelta(days=15)
    rows_df = _confidence(events_df, references={"now": F.lit(JUST_AFTER), "then": F.lit(earlier)})
    expected = spark.createDataFrame(
        [
            ("SE", "a", "premium_family", "now", 2 * math.log1p(0.5 + 1.0)),
            ("SE", "b", "premium_duo", "now", 2 * math.log1p(2 ** (-5 / 30))),
            ("SE", "a", "premium_family", "then", 2 * math.log1p(2 ** (-15 / 30))),
        ],
        "market string, user_id string, item_id string, split string, confidence double",
    )
    assert_approx_df_equality(rows_df, expected, 1e-9, ignore_row_order=True, ignore_nullable=True)
