"""The simulator's pieces on tiny hand-built data: the look by rank, the cascade's expected
values, the oracle's list, the served slots, the exposure and outcome rows and the pre-period.
The draws on a whole generated world are in test_simulate.py (slow)."""

from __future__ import annotations

import datetime as dt
import itertools
import math

import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys import vocabulary as V
from recsys.world import simulate as sim
from recsys.world.expected import expected_charge, expected_conversion, look_chance, oracle_slots
from recsys.world.population import markets_df

START = dt.date(2026, 11, 1)
BIAS = [1.0, 0.6, 0.4]
REASON = "signal:household"  # the model's explanation of a slot
SLOT = "struct<rank: int, offer_id: string, p: double, bias: double>"
LISTS = (
    "user_id string, market string, arm string, rank int, offer_id string, propensity double, "
    "reason_code string, model_version string, snapshot_date date, experiment_id string"
)


def _list_row(user, arm, rank, offer, propensity, reason):
    return (user, "SE", arm, rank, offer, propensity, reason, "7", START, "exp-1")


def _exposure(user, arm, rank, offer, propensity, reason, examined, at):
    return (user, "SE", arm, rank, offer, propensity, reason, examined, at, "7", START, "exp-1")


@pytest.fixture(scope="module")
def slots_df(spark):
    """u1 served two offers (rows out of rank order), u2 the holdout's rank-0 row."""
    lists_df = spark.createDataFrame(
        [
            _list_row("u1", V.TREATMENT, 2, "premium_duo", 0.5, REASON),
            _list_row("u1", V.TREATMENT, 1, "premium_family", 0.9, REASON),
            _list_row("u2", V.HOLDOUT_ARM, 0, None, 1.0, V.HOLDOUT_REASON),
        ],
        LISTS,
    )
    return sim.served_slots(lists_df)


def test_a_look_follows_the_position_bias_and_its_last_value_holds_beyond_it(spark):
    ranks_df = spark.createDataFrame([(r,) for r in range(1, 6)], "rank int")
    looks = ranks_df.orderBy("rank").select(look_chance(BIAS, F.col("rank"))).collect()
    # Ranks 4 and 5 lie past the three-long curve: they take its last value.
    assert [row[0] for row in looks] == [1.0, 0.6, 0.4, 0.4, 0.4]


def test_a_lists_expected_conversion_and_charge_follow_the_cascade(spark):
    slots = [(1, "a", 0.5, 1.0), (2, "b", 0.4, 0.5), (3, "c", 0.2, 0.5)]
    lists_df = spark.createDataFrame(
        [("u1", slots), ("u2", [])], f"user_id string, slots array<{SLOT}>"
    )
    charge = F.create_map(F.lit("a"), F.lit(10.0), F.lit("b"), F.lit(30.0))  # c charges nothing
    got_df = lists_df.select(
        "user_id",
        expected_conversion(F.col("slots"), 0.5, F.lit(0.1)).alias("conversion"),
        expected_charge(F.col("slots"), 0.5, F.lit(2.0), charge).alias("charge"),
    )
    # On the surface a converts 0.5; b converts 0.5 left x 0.5 x 0.4 = 0.1; c 0.4 left x 0.5 x
    # 0.2 = 0.04: 0.64. Reach 0.5 makes it 0.32, and the plan page converts 0.1 of the 0.68
    # left: 0.388. Charge: 0.5 x (0.5 x 10 + 0.1 x 30 + 0.04 x 0) + 0.68 x 2 = 4 + 1.36.
    # An empty list leaves the plan page alone: 0.1 and 2.
    expected = spark.createDataFrame(
        [("u1", 0.388, 5.36), ("u2", 0.1, 2.0)], "user_id string, conversion double, charge double"
    )
    assert_approx_df_equality(got_df, expected, 1e-12, ignore_row_order=True, ignore_nullable=True)


