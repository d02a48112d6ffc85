"""Evaluation windows: only offers a user could have been shown count, only labelled users are
scored, and coverage counts the catalogue a model's lists reach."""

from __future__ import annotations

import math

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys.catalog import catalog_df
from recsys.config import EligibilityRules
from recsys.evaluation.metrics import per_user_metrics_at
from recsys.markets import MarketCatalog
from recsys.models import FAMILIES
from recsys.training import evaluate

STATE = (
    "market string, user_id string, current_plan string, active_addons array<string>, "
    "is_student_verified boolean, has_used_trial boolean"
)


@pytest.fixture(scope="module")
def se_catalog_df(spark, config):
    return catalog_df(spark, config.markets).where(F.col("market") == "SE").persist()


@pytest.fixture(scope="module")
def win(spark, se_catalog_df):
    state_df = spark.createDataFrame(
        [
            ("SE", "u1", "free", [], False, False),
            ("SE", "u2", "premium_individual", [], False, True),
            ("SE", "u3", "free", [], False, False),
        ],
        STATE,
    )
    outcomes_df = spark.createDataFrame(
        [
            ("SE", "u1", "premium_student"),  # not verified: could not have been shown
            ("SE", "u1", "trial_individual_1m"),
            ("SE", "u2", "premium_family"),
            ("SE", "u4", "premium_family"),  # no state: not a user of the window
        ],
        "market string, user_id string, item_id string",
    )
    return evaluate.window(state_df, outcomes_df, se_catalog_df)


def test_labels_are_the_eligible_conversions_with_their_price(spark, win, se_catalog_df):
    prices = {r["offer_id"]: float(r["price"]) for r in se_catalog_df.collect()}
    expected = spark.createDataFrame(
        [
            ("SE", "u1", "trial_individual_1m", prices["trial_individual_1m"]),
            ("SE", "u2", "premium_family", prices["premium_family"]),
        ],
        "market string, user_id string, item_id string, price double",
    )
    assert_df_equality(win.labels_df, expected, ignore_row_order=True, ignore_nullable=True)


def test_only_labelled_users_are_candidates_and_only_eligible_offers(win):
    users = {r["user_id"] for r in win.candidates_df.select("user_id").distinct().collect()}
    assert users == {"u1", "u2"}
    u2_offers = {r["offer_id"] for r in win.candidates_df.where(F.col("user_id") == "u2").collect()}
    assert "premium_individual" not in u2_offers  # the plan held
    assert "trial_individual_1m" not in u2_offers  # already pays
    assert "premium_family" in u2_offers


def test_configured_rules_remove_candidates_and_labels_as_in_serving(spark, se_catalog_df):
    state_df = spark.createDataFrame(
        [("SE", "u1", "free", [], False, False), ("SE", "u2", "free", [], False, False)], STATE
    )
    outcomes_df = spark.createDataFrame(
        [("SE", "u1", "trial_individual_1m"), ("SE", "u2", "premium_family")],
        "market string, user_id string, item_id string",
    )
    rules = EligibilityRules(exclude={"SE": ["trial_individual_1m"]})
    win = evaluate.window(state_df, outcomes_df, se_catalog_df, rules)
    # u1 converted only to an offer serving withholds: no label, so not a user of the window.
    assert {r["user_id"] for r in win.labels_df.collect()} == {"u2"}
    offers = {r["offer_id"] for r in win.candidates_df.collect()}
    assert "trial_individual_1m" not in offers
    assert "premium_family" in offers
    unruled = evaluate.window(state_df, outcomes_df, se_catalog_df)
    assert {r["user_id"] for r in unruled.labels_df.collect()} == {"u1", "u2"}


def test_the_pooled_row_weighs_each_market_by_its_users(spark, win):
    per_user_df = spark.createDataFrame(
        [
            ("SE", "u1", 1.0, 30.0),
            ("US", "v1", 0.0, 0.0),
            ("US", "v2", 0.0, 0.0),
            ("US", "v3", 1.0, 10.0),
        ],
        "market string, user_id string, ndcg_at_1 double, revenue_at_1 double",
    )
    lists_df = spark.createDataFrame(
        [("SE", "u1", "premium_family", 1)],
        "market string, user_id string, item_id string, rank int",
    )
    table = evaluate.summary(per_user_df, lists_df, win, [1])
    # 2 of 4 users, not the mean of the markets' means (1 and 1/3).
    assert table.loc["all", "ndcg_at_1"] == pytest.approx(0.5)
    assert table.loc["all", "users"] == 4
    assert table.loc["US", "ndcg_at_1"] == pytest.approx(1 / 3)
    assert math.isnan(table.loc["all", "revenue_at_1"])  # currencies do not pool


