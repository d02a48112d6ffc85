"""Platt scaling per scorer and market: it recovers known curves and never reverses order."""

from __future__ import annotations

import math

from pyspark.sql import functions as F

from recsys.recommend import calibrate

ROWS = 60_000


def _labelled(spark, scorer, market, intercept, slope, seed):
    """Scores uniform on [-3, 3]; labels drawn with p = sigmoid(intercept + slope x score)."""
    score = F.rand(seed) * 6 - 3
    return (
        spark.range(ROWS)
        .select(score.alias("score"))
        .withColumn("_p", 1 / (1 + F.exp(-(F.lit(intercept) + F.lit(slope) * F.col("score")))))
        .select(
            F.lit(scorer).alias("scorer"),
            F.lit(market).alias("market"),
            "score",
            (F.rand(seed + 1) < F.col("_p")).cast("int").alias("label"),
        )
    )


def test_known_curves_are_recovered_and_a_reversed_score_gets_the_base_rate(spark):
    labelled_df = (
        _labelled(spark, "model", "SE", -3.0, 0.8, 1)
        .unionByName(_labelled(spark, "model", "US", -2.0, 0.3, 3))
        .unionByName(_labelled(spark, "popularity", "SE", -2.5, -0.5, 5))
    )
    table = calibrate.fit(labelled_df).set_index(["scorer", "market"])
    for key, (intercept, slope) in {
        ("model", "SE"): (-3.0, 0.8),
        ("model", "US"): (-2.0, 0.3),
    }.items():
        row = table.loc[key]
        assert abs(row["intercept"] - intercept) < 0.15, (key, row)
        assert abs(row["slope"] - slope) < 0.08, (key, row)
        assert abs(row["predicted"] - row["rate"]) < 0.002
    reversed_ = table.loc[("popularity", "SE")]
    assert reversed_["slope"] == 0.0
    base = reversed_["rate"]
    assert abs(reversed_["intercept"] - math.log(base / (1 - base))) < 0.02

    scored = calibrate.with_p_convert(labelled_df.limit(5), table.reset_index()).collect()
    for row in scored:
        coefficients = table.loc[(row["scorer"], row["market"])]
        logit = coefficients["intercept"] + coefficients["slope"] * row["score"]
        assert abs(row["p_convert"] - 1 / (1 + math.exp(-logit))) < 1e-9


def test_a_single_market_is_fitted_with_the_model_intercept(spark):
    # One (scorer, market) pair: no market offsets, the model's intercept is the market's.
    table = calibrate.fit(_labelled(spark, "model", "SE", -2.5, 0.6, 7))
    row = table.set_index(["scorer", "market"]).loc[("model", "SE")]
    assert abs(row["intercept"] - -2.5) < 0.15, row
    assert abs(row["slope"] - 0.6) < 0.08, row
    assert abs(row["predicted"] - row["rate"]) < 0.002