def test_the_conversion_oracle_shows_the_best_list_under_the_cascade(spark):
    p_accept = {"a": 0.2, "b": 0.5, "c": 0.0, "d": 0.3, "e": 0.1}
    truth_df = spark.createDataFrame([(p_accept,)], "p_accept map<string, double>")
    oracle = oracle_slots(F.col("p_accept"), None, 3, BIAS)
    row = truth_df.select(
        oracle.alias("slots"), expected_conversion(oracle, 1.0, F.lit(0.0)).alias("conversion")
    ).first()
    # Best p first, each rank's look chance beside it; c (p 0) is not open to the user.
    shown = [(s["rank"], s["offer_id"], s["bias"]) for s in row["slots"]]
    assert shown == [(1, "b", 1.0), (2, "d", 0.6), (3, "a", 0.4)]
    # 1 - (1 - 0.5)(1 - 0.6 x 0.3)(1 - 0.4 x 0.2) = 1 - 0.5 x 0.82 x 0.92 = 0.6228, the best
    # of every list of three offers in every order (the cascade in pure Python).
    best = max(
        1 - math.prod(1 - p_accept[o] * b for o, b in zip(offers, BIAS, strict=True))
        for offers in itertools.permutations(p_accept, 3)
    )
    assert best == pytest.approx(0.6228, abs=1e-12)
    assert row["conversion"] == pytest.approx(0.6228, abs=1e-12)


def test_the_oracle_breaks_ties_by_offer_id_and_ranks_revenue_by_p_times_charge(spark):
    truth_df = spark.createDataFrame(
        [
            ("tie", {"x": 0.3, "w": 0.3, "y": 0.1}, {"x": 1.0, "w": 1.0, "y": 1.0}),
            ("paid", {"a": 0.5, "b": 0.2}, {"a": 10.0, "b": 40.0}),
        ],
        "user_id string, p_accept map<string, double>, charge map<string, double>",
    )

    def offers(key):
        oracle = oracle_slots(F.col("p_accept"), key, 2, BIAS)
        return F.transform(oracle, lambda s: s["offer_id"])

    got_df = truth_df.select(
        "user_id", offers(None).alias("by_p"), offers(F.col("charge")).alias("by_revenue")
    )
    # w and x tie on 0.3 (and on 0.3 x 1): w first, by id. b's 0.2 x 40 = 8 beats a's 0.5 x 10.
    expected = spark.createDataFrame(
        [("tie", ["w", "x"], ["w", "x"]), ("paid", ["a", "b"], ["b", "a"])],
        "user_id string, by_p array<string>, by_revenue array<string>",
    )
    assert_df_equality(got_df, expected, ignore_row_order=True, ignore_nullable=True)


def test_served_slots_hold_each_users_list_in_rank_order(spark, slots_df):
    u1 = [(1, "premium_family", 0.9, REASON), (2, "premium_duo", 0.5, REASON)]
    stamps = ("7", START, "exp-1")
    expected = spark.createDataFrame(
        [
            ("SE", "u1", V.TREATMENT, u1, *stamps),
            ("SE", "u2", V.HOLDOUT_ARM, [(0, None, 1.0, V.HOLDOUT_REASON)], *stamps),
        ],
        "market string, user_id string, arm string, served array<struct<rank: int, "
        "offer_id: string, propensity: double, reason_code: string>>, model_version string, "
        "snapshot_date date, experiment_id string",
    )
    assert_df_equality(slots_df, expected, ignore_row_order=True, ignore_nullable=True)


def test_exposures_mark_the_looked_slots_with_the_visit_and_keep_the_rank_0_row(spark, slots_df):
    visit = dt.datetime(2026, 11, 3, 12)
    looks_df = spark.createDataFrame(
        [("u1", [(1, True), (2, False)], visit), ("u2", [], dt.datetime(2026, 11, 5))],
        "user_id string, looked array<struct<rank: int, looked: boolean>>, visit_at timestamp",
    )
    simulated_df = slots_df.join(looks_df, on="user_id", how="inner")
    expected = spark.createDataFrame(
        [
            _exposure("u1", V.TREATMENT, 1, "premium_family", 0.9, REASON, True, visit),
            _exposure("u1", V.TREATMENT, 2, "premium_duo", 0.5, REASON, False, None),
            _exposure("u2", V.HOLDOUT_ARM, 0, None, 1.0, V.HOLDOUT_REASON, False, None),
        ],
        S.EXPERIMENT_EXPOSURES_SCHEMA,
    )
    got_df = sim.exposures(simulated_df)
    assert_df_equality(got_df, expected, ignore_row_order=True, ignore_nullable=True)


