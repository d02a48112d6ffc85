"""Top-k by objective with deterministic ties, and the propensity of an exploring policy."""

from __future__ import annotations

import typing

from chispa import assert_df_equality

from recsys.config import RecommendConfig
from recsys.recommend.rank import CANDIDATE_COLUMNS, OBJECTIVES, ranked_lists

SCHEMA = (
    "market string, user_id string, offer_id string, arm string, scorer string, score double, "
    "p_convert double, expected_value double, epsilon double, is_exploring boolean"
)
OUT = SCHEMA + ", rank int, propensity double"


def _candidates(spark, epsilon=0.0, exploring=False):
    rows = [
        # treatment: by expected value; a tie between b and c falls to the score, then offer_id
        ("SE", "t", "a", "treatment", "model", 3.0, 0.30, 10.0),
        ("SE", "t", "b", "treatment", "model", 2.0, 0.20, 40.0),
        ("SE", "t", "c", "treatment", "model", 1.0, 0.10, 40.0),
        ("SE", "t", "d", "treatment", "popularity", None, 0.05, 5.0),
        # control: by its own score, whatever the value; ties by offer_id
        ("SE", "c", "a", "control", "popularity", 1.0, 0.1, 1.0),
        ("SE", "c", "b", "control", "popularity", 1.0, 0.1, 99.0),
        ("SE", "c", "c", "control", "popularity", 0.5, 0.1, 50.0),
    ]
    return spark.createDataFrame([(*r, epsilon, exploring) for r in rows], SCHEMA)


def test_greedy_lists_follow_the_objective_then_score_then_offer_id(spark):
    lists_df = ranked_lists(_candidates(spark), 3, "expected_value", "exp")
    expected = [
        ("SE", "c", "a", "control", "popularity", 1.0, 0.1, 1.0, 0.0, False, 1, 1.0),
        ("SE", "c", "b", "control", "popularity", 1.0, 0.1, 99.0, 0.0, False, 2, 1.0),
        ("SE", "c", "c", "control", "popularity", 0.5, 0.1, 50.0, 0.0, False, 3, 1.0),
        ("SE", "t", "b", "treatment", "model", 2.0, 0.20, 40.0, 0.0, False, 1, 1.0),
        ("SE", "t", "c", "treatment", "model", 1.0, 0.10, 40.0, 0.0, False, 2, 1.0),
        ("SE", "t", "a", "treatment", "model", 3.0, 0.30, 10.0, 0.0, False, 3, 1.0),
    ]
    assert_df_equality(
        lists_df.orderBy("user_id", "rank"),
        spark.createDataFrame(expected, OUT),
        ignore_nullable=True,
    )
    by_p = ranked_lists(_candidates(spark), 1, "propensity", "exp").where("user_id = 't'")
    assert [r["offer_id"] for r in by_p.collect()] == ["a"]


def test_exploring_users_see_a_shuffled_list_with_its_propensity(spark):
    epsilon = 0.2
    greedy = {
        (r["user_id"], r["rank"]): r["offer_id"]
        for r in ranked_lists(_candidates(spark, epsilon), 3, "expected_value", "exp").collect()
    }
    explored = ranked_lists(_candidates(spark, epsilon, True), 3, "expected_value", "exp")
    again = ranked_lists(_candidates(spark, epsilon, True), 3, "expected_value", "exp")
    assert_df_equality(explored.orderBy("user_id", "rank"), again.orderBy("user_id", "rank"))
    offers = {"t": 4, "c": 3}
    for row in explored.collect():
        is_greedy = greedy[(row["user_id"], row["rank"])] == row["offer_id"]
        expected = (1 - epsilon) * is_greedy + epsilon / offers[row["user_id"]]
        assert abs(row["propensity"] - expected) < 1e-12, row
    shuffled = [r["offer_id"] for r in explored.where("user_id = 't'").orderBy("rank").collect()]
    assert len(set(shuffled)) == 3 and set(shuffled) <= {"a", "b", "c", "d"}
    assert tuple(CANDIDATE_COLUMNS) == tuple(c.split()[0] for c in SCHEMA.split(", "))


def test_every_objective_the_config_accepts_ranks(spark):
    # The config's words, not column names: `propensity` once reached Spark as a column.
    allowed = typing.get_args(RecommendConfig.model_fields["objective"].annotation)
    assert set(allowed) == set(OBJECTIVES)
    for objective in allowed:
        assert ranked_lists(_candidates(spark), 1, objective, "exp").count() == 2