def test_summary_pools_users_and_measures_coverage(spark, win, se_catalog_df):
    interactions_df = spark.createDataFrame(
        [
            ("SE", 0, 0, "x", "trial_individual_1m", True, 5.0),
            ("SE", 1, 1, "y", "premium_family", True, 3.0),
        ],
        "market string, user_idx long, item_idx long, user_id string, item_id string, "
        "is_offer boolean, confidence double",
    )
    model = FAMILIES["popularity"]({}, seed=1).fit(interactions_df)
    per_user_df, lists_df = evaluate.per_user(model, win, [1, 3])
    table = evaluate.summary(per_user_df, lists_df, win, [1, 3])
    # u1's best eligible offer is the trial (a hit); u2 cannot take it, so family (a hit).
    assert table.loc["all", "hit_rate_at_1"] == 1.0
    assert table.loc["SE", "users"] == 2
    offers = se_catalog_df.count()
    assert table.loc["SE", "coverage_at_1"] == pytest.approx(2 / offers)
    assert table.loc["all", "ndcg_at_1"] == 1.0
    assert table.loc["SE", "revenue_at_1"] > 0


def test_an_offer_without_a_price_stays_a_label_and_earns_no_revenue(spark):
    # Own data without prices, nor the free plan: users without a plan are on it anyway.
    markets = MarketCatalog.model_validate(
        {
            "offer_types": {"travel": {"kind": "addon"}, "home": {"kind": "addon"}},
            "markets": {"NL": {"currency": "EUR", "locale": "nl_NL", "offers": ["travel", "home"]}},
        }
    )
    state_df = spark.createDataFrame(
        [("NL", "u1", "free", [], False, False), ("NL", "u2", "free", ["home"], False, False)],
        STATE,
    )
    outcomes_df = spark.createDataFrame(
        [("NL", "u1", "travel"), ("NL", "u2", "home")],  # u2 already holds home: no label
        "market string, user_id string, item_id string",
    )
    win = evaluate.window(state_df, outcomes_df, catalog_df(spark, markets))
    expected = spark.createDataFrame(
        [("NL", "u1", "travel", None)],
        "market string, user_id string, item_id string, price double",
    )
    assert_df_equality(win.labels_df, expected, ignore_nullable=True)
    lists_df = spark.createDataFrame(
        [("NL", "u1", "travel", 1)], "market string, user_id string, item_id string, rank int"
    )
    per_user = per_user_metrics_at(lists_df, win.labels_df, [1], value_col="price").first()
    assert (per_user["hit_rate_at_1"], per_user["revenue_at_1"]) == (1.0, 0.0)


def test_the_served_mix_is_the_snapshots_users_not_the_windows(spark, se_catalog_df):
    """Logged users and their candidates come from the window's start; the population the
    served value re-weights to is every user at the snapshot, whom the lists will serve."""
    state_df = spark.createDataFrame(
        [("SE", "u1", "free", [], False, False), ("SE", "u2", "free", [], False, False)],
        STATE,
    )
    served_df = spark.createDataFrame(
        [
            ("SE", "u1", "premium_individual", [], False, True),  # converted in the window
            ("SE", "u2", "free", [], False, False),
            ("SE", "u3", "free", [], False, False),  # no event before the window's start
        ],
        STATE,
    )
    impressions_df = spark.createDataFrame(
        [("SE", "u1", "trial_individual_1m", 0.5, 1.0)],
        "market string, user_id string, offer_id string, propensity double, label double",
    )
    interactions_df = spark.createDataFrame(
        [("SE", 0, 0, "x", "trial_individual_1m", True, 5.0)],
        "market string, user_idx long, item_idx long, user_id string, item_id string, "
        "is_offer boolean, confidence double",
    )
    model = FAMILIES["popularity"]({}, seed=1).fit(interactions_df)
    logged = evaluate.logged(state_df, impressions_df, se_catalog_df, model, served_df)
    population = {
        (r["market"], r["current_plan"]): r["users"] for r in logged.population_df.collect()
    }
    assert population == {("SE", "free"): 2, ("SE", "premium_individual"): 1}
    assert {r["user_id"] for r in logged.candidates_df.collect()} == {"u1"}
    assert {r["current_plan"] for r in logged.candidates_df.collect()} == {"free"}
