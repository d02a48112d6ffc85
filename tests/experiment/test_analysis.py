"""The analysis path as analyze runs it (Spark aggregation -> sufficient statistics ->
comparisons -> decisions) on logs whose truth is known: hundreds of A/A tests at once (each
"market" is one replicate), an injected sample-ratio imbalance, and a planted lift."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys import schemas as S
from recsys.columns import unit
from recsys.config import AnalyzeConfig, ExperimentConfig
from recsys.errors import RecsysError
from recsys.experiment import analysis, stats
from recsys.recommend.assign import arm_of
from recsys.vocabulary import CONTROL, TREATMENT

SHARES = {"treatment": 0.45, "control": 0.45, "holdout": 0.10}
SETTINGS = AnalyzeConfig()
DAY = dt.date(2026, 11, 1)


def _normal(salt: str) -> Column:
    u1 = unit(f"{salt}/1", "user_id") + 0.5e-6
    u2 = unit(f"{salt}/2", "user_id")
    return F.sqrt(-2 * F.log(u1)) * F.cos(2 * math.pi * u2)


def _logs(spark, *, replicates: int, users: int, conversion: Column, revenue_shift: Column):
    """Per-user rows in analyze's shape: ``replicates`` independent tests of ``users`` each,
    arms by the production hash. Revenue is predicted by its pre-period (CUPED's covariate)."""
    pre = 10 + 3 * _normal("pre")
    return (
        spark.range(replicates * users)
        .select(
            F.format_string("r%03d", (F.col("id") % replicates).cast("int")).alias("market"),
            F.concat(F.lit("u"), F.col("id").cast("string")).alias("user_id"),
        )
        .withColumn("arm", arm_of(ExperimentConfig(id="aa", shares=SHARES)))
        .withColumn("pre_revenue", pre)
        .withColumn("pre_engagement", unit("engagement", "user_id"))
        .withColumn("converted", (unit("convert", "user_id") < conversion).cast("double"))
        .withColumn("revenue", pre + 2 * _normal("revenue") + revenue_shift)
        .withColumn("cancellation", (unit("cancel", "user_id") < 0.02).cast("double"))
        .withColumn("downgrade", (unit("downgrade", "user_id") < 0.01).cast("double"))
        .withColumn("trial_abuse", (unit("abuse", "user_id") < 0.01).cast("double"))
        .withColumn("revenue_ref", F.col("revenue"))
        .withColumn("pre_revenue_ref", F.col("pre_revenue"))
    )


def _results(users_df):
    moments = analysis.arm_moments(analysis.moments_table(users_df))
    markets = {scope for scope, _, _ in moments}
    return analysis.results(moments, SETTINGS, SHARES, dict.fromkeys(markets, "EUR"))


def _headline(frame, metric, adjustment="raw"):
    return frame[
        (frame["market"] != S.POOLED)
        & (frame["metric"] == metric)
        & (frame["comparison"] == "treatment_vs_control")
        & (frame["adjustment"] == adjustment)
    ]


@pytest.fixture(scope="module")
def aa(spark):
    """400 A/A tests of 4,000 users: no arm differs from another in anything."""
    return _results(
        _logs(spark, replicates=400, users=4_000, conversion=F.lit(0.05), revenue_shift=F.lit(0))
    )


def _within(share: float, nominal: float, reps: int) -> bool:
    return abs(share - nominal) <= 3 * math.sqrt(nominal * (1 - nominal) / reps)


def test_aa_intervals_cover_zero_about_95_percent_of_the_time(aa):
    for metric in ("conversion", "revenue"):
        for adjustment in ("raw", "cuped"):
            rows = _headline(aa, metric, adjustment)
            covered = ((rows["lift_low"] <= 0) & (rows["lift_high"] >= 0)).mean()
            assert _within(covered, 0.95, len(rows)), (metric, adjustment, covered)
            rel_covered = ((rows["rel_low"] <= 0) & (rows["rel_high"] >= 0)).mean()
            assert _within(rel_covered, 0.95, len(rows)), (metric, adjustment, rel_covered)


def test_aa_srm_fires_at_its_nominal_rate(aa):
    srm = _headline(aa, "conversion").set_index("market")["srm_p_value"]
    assert _within((srm < 0.05).mean(), 0.05, len(srm))
    # 0.001 x 400 = 0.4 expected; 3 or more would have probability below 0.01.
    assert (srm < SETTINGS.srm_alpha).sum() <= 2
    assert (~_headline(aa, "conversion")["is_valid"]).sum() == (srm < SETTINGS.srm_alpha).sum()


def test_aa_cuped_cuts_revenue_variance_by_the_covariate_share(aa):
    # revenue = pre + 2 z with var(pre) = 9: corr^2 = 9 / 13.
    reduction = _headline(aa, "revenue", "cuped")["variance_reduction"]
    assert reduction.mean() == pytest.approx(9 / 13, abs=0.03)
    # An unrelated covariate (engagement vs conversion) removes about nothing.
    assert _headline(aa, "conversion", "cuped")["variance_reduction"].mean() < 0.01


def test_an_injected_2_percent_sample_ratio_imbalance_is_flagged_and_invalidates(spark):
    logs_df = _logs(
        spark, replicates=1, users=1_000_000, conversion=F.lit(0.05), revenue_shift=F.lit(0)
    )
    # 2% of the control users never make it into the logs (e.g. a crashing client).
    lossy_df = logs_df.where(~((F.col("arm") == CONTROL) & (unit("lost", "user_id") < 0.02)))
    flagged = _headline(_results(lossy_df), "conversion")
    assert flagged["srm_p_value"].iloc[0] < SETTINGS.srm_alpha
    assert not flagged["is_valid"].iloc[0]
    assert flagged["decision"].iloc[0] == "invalid"
    intact = _headline(_results(logs_df), "conversion")
    assert intact["srm_p_value"].iloc[0] > SETTINGS.srm_alpha
    assert intact["is_valid"].iloc[0]


def test_a_planted_lift_is_recovered_within_its_interval_and_ships(spark):
    treated = F.col("arm") == TREATMENT
    logs_df = _logs(
        spark,
        replicates=1,
        users=400_000,
        conversion=F.when(treated, 0.06).otherwise(0.05),
        revenue_shift=F.when(treated, 0.2).otherwise(0.0),
    )
    frame = _results(logs_df)
    conversion = _headline(frame, "conversion").iloc[0]
    assert conversion["lift_low"] <= 0.01 <= conversion["lift_high"]
    assert conversion["lift_low"] > 0
    assert conversion["rel_low"] <= 0.2 <= conversion["rel_high"]
    revenue = _headline(frame, "revenue", "cuped").iloc[0]
    assert revenue["lift_low"] <= 0.2 <= revenue["lift_high"]
    assert revenue["lift_low"] > 0
    raw = _headline(frame, "revenue").iloc[0]
    assert revenue["lift_high"] - revenue["lift_low"] < raw["lift_high"] - raw["lift_low"]
    assert revenue["decision"] == "ship", revenue["decision_reason"]


def _exposure(user_id: str, arm: str, rank: int, offer_id: str | None, reason: str):
    return (user_id, "SE", arm, rank, offer_id, 1.0, reason, False, None, "1", DAY, "x")


def test_real_logs_need_no_simulator_columns_and_missing_outcomes_count_as_zero(spark):
    exposures_df = spark.createDataFrame(
        [
            _exposure("a", "treatment", 1, "premium_family", "signal:household"),
            _exposure("a", "treatment", 2, "premium_duo", "signal:household"),
            _exposure("b", "control", 1, "premium_individual", "popular_in_market"),
            _exposure("c", "holdout", 0, None, "holdout"),
        ],
        S.EXPERIMENT_EXPOSURES_SCHEMA,
    )
    outcomes_df = spark.createDataFrame(
        [("a", "SE", 1, "premium_family", 1, None, 209.0, 0, 0, 0, 129.0, 2.0)],
        T.StructType(S.EXPERIMENT_OUTCOMES_SCHEMA.fields[:12]),
    )
    rows = {r["user_id"]: r for r in analysis.population(exposures_df, outcomes_df).collect()}
    assert rows["a"]["arm"] == "treatment" and rows["a"]["revenue"] == 209.0
    assert rows["a"]["converted"] == 1.0 and rows["a"]["expected_conversion"] is None
    assert rows["c"]["has_outcome"] == 0 and rows["c"]["revenue"] == 0.0
    assert {u: r["arms"] for u, r in rows.items()} == {"a": 1, "b": 1, "c": 1}


def test_logs_without_a_documented_column_are_refused_by_name(spark):
    exposures_df = spark.createDataFrame([("a", "SE")], ["user_id", "market"])
    with pytest.raises(RecsysError, match=r"recsys.experiment_exposures lacks the columns \['arm'"):
        analysis.check_columns(
            exposures_df, S.EXPERIMENT_EXPOSURES_SCHEMA, "recsys.experiment_exposures"
        )


def test_a_market_without_a_control_arm_is_invalid_not_a_crash():
    rng = np.random.default_rng(3)
    moments = {}
    sizes = {"treatment": 450, "control": 450, "holdout": 100}
    for scope, arms in (("SE", ("treatment", "holdout")), ("US", tuple(sizes))):
        for arm in arms:
            for metric in analysis.METRICS:
                draws = rng.binomial(1, 0.05, sizes[arm]) * 1.0
                moments[(scope, arm, metric)] = stats.Moments.of(draws)
    frame = analysis.results(moments, SETTINGS, SHARES, {"SE": "SEK", "US": "USD"})
    decisions = frame.groupby("market")["decision"].first()
    assert decisions["SE"] == "invalid"
    assert decisions["US"] in {"keep_testing", "keep_baseline"}
    assert set(frame.loc[frame["market"] == "SE", "comparison"]) == {"treatment_vs_holdout"}
