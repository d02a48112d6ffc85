"""The three row sets of a snapshot, and that nothing after the split reaches training."""

from __future__ import annotations

import datetime as dt
import itertools
import math

import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.catalog import catalog_df
from recsys.interactions.build import (
    interaction_rows,
    matrix_stats,
    moments,
    offer_log_rows,
    with_indices,
)

SNAPSHOT = dt.date(2026, 11, 1)  # holdout_days 21: split at 2026-10-11


@pytest.fixture(scope="module")
def rows_df(spark, config):
    events = [
        ("u1", "SE", "plan_page_view", "premium_family", dt.datetime(2026, 10, 1), 1.0),
        ("u1", "SE", "conversion", "premium_family", dt.datetime(2026, 10, 20), 209.0),
        ("u1", "SE", "listen", "genre:kids", dt.datetime(2026, 10, 25), 30.0),
        ("u2", "SE", "listen", "genre:pop", dt.datetime(2026, 9, 1), 30.0),
        ("u2", "SE", "trial_start", "trial_individual_1m", dt.datetime(2026, 10, 5), 0.0),
    ]
    settings = config.interactions.model_copy(
        update={"holdout_days": 21, "half_life_days": 30.0, "aggregation": "log"}
    )
    rows_df = interaction_rows(
        spark.createDataFrame(events, S.EVENTS_SCHEMA), settings, snapshot=SNAPSHOT
    )
    return with_indices(
        rows_df, catalog_df(spark, config.markets), snapshot=SNAPSHOT, partitions=2
    ).cache()


def _split(rows_df, split):
    return rows_df.where(F.col("split") == split).select("user_id", "item_id", "confidence")


def _decay(days: float) -> float:
    return 0.5 ** (days / 30)


def test_training_rows_see_only_events_before_the_split(spark, config, rows_df):
    w = config.interactions.weights
    expected = spark.createDataFrame(
        [
            ("u1", "premium_family", w["plan_page_view"] * math.log1p(_decay(10))),
            ("u2", "genre:pop", w["listen"] * math.log1p(_decay(40))),
            ("u2", "trial_individual_1m", w["trial_start"] * math.log1p(_decay(6))),
        ],
        "user_id string, item_id string, confidence double",
    )
    assert_approx_df_equality(
        _split(rows_df, "train"), expected, 1e-9, ignore_row_order=True, ignore_nullable=True
    )


def test_past_windows_start_one_window_apart_before_the_tune_split():
    at = moments(SNAPSHOT, 21, past_windows=2)
    assert list(at) == ["past_2", "past_1", "tune", "train", "full"]
    days = [(b - a).days for a, b in itertools.pairwise(at.values())]
    assert days == [21, 21, 21, 21]
    assert at["full"] == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    assert list(moments(SNAPSHOT, 21)) == ["tune", "train", "full"]


def test_a_past_split_sees_only_events_before_its_start(spark, config):
    # past_1 starts three windows before the snapshot: 2026-08-30.
    events = [
        ("u1", "SE", "listen", "genre:pop", dt.datetime(2026, 8, 20), 30.0),
        ("u1", "SE", "listen", "genre:rock", dt.datetime(2026, 9, 1), 30.0),
        ("u2", "SE", "plan_page_view", "premium_duo", dt.datetime(2026, 9, 2), 1.0),
    ]
    settings = config.interactions.model_copy(
        update={"holdout_days": 21, "half_life_days": 30.0, "past_windows": 1}
    )
    rows_df = interaction_rows(
        spark.createDataFrame(events, S.EVENTS_SCHEMA), settings, snapshot=SNAPSHOT
    )
    expected = spark.createDataFrame(
        [("u1", "genre:pop", config.interactions.weights["listen"] * math.log1p(_decay(10)))],
        "user_id string, item_id string, confidence double",
    )
    assert_approx_df_equality(
        _split(rows_df, "past_1"), expected, 1e-9, ignore_row_order=True, ignore_nullable=True
    )
    assert _split(rows_df, "tune").count() == 3


def test_holdout_is_the_conversions_after_the_split(spark, rows_df):
    expected = spark.createDataFrame(
        [("u1", "premium_family", 1.0)], "user_id string, item_id string, confidence double"
    )
    assert_approx_df_equality(
        _split(rows_df, "holdout"), expected, 1e-9, ignore_row_order=True, ignore_nullable=True
    )


def test_full_rows_decay_to_the_snapshot(spark, config, rows_df):
    w = config.interactions.weights
    expected = spark.createDataFrame(
        [
            (
                "u1",
                "premium_family",
                w["plan_page_view"] * math.log1p(_decay(31))
                + w["conversion"] * math.log1p(_decay(12)),
            ),
            ("u1", "genre:kids", w["listen"] * math.log1p(_decay(7))),
            ("u2", "genre:pop", w["listen"] * math.log1p(_decay(61))),
            ("u2", "trial_individual_1m", w["trial_start"] * math.log1p(_decay(27))),
        ],
        "user_id string, item_id string, confidence double",
    )
    assert_approx_df_equality(
        _split(rows_df, "full"), expected, 1e-9, ignore_row_order=True, ignore_nullable=True
    )


def test_indices_are_shared_by_the_splits_and_contiguous(rows_df):
    users = rows_df.select("user_id", "user_idx").distinct().collect()
    assert sorted((r["user_id"], r["user_idx"]) for r in users) == [("u1", 0), ("u2", 1)]
    items = rows_df.select("item_id", "item_idx").distinct().collect()
    assert sorted(r["item_idx"] for r in items) == list(range(len(items)))
    assert {r["item_id"]: r["item_idx"] for r in items} == {
        k: i for i, k in enumerate(sorted(r["item_id"] for r in items))
    }


