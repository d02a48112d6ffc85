"""`simulate` end to end on the small served world: the logs cover every served user, the
draws agree with the simulator's own expected values, the oracle is never beaten, a rerun draws
the same outcomes, and lists the world cannot answer for are refused."""

from __future__ import annotations

import math

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.errors import RecsysError
from recsys.world import job as world_job

# It reads the served world after recommend, simulate and analyze (tests/conftest.py).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def simulated(spark, experimented):
    """(config, the experiment's exposures and outcomes) of the served world."""
    _, config = experimented
    mine = F.col("experiment_id") == config.recommend.experiment.id
    tables = {
        name: spark.table(config.table(name)).where(mine)
        for name in (S.EXPERIMENT_EXPOSURES, S.EXPERIMENT_OUTCOMES)
    }
    return config, tables


@pytest.fixture
def elsewhere(spark, simulated):
    """A config on another database, where each test creates the views it needs."""
    config, _ = simulated
    other = config.model_copy(
        update={"catalog": config.catalog.model_copy(update={"database": "simulate_bad"})}
    )
    spark.sql("CREATE DATABASE IF NOT EXISTS simulate_bad")
    yield config, other
    spark.sql("DROP DATABASE simulate_bad CASCADE")


def test_exposures_are_the_served_lists_and_outcomes_one_row_per_user(spark, simulated):
    config, tables = simulated
    served_df = spark.table(config.table(S.PLAN_RECOMMENDATIONS_CURRENT)).select(
        "user_id", "market", "arm", "rank", "offer_id", "propensity", "reason_code"
    )
    exposures_df = tables[S.EXPERIMENT_EXPOSURES].select(*served_df.columns)
    order = ["user_id", "rank"]
    assert_df_equality(exposures_df.orderBy(order), served_df.orderBy(order), ignore_nullable=True)
    outcomes_df = tables[S.EXPERIMENT_OUTCOMES]
    users = served_df.select("user_id").distinct().count()
    assert outcomes_df.count() == users
    assert outcomes_df.select("user_id").distinct().count() == users
    # Nobody is looked at without a list, and holdout users never convert on a surface.
    assert (
        tables[S.EXPERIMENT_EXPOSURES].where((F.col("rank") == 0) & F.col("is_examined")).count()
        == 0
    )
    holdout_df = outcomes_df.join(
        served_df.where(F.col("arm") == "holdout").select("user_id"), on="user_id", how="inner"
    )
    assert holdout_df.where(F.col("converted_rank").isNotNull()).count() == 0


def test_draws_agree_with_the_simulators_expected_values_and_the_oracle_is_never_beaten(
    simulated,
):
    _, tables = simulated
    outcomes_df = tables[S.EXPERIMENT_OUTCOMES]
    row = outcomes_df.agg(
        F.count(F.lit(1)).alias("n"),
        F.avg("converted").alias("converted"),
        F.avg("expected_conversion").alias("expected"),
        F.avg("revenue").alias("revenue"),
        F.avg("expected_revenue").alias("expected_revenue"),
        F.stddev("revenue").alias("revenue_sd"),
        F.sum(
            (F.col("oracle_conversion") < F.col("expected_conversion") - 1e-12).cast("int")
        ).alias("oracle_beaten"),
    ).first()
    se = math.sqrt(row["expected"] * (1 - row["expected"]) / row["n"])
    assert abs(row["converted"] - row["expected"]) < 4 * se
    assert abs(row["revenue"] - row["expected_revenue"]) < 4 * row["revenue_sd"] / math.sqrt(
        row["n"]
    )
    assert row["oracle_beaten"] == 0
    # Guardrail events only where they can happen.
    assert outcomes_df.where((F.col("trial_abuse") == 1) & (F.col("converted") == 0)).count() == 0


def test_a_rerun_draws_the_same_outcomes(spark, simulated):
    config, tables = simulated
    before_df = tables[S.EXPERIMENT_OUTCOMES].localCheckpoint()
    world_job.simulate_run(spark, config)
    after_df = spark.table(config.table(S.EXPERIMENT_OUTCOMES)).where(
        F.col("experiment_id") == config.recommend.experiment.id
    )
    assert_df_equality(after_df.orderBy("user_id"), before_df.orderBy("user_id"))


def test_simulate_refuses_lists_of_another_experiment(spark, simulated):
    config, _ = simulated
    renamed = config.model_copy(
        update={
            "recommend": config.recommend.model_copy(
                update={
                    "experiment": config.recommend.experiment.model_copy(update={"id": "other"})
                }
            )
        }
    )
    with pytest.raises(RecsysError, match=r"belong to experiment 'plan-offers-2026-11'.*'other'"):
        world_job.simulate_run(spark, renamed)


def test_simulate_refuses_served_users_the_world_does_not_know(spark, elsewhere):
    config, other = elsewhere
    lost = spark.table(config.table(S.PLAN_RECOMMENDATIONS_CURRENT)).first()["user_id"]
    spark.sql(
        f"CREATE VIEW {other.table(S.PLAN_RECOMMENDATIONS_CURRENT)} AS "
        f"SELECT * FROM {config.table(S.PLAN_RECOMMENDATIONS_CURRENT)}"
    )
    spark.sql(
        f"CREATE VIEW {other.table(S.WORLD_TRUTH)} AS SELECT * FROM "
        f"{config.table(S.WORLD_TRUTH)} WHERE user_id <> '{lost}'"
    )
    with pytest.raises(RecsysError, match=rf"1 served users \(e.g. {lost}\) are not in"):
        world_job.simulate_run(spark, other)
