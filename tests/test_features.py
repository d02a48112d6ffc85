"""The conversion model's features: read at a split from nothing after it, offers by their
attributes."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_approx_df_equality
from pyspark.sql import functions as F

from recsys.eligibility import states_at
from recsys.features import (
    event_values,
    offer_features,
    plan_tiers,
    user_features,
    with_pair_features,
)
from recsys.interactions.build import cutoffs, interaction_rows
from recsys.vocabulary import FULL, TRAIN, TUNE

SNAPSHOT = dt.date(2026, 11, 1)
EVENTS = (
    "user_id string, market string, event_type string, item_id string, event_ts timestamp, "
    "value double"
)


def _ts(day: str) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def catalog_df(spark):
    return spark.createDataFrame(
        [
            ("SE", "premium_individual", "premium_individual", "plan", 2, 30, None, None, 119.0),
            ("SE", "premium_family", "premium_family", "plan", 4, 30, None, None, 179.0),
            ("SE", "annual_individual", "premium_individual", "plan", 2, 365, None, None, 1190.0),
            ("SE", "trial_individual_1m", "premium_individual", "promo", 2, 30, 30, None, 119.0),
        ],
        "market string, offer_id string, plan_id string, kind string, tier int, "
        "period_days int, trial_days int, discount_months int, price double",
    )


def _features_at(spark, config, events, split):
    events_df = spark.createDataFrame(events, EVENTS)
    rows_df = interaction_rows(events_df, config.interactions, snapshot=SNAPSHOT)
    split_at, cutoff = cutoffs(SNAPSHOT, config.interactions.holdout_days)
    moments = {
        TUNE: split_at - dt.timedelta(days=config.interactions.holdout_days),
        TRAIN: split_at,
        FULL: cutoff,
    }
    catalog_df = spark.createDataFrame(
        [("SE", "premium_individual", "premium_individual", "plan", 2, [])],
        "market string, offer_id string, plan_id string, kind string, tier int, "
        "requires_plans array<string>",
    )
    state_df = states_at(events_df, catalog_df, moments)
    profile_df = spark.createDataFrame(
        [("SE", "u1", dt.date(2026, 1, 1), 3)],
        "market string, user_id string, signup_date date, household_size_hint int",
    )
    values_df = event_values(
        events_df,
        ["household_colisten"],
        config.interactions.max_values,
        before=moments[split],
    )
    return user_features(
        rows_df.withColumn("is_offer", F.col("item_id") == "premium_individual").where(
            F.col("split") == split
        ),
        state_df.where(F.col("split") == split),
        profile_df,
        at=moments[split].date(),
        values_df=values_df,
    ).first()


def test_an_event_moved_across_the_split_changes_only_the_later_features(spark, config):
    """The tune split is 2026-09-20 (two 21-day windows before the snapshot). A household
    co-listen on 09-10 is behaviour at both splits; moved to 09-25 it is gone from the tune
    split's features (its count and its value) and still in the train split's."""
    base = [("u1", "SE", "listen", "genre:pop", _ts("2026-09-01"), 30.0)]
    before = [*base, ("u1", "SE", "household_colisten", "signal:household", _ts("2026-09-10"), 3.0)]
    after = [*base, ("u1", "SE", "household_colisten", "signal:household", _ts("2026-09-25"), 3.0)]
    tune_before = _features_at(spark, config, before, TUNE)
    tune_after = _features_at(spark, config, after, TUNE)
    train_before = _features_at(spark, config, before, TRAIN)
    train_after = _features_at(spark, config, after, TRAIN)

    assert "signal:household" in tune_before["behaviour"]
    assert "signal:household" not in tune_after["behaviour"]
    assert tune_after["behaviour"]["genre:pop"] == pytest.approx(
        tune_before["behaviour"]["genre:pop"]
    )
    # At the train split both versions lie before it: present, the later one less decayed.
    assert (
        train_after["behaviour"]["signal:household"] > train_before["behaviour"]["signal:household"]
    )
    assert train_after["behaviour"]["genre:pop"] == pytest.approx(
        train_before["behaviour"]["genre:pop"]
    )
    # The co-listen's value (how many listened together) follows the event across the split;
    # the value of a type not listed (listen minutes) is never a feature.
    assert tune_before["event_values"] == {"household_colisten": 3.0}
    assert tune_after["event_values"] == {}
    assert (
        train_before["event_values"] == train_after["event_values"] == {"household_colisten": 3.0}
    )
    assert tune_before["tenure_days"] == (dt.date(2026, 9, 20) - dt.date(2026, 1, 1)).days
    assert tune_before["household_size_hint"] == 3


def test_offers_are_described_by_their_attributes(spark, catalog_df):
    """Relative price is the monthly price over the reference offer's: an annual plan at ten
    months' price is 10/12.2 of a month; the trial keeps its plan's tier."""
    expected = spark.createDataFrame(
        [
            ("SE", "annual_individual", "plan", 2, 365, 0, 0, 1190.0 * 30 / 365 / 119.0),
            ("SE", "premium_family", "plan", 4, 30, 0, 0, 179.0 / 119.0),
            ("SE", "premium_individual", "plan", 2, 30, 0, 0, 1.0),
            ("SE", "trial_individual_1m", "promo", 2, 30, 30, 0, 1.0),
        ],
        "market string, offer_id string, kind string, tier int, period_days int, "
        "trial_days int, discount_months int, relative_price double",
    )
    assert_approx_df_equality(
        offer_features(catalog_df, "premium_individual"),
        expected,
        1e-9,
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_a_user_without_history_gets_the_free_plan_and_no_behaviour(spark, catalog_df):
    pairs_df = spark.createDataFrame(
        [("SE", "nobody", "premium_family")], "market string, user_id string, offer_id string"
    )
    users_df = spark.createDataFrame(
        [],
        "market string, user_id string, current_plan string, n_addons int, "
        "active_addons array<string>, has_used_trial boolean, is_student_verified boolean, "
        "household_size_hint int, tenure_days int, behaviour map<string,double>, "
        "offer_interest map<string,double>",
    )
    row = with_pair_features(
        pairs_df, users_df, offer_features(catalog_df), plan_tiers(catalog_df)
    ).first()
    assert (row["current_plan"], row["current_tier"], row["tier_gap"]) == ("free", 0, 4)
    assert (row["interest"], row["n_addons"], dict(row["behaviour"])) == (0.0, 0, {})
    assert row["household_size_hint"] is None


def test_event_values_leave_out_what_build_interactions_would_quarantine(spark, config):
    """Negative, absurd (above interactions.max_values) and missing values do not enter a
    user's mean: only the plausible ones do."""
    events_df = spark.createDataFrame(
        [
            ("u1", "SE", "household_colisten", "signal:household", _ts("2026-09-01"), 2.0),
            ("u1", "SE", "household_colisten", "signal:household", _ts("2026-09-02"), 4.0),
            ("u1", "SE", "household_colisten", "signal:household", _ts("2026-09-03"), -1.0),
            ("u1", "SE", "household_colisten", "signal:household", _ts("2026-09-04"), 500.0),
            ("u1", "SE", "household_colisten", "signal:household", _ts("2026-09-05"), None),
            ("u2", "SE", "household_colisten", "signal:household", _ts("2026-10-30"), 5.0),
        ],
        EVENTS,
    )
    values = {
        r["user_id"]: r["event_values"]
        for r in event_values(
            events_df,
            ["household_colisten"],
            config.interactions.max_values,
            before=_ts("2026-10-01"),
        ).collect()
    }

    assert values == {"u1": {"household_colisten": 3.0}}