def test_the_pre_period_counts_money_and_behaviour_before_the_window_only(spark):
    # 28 days before 2026-11-01: from 2026-10-04 00:00, up to but not including 11-01 00:00.
    events_df = spark.createDataFrame(
        [
            ("u1", "SE", S.CONVERSION, "premium_individual", dt.datetime(2026, 10, 4), 129.0),
            ("u1", "SE", S.RENEWAL, "premium_individual", dt.datetime(2026, 10, 20), 50.0),
            ("u1", "SE", S.LISTEN, "genre:pop", dt.datetime(2026, 10, 10), 30.0),
            ("u1", "SE", S.SKIP_LIMIT_HIT, None, dt.datetime(2026, 10, 31, 23, 59, 59), 1.0),
            ("u1", "SE", S.CONVERSION, "premium_duo", dt.datetime(2026, 11, 1), 169.0),
            ("u1", "SE", S.LISTEN, "genre:pop", dt.datetime(2026, 10, 3, 23, 59, 59), 30.0),
            ("u2", "SE", S.LISTEN, "genre:rock", dt.datetime(2026, 11, 1), 30.0),
            ("u3", "SE", S.PLAN_PAGE_VIEW, "premium_duo", dt.datetime(2026, 10, 20), 1.0),
        ],
        S.EVENTS_SCHEMA,
    )
    # u1: 129 + 50 paid and two behaviour events in; the events on 11-01 00:00 (the window's
    # end) and on 10-03 are out, so u2 has none. A page view is neither money nor behaviour.
    expected = spark.createDataFrame(
        [("u1", 179.0, math.log1p(2)), ("u3", 0.0, 0.0)],
        "user_id string, pre_revenue double, pre_engagement double",
    )
    got_df = sim.pre_period(events_df, START, 28)
    assert_approx_df_equality(got_df, expected, 1e-12, ignore_row_order=True, ignore_nullable=True)


def test_a_sure_offer_converts_at_its_rank_and_outcomes_hold_one_row_per_user(
    spark, config, slots_df
):
    # Everyone opens the surface and looks at every rank; no one visits the plan page alone.
    sure = {"reach": 1.0, "position_bias": [1.0], "organic_rate": 0.0}
    config = config.model_copy(update={"simulate": config.simulate.model_copy(update=sure)})
    traits = (2, False, 10.0, 0.5, 0.2, 0.5, 1.0, "free", None)
    truth_df = spark.createDataFrame(
        [
            ("u1", "SE", *traits, {"premium_family": 0.0, "premium_duo": 1.0}),
            ("u2", "SE", *traits, {"premium_individual": 0.5}),
        ],
        S.WORLD_TRUTH_SCHEMA,
    )
    users_df = spark.createDataFrame(
        [("u1", "free", []), ("u2", "free", [])],
        "user_id string, current_plan string, active_addons array<string>",
    )
    events_df = spark.createDataFrame(
        [("u2", "SE", S.RENEWAL, "premium_duo", dt.datetime(2026, 10, 20), 30.0)],
        S.EVENTS_SCHEMA,
    )
    attrs_df, pre_df = markets_df(spark, config.markets), sim.pre_period(events_df, START, 28)
    simulated_df = sim.simulate(slots_df, truth_df, users_df, attrs_df, pre_df, config, START)
    outcomes_df = sim.outcomes(simulated_df, START, 28)
    # u1 skips rank 1 (p 0) and takes rank 2 (p 1): SE's Duo, 169 SEK (charged, kept or not:
    # no trial), all of it expected; the oracle shows Duo alone. Free, u1 pays for nothing else.
    # u2 is in the holdout: nothing shown, nothing expected; the oracle would show Individual,
    # taken half the time: 0.5 and 0.5 x 129 SEK. u2's 30 SEK renewal is the pre-period's.
    end = START + dt.timedelta(days=28)
    expected = spark.createDataFrame(
        [
            ("u1", 1, "premium_duo", 2, 169.0, 0, 0.0, 1.0, 169.0, 1.0, 169.0, end),
            ("u2", 0, None, None, 0.0, 0, 30.0, 0.0, 0.0, 0.5, 64.5, end),
        ],
        "user_id string, converted int, converted_offer string, converted_rank int, "
        "revenue double, trial_abuse int, pre_revenue double, expected_conversion double, "
        "expected_revenue double, oracle_conversion double, oracle_revenue double, "
        "window_end date",
    )
    got_df = outcomes_df.select(*expected.columns)
    assert_approx_df_equality(got_df, expected, 1e-12, ignore_row_order=True, ignore_nullable=True)
    at = F.col("converted_at")
    in_window = (at >= F.lit(START).cast("timestamp")) & (at < F.lit(end).cast("timestamp"))
    assert [r[0] for r in outcomes_df.where(in_window).select("user_id").collect()] == ["u1"]