def test_tokens_matching_a_pattern_are_behaviour_items_and_others_are_dropped(spark, config):
    events = [
        ("u1", "SE", "conversion", "premium_family", dt.datetime(2026, 10, 1), 209.0),
        ("u1", "SE", "listen", "mood:calm", dt.datetime(2026, 10, 1), 30.0),
        ("u2", "SE", "listen", "mood:loud", dt.datetime(2026, 10, 1), 30.0),
        ("u2", "SE", "listen", "genre:pop", dt.datetime(2026, 10, 1), 30.0),  # not listed
    ]
    rows_df = interaction_rows(
        spark.createDataFrame(events, S.EVENTS_SCHEMA), config.interactions, snapshot=SNAPSHOT
    )
    indexed_df = with_indices(
        rows_df,
        catalog_df(spark, config.markets),
        snapshot=SNAPSHOT,
        partitions=2,
        behaviour_tokens=["mood:*"],
    )
    expected_df = spark.createDataFrame(
        [("u1", "premium_family", True), ("u1", "mood:calm", False), ("u2", "mood:loud", False)],
        "user_id string, item_id string, is_offer boolean",
    )
    assert_df_equality(
        indexed_df.where(F.col("split") == "train").select("user_id", "item_id", "is_offer"),
        expected_df,
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_matrix_stats(rows_df):
    stats = {r["split"]: r for r in matrix_stats(rows_df).collect()}
    assert (stats["train"]["users"], stats["train"]["nnz"], stats["train"]["items"]) == (2, 3, 4)
    assert stats["train"]["density"] == pytest.approx(3 / 8)
    assert stats["train"]["offer_user_share"] == pytest.approx(1.0)
    assert stats["full"]["nnz"] == 4
    assert stats["holdout"]["users"] == 1


def test_matrix_stats_record_a_split_the_build_wrote_without_rows(rows_df):
    """A past window before any user's first event is in the stats with zero users, so
    train can tell it from a window the build never wrote."""
    markets = {r["market"] for r in rows_df.select("market").distinct().collect()}
    stats_df = matrix_stats(rows_df, ["past_1", "train", "holdout"])
    empty = stats_df.where(F.col("split") == "past_1").collect()
    assert {r["market"] for r in empty} == markets
    assert {(r["users"], r["nnz"], r["density"]) for r in empty} == {(0, 0, 0.0)}
    assert stats_df.where(F.col("split") == "train").collect() == (
        matrix_stats(rows_df).where(F.col("split") == "train").collect()
    )


def test_offer_log_attributes_an_acceptance_to_the_impressions_before_it(spark):
    """An impression is accepted when the same offer is taken within attribution_days after
    it: not another offer, not before it, not after the horizon. Acceptances are rows too."""
    at = dt.datetime

    events = [
        ("u1", "SE", "offer_impression", "premium_family", at(2026, 10, 1), 0.25),
        ("u1", "SE", "offer_impression", "premium_duo", at(2026, 10, 1, 1), 0.5),
        ("u1", "SE", "conversion", "premium_family", at(2026, 10, 3), 209.0),
        ("u2", "SE", "offer_impression", "trial_individual_1m", at(2026, 9, 1), 0.4),
        ("u2", "SE", "trial_start", "trial_individual_1m", at(2026, 9, 20), 0.0),
        ("u3", "SE", "trial_start", "trial_individual_1m", at(2026, 10, 2), 0.0),
        ("u3", "SE", "offer_impression", "trial_individual_1m", at(2026, 10, 4), 0.4),
        ("u4", "SE", "plan_page_view", "premium_family", at(2026, 10, 9), 1.0),
        ("u4", "SE", "trial_start", "trial_family_1m", at(2026, 10, 9, 1), 0.0),
    ]
    log_df = offer_log_rows(
        spark.createDataFrame(events, S.EVENTS_SCHEMA), snapshot=SNAPSHOT, attribution_days=7
    )
    expected = spark.createDataFrame(
        [
            (
                "SE",
                "u1",
                "premium_family",
                "offer_impression",
                at(2026, 10, 1),
                0.25,
                at(2026, 10, 3),
            ),
            ("SE", "u1", "premium_duo", "offer_impression", at(2026, 10, 1, 1), 0.5, None),
            ("SE", "u1", "premium_family", "acceptance", at(2026, 10, 3), None, at(2026, 10, 3)),
            ("SE", "u2", "trial_individual_1m", "offer_impression", at(2026, 9, 1), 0.4, None),
            (
                "SE",
                "u2",
                "trial_individual_1m",
                "acceptance",
                at(2026, 9, 20),
                None,
                at(2026, 9, 20),
            ),
            (
                "SE",
                "u3",
                "trial_individual_1m",
                "acceptance",
                at(2026, 10, 2),
                None,
                at(2026, 10, 2),
            ),
            ("SE", "u3", "trial_individual_1m", "offer_impression", at(2026, 10, 4), 0.4, None),
            ("SE", "u4", "premium_family", "plan_page_view", at(2026, 10, 9), None, None),
            (
                "SE",
                "u4",
                "trial_family_1m",
                "acceptance",
                at(2026, 10, 9, 1),
                None,
                at(2026, 10, 9, 1),
            ),
        ],
        S.OFFER_LOG_SCHEMA.fieldNames()[:-1],
    ).withColumn("snapshot_date", F.lit(SNAPSHOT))
    assert_df_equality(log_df, expected, ignore_row_order=True, ignore_nullable=True)
