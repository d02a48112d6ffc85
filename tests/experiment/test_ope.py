"""Off-policy estimates against a policy value known in closed form: exploration logs of
random lists, with the target policy's ranks and a miscalibrated p_convert, from a cascade
whose true conversion rate under the target list is computed exactly."""

from __future__ import annotations

import itertools
import math

import pytest
from pyspark.sql import functions as F

from recsys.columns import unit
from recsys.experiment import ope

EPSILON = 0.1
P_TRUE = {"A": 0.08, "B": 0.04, "C": 0.02}
TARGET = ("A", "B", "C")  # the policy under evaluation: rank 1, 2, 3
BIAS = (1.0, 0.6, 0.4)
USERS = 200_000


def _truth() -> float:
    alive = 1.0
    for offer, bias in zip(TARGET, BIAS, strict=True):
        alive *= 1 - bias * P_TRUE[offer]
    return 1 - alive


@pytest.fixture(scope="module")
def logs(spark):
    orders = list(itertools.permutations(TARGET))
    users_df = spark.range(USERS).select(
        F.concat(F.lit("u"), F.col("id").cast("string")).alias("user_id"),
        F.lit("M").alias("market"),
    )
    order = F.floor(unit("order", "user_id") * len(orders)).cast("int")
    shown_df = users_df.select(
        "*",
        F.posexplode(F.element_at(F.array(*[F.array(*map(F.lit, o)) for o in orders]), order + 1)),
    ).select(
        "user_id",
        "market",
        (F.col("pos") + 1).alias("rank"),
        F.col("col").alias("offer_id"),
    )
    target_rank = F.create_map(
        *[x for i, o in enumerate(TARGET) for x in (F.lit(o), F.lit(i + 1))]
    )[F.col("offer_id")]
    p = F.create_map(*[x for o, v in P_TRUE.items() for x in (F.lit(o), F.lit(v))])
    bias = F.element_at(F.array(*map(F.lit, BIAS)), F.col("rank"))
    exposures_df = shown_df.select(
        "user_id",
        "market",
        F.lit("treatment").alias("arm"),
        "rank",
        "offer_id",
        ((1 - EPSILON) * (target_rank == F.col("rank")).cast("double") + EPSILON / 3).alias(
            "propensity"
        ),
        F.lit("exploration").alias("reason_code"),
    )
    # Each slot converts if looked at and taken; the first such slot is the conversion.
    hit = (unit("look", "user_id", F.col("rank").cast("string")) < bias) & (
        unit("take", "user_id", F.col("rank").cast("string")) < p[F.col("offer_id")]
    )
    outcomes_df = (
        shown_df.where(hit)
        .groupBy("user_id")
        .agg(F.min("rank").alias("converted_rank"))
        .join(users_df, on="user_id", how="right")
        .select(
            "user_id",
            F.col("converted_rank").isNotNull().cast("int").alias("converted"),
            "converted_rank",
        )
    )
    candidates_df = shown_df.select(
        "user_id",
        "market",
        "offer_id",
        target_rank.alias("target_rank"),
        (1.5 * p[F.col("offer_id")]).alias("p_convert"),  # right order, wrong scale
        F.lit(EPSILON).alias("epsilon"),
    )
    estimates = (
        ope.user_estimates(ope.slice_rows(exposures_df, candidates_df, outcomes_df), outcomes_df)
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.avg("ips").alias("ips"),
            F.stddev("ips").alias("ips_sd"),
            F.avg("dr").alias("dr"),
            F.stddev("dr").alias("dr_sd"),
        )
        .first()
    )
    return estimates


def test_ips_and_dr_recover_the_target_policys_conversion_rate(logs):
    truth = _truth()
    assert logs["n"] == USERS
    for estimator in ("ips", "dr"):
        se = logs[f"{estimator}_sd"] / math.sqrt(logs["n"])
        # The position-based estimator ignores that a user converts once: a bias of about
        # 1% of the value here, well inside the tolerance.
        assert abs(logs[estimator] - truth) < 4 * se, (estimator, logs[estimator], truth, se)


def test_the_direct_model_makes_dr_tighter_than_ips(logs):
    assert logs["dr_sd"] < logs["ips_sd"]
