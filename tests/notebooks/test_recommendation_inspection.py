"""The inspection's aggregations of served lists and eligibility verdicts on tiny lists whose
answers are counted by hand, and its charts."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import types as T

from recsys.errors import RecsysError
from recsys.notebooks import recommendation_inspection as ri

SNAPSHOT = dt.date(2026, 11, 1)
LIST_COLUMNS = [
    ("user_id", T.StringType()),
    ("arm", T.StringType()),
    ("rank", T.IntegerType()),
    ("offer_id", T.StringType()),
    ("display_name", T.StringType()),
    ("price_display", T.StringType()),
    ("price_amount", T.DecimalType(18, 4)),
    ("currency", T.StringType()),
    ("p_convert", T.DoubleType()),
    ("expected_value", T.DoubleType()),
    ("reason_code", T.StringType()),
    ("snapshot_date", T.DateType()),
]
LISTS_SCHEMA = T.StructType([T.StructField(n, t, True) for n, t in LIST_COLUMNS])


def _row(user, arm, rank, offer, p, value, reason):
    price = {"a": 10, "b": 20, "c": 30}.get(offer)
    return (
        user,
        arm,
        rank,
        offer,
        offer and f"Offer {offer}",
        offer and f"{price},00 kr",
        None if price is None else __import__("decimal").Decimal(price),
        "SEK",
        p,
        value,
        reason,
        SNAPSHOT,
    )


@pytest.fixture(scope="module")
def lists_df(spark):
    rows = [
        _row("u1", "treatment", 1, "a", 0.10, 1.0, "signal:household"),
        _row("u1", "treatment", 2, "b", 0.20, 4.0, "fallback_popular"),
        _row("u2", "treatment", 1, "c", 0.30, 9.0, "exploration"),
        _row("u3", "control", 1, "b", 0.40, 8.0, "popular_in_market"),
        _row("u4", "holdout", 0, None, None, None, "holdout"),
        _row("u5", "control", 0, None, None, None, "no_eligible_offer"),
    ]
    return spark.createDataFrame(rows, LISTS_SCHEMA)


def test_plan_mix_is_each_offers_share_of_the_arms_users_at_a_rank(spark, lists_df):
    expected = spark.createDataFrame(
        [
            ("control", 1, "b", 1, 1.0),
            ("treatment", 1, "a", 1, 0.5),
            ("treatment", 1, "c", 1, 0.5),
            ("treatment", 2, "b", 1, 1.0),
        ],
        "arm string, rank int, offer_id string, users long, share double",
    )
    assert_df_equality(ri.plan_mix(lists_df), expected, ignore_nullable=True)


def test_reason_mix_counts_every_row_rank_zero_included(spark, lists_df):
    expected = spark.createDataFrame(
        [
            ("control", "no_eligible_offer", 1, 0.5),
            ("control", "popular_in_market", 1, 0.5),
            ("holdout", "holdout", 1, 1.0),
            ("treatment", "exploration", 1, 1 / 3),
            ("treatment", "fallback_popular", 1, 1 / 3),
            ("treatment", "signal:household", 1, 1 / 3),
        ],
        "arm string, reason_code string, rows long, share double",
    )
    assert_approx_df_equality(ri.reason_mix(lists_df), expected, 1e-12, ignore_nullable=True)


def test_coverage_per_arm_and_overall_counts_users_not_rows(spark, lists_df):
    users_df = spark.createDataFrame([(f"u{i}",) for i in range(1, 7)], "user_id string")
    expected = spark.createDataFrame(
        [
            ("control", 2, 1, 0.5, 0, 1, 0, 0.0, 0, None),
            ("holdout", 1, 0, 0.0, 1, 0, 0, 0.0, 0, None),
            ("treatment", 2, 2, 1.0, 0, 0, 1, 0.5, 1, None),
            ("all", 5, 3, 0.6, 1, 1, 1, 0.2, 1, 1),  # u6 has no row at all
        ],
        "arm string, users long, with_list long, share_with_list double, holdout long, "
        "no_eligible_offer long, fallback long, share_fallback double, exploring long, "
        "not_served long",
    )
    actual = ri.coverage(lists_df, users_df).orderBy((ri.F.col("arm") == "all").cast("int"), "arm")
    assert_approx_df_equality(actual, expected, 1e-12, ignore_nullable=True)


def test_audit_reasons_are_per_offer_shares_with_eligible_as_a_verdict(spark):
    audit_df = spark.createDataFrame(
        [
            ("u1", "a", True, None),
            ("u2", "a", True, None),
            ("u3", "a", False, "current_plan"),
            ("u1", "b", False, None),  # an exclusion without a reason still shows
        ],
        "user_id string, offer_id string, eligible boolean, reason_code string",
    )
    expected = spark.createDataFrame(
        [("a", "eligible", 2, 2 / 3), ("a", "current_plan", 1, 1 / 3), ("b", "unknown", 1, 1.0)],
        "offer_id string, verdict string, users long, share double",
    )
    assert_approx_df_equality(ri.audit_reasons(audit_df), expected, 1e-12, ignore_nullable=True)


def test_value_quantiles_summarise_the_listed_rows_of_each_offer(lists_df):
    table = ri.value_quantiles(lists_df).toPandas().set_index("offer_id")
    assert list(table.index) == ["b", "a", "c"]  # most listed first, then by id
    assert table.loc["b", "rows"] == 2
    assert table.loc["b", "price_amount"] == 20.0
    assert table.loc["b", "p_convert_q05"] == 0.20
    assert table.loc["b", "p_convert_q95"] == 0.40
    assert table.loc["a", "expected_value_q50"] == 1.0
    assert {f"expected_value_q{q}" for q in ("05", "25", "50", "75", "95")} <= set(table)


def test_examples_are_whole_lists_of_the_first_users_of_each_arm(lists_df):
    rows = ri.examples(lists_df, users_per_arm=1).toPandas()
    assert list(zip(rows["user_id"], rows["rank"], strict=True)) == [
        ("u3", 1),
        ("u4", 0),
        ("u1", 1),
        ("u1", 2),
    ]
    assert list(rows.columns) == list(ri.EXAMPLE_COLUMNS)


def test_snapshot_and_an_unknown_market(spark, config, lists_df):
    assert ri.snapshot_of(lists_df) == SNAPSHOT
    with pytest.raises(RecsysError, match="unknown market 'XX'"):
        ri.served_lists(spark, config, "XX")


def test_charts_have_a_panel_per_arm_a_bar_per_reason_and_a_box_per_offer(lists_df):
    mix = ri.plan_mix(lists_df).toPandas()
    figure = ri.plot_plan_mix(mix, "SE")
    assert [a.get_title() for a in figure.axes] == ["SE, treatment arm", "SE, control arm"]
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["a", "b", "c"]

    reasons = ri.reason_mix(lists_df).toPandas()
    (axes,) = ri.plot_reasons(reasons, "SE").axes
    shown = {t.get_text() for t in axes.get_yticklabels()}
    assert shown == set(reasons["reason_code"]) - {"holdout"}
    assert [len(c) for c in axes.containers] == [len(shown), len(shown)]

    verdicts = pd.DataFrame(
        [("a", "eligible", 2, 2 / 3), ("a", "current_plan", 1, 1 / 3), ("b", "downgrade", 1, 1.0)],
        columns=["offer_id", "verdict", "users", "share"],
    )
    (axes,) = ri.plot_audit(verdicts, "SE").axes
    assert [t.get_text() for t in axes.get_yticklabels()] == ["b", "a"]
    widths = [[bar.get_width() for bar in bars] for bars in axes.containers]
    assert widths == [[0, 2], [0, 1], [1, 0]]  # eligible first, then reasons by name
    (axes,) = ri.plot_audit(verdicts.iloc[:0], "SE").axes  # nothing audited: said, not blank
    assert [t.get_text() for t in axes.texts] == [
        "SE: no eligibility verdicts audited for this snapshot"
    ]

    values = ri.value_quantiles(lists_df).toPandas()
    left, right = ri.plot_values(values, "SE").axes
    assert [t.get_text() for t in left.get_yticklabels()] == [
        "b (20 SEK, 2 rows)",
        "a (10 SEK, 1 rows)",
        "c (30 SEK, 1 rows)",
    ]
    assert right.get_xlabel() == "expected value, SEK"
