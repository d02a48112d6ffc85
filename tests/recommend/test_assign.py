"""Arms by salted hash: stable, at the configured shares, independent across experiments."""

from __future__ import annotations

import math

from pyspark.sql import functions as F

from recsys.config import ExperimentConfig
from recsys.recommend.assign import arm_of, epsilon_of, is_exploring

USERS = 200_000


def _users(spark):
    return spark.range(USERS).select(F.format_string("u%010d", "id").alias("user_id"))


def test_arms_are_stable_and_at_the_configured_shares(spark):
    experiment = ExperimentConfig(
        id="exp-a", shares={"treatment": 0.5, "control": 0.3, "holdout": 0.2}
    )
    first = _users(spark).withColumn("arm", arm_of(experiment))
    again = _users(spark).withColumn("arm", arm_of(experiment))
    assert first.join(again, on="user_id").where(first.arm != again.arm).count() == 0
    counts = {r["arm"]: r["count"] for r in first.groupBy("arm").count().collect()}
    for arm, share in experiment.shares.items():
        sigma = math.sqrt(share * (1 - share) / USERS)
        assert abs(counts[arm] / USERS - share) < 4 * sigma, (arm, counts)


def test_another_experiment_id_assigns_independently(spark):
    a = ExperimentConfig(id="exp-a")
    b = ExperimentConfig(id="exp-b")
    both = _users(spark).select(arm_of(a).alias("a"), arm_of(b).alias("b"))
    cells = {(r["a"], r["b"]): r["count"] for r in both.groupBy("a", "b").count().collect()}
    for (arm_a, arm_b), n in cells.items():
        share = a.share(arm_a) * b.share(arm_b)
        sigma = math.sqrt(share * (1 - share) / USERS)
        assert abs(n / USERS - share) < 4 * sigma, (arm_a, arm_b, n)


def test_the_exploration_slice_follows_each_market_epsilon(spark):
    experiment = ExperimentConfig(id="exp-a", epsilon=0.1, markets={"SE": 0.0})
    users = _users(spark).withColumn("market", F.when(F.rand(1) < 0.5, "SE").otherwise("US"))
    shares = {
        r["market"]: r["share"]
        for r in users.withColumn("epsilon", epsilon_of(experiment))
        .groupBy("market")
        .agg(F.avg(is_exploring(experiment, F.col("epsilon")).cast("double")).alias("share"))
        .collect()
    }
    assert shares["SE"] == 0.0
    assert abs(shares["US"] - 0.1) < 4 * math.sqrt(0.09 / (USERS / 2))
