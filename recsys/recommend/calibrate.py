"""From scores to probabilities of conversion, per scorer and market (Platt scaling).

A model's score ranks offers but is not a probability, and scores of different models (the
served model, the popularity fallback, the control baseline) are not comparable. Each is
mapped to ``p_convert = sigmoid(a + b * score)`` with its own ``a`` and ``b`` per market,
fitted on a past window: candidates are what each user was eligible for at the window's
start, the label whether they converted to it in the window. ``b`` is bounded below by 0, so
calibration never reverses a model's order; where the score carries no signal, ``b`` is 0 and
every offer of the market gets its base rate.

Every (scorer, market) pair is fitted at once by one Spark MLlib logistic regression on pair
indicators and pair indicator x score: the pairs' likelihoods are independent sums, so one
distributed fit finds each pair's own curve, with no loop over scorers or markets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import Interaction, OneHotEncoder, VectorAssembler
from pyspark.ml.linalg import Matrices
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recsys.columns import literal_map

# What fit reads: one row per (scorer, user, offer) of the window.
FIT_COLUMNS = ("scorer", "market", "score", "label")
COEFFICIENT_COLUMNS = ("scorer", "market", "intercept", "slope", "rows", "rate")


def fit(labelled_df: DataFrame) -> pd.DataFrame:
    """Coefficients per (scorer, market): :data:`COEFFICIENT_COLUMNS`, plus ``predicted``
    (mean fitted p_convert, to set beside the observed ``rate``).

    ``labelled_df``: :data:`FIT_COLUMNS`; ``score`` not null, ``label`` 0 or 1.
    """
    labelled_df = labelled_df.select(*FIT_COLUMNS).persist()
    stats = (
        labelled_df.groupBy("scorer", "market")
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.avg("label").alias("rate"),
            F.avg("score").alias("_mean"),
            F.var_pop("score").alias("_var"),
        )
        .toPandas()
        .sort_values(["scorer", "market"])
        .reset_index(drop=True)
    )
    coefficients = _fit_pairs(labelled_df, stats)
    predicted = (
        labelled_df.transform(with_p_convert, coefficients)
        .groupBy("scorer", "market")
        .agg(F.avg("p_convert").alias("predicted"))
        .toPandas()
    )
    labelled_df.unpersist()
    return (
        coefficients.merge(stats.drop(columns=["_mean", "_var"]), on=["scorer", "market"])
        .merge(predicted, on=["scorer", "market"])
        .sort_values(["scorer", "market"])
        .reset_index(drop=True)
    )


def _scorer_moments(stats: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation of each scorer's scores over its markets, from the
    per-market counts, means and variances (the law of total variance)."""
    weights = stats["rows"] / stats.groupby("scorer")["rows"].transform("sum")
    mean = (weights * stats["_mean"]).groupby(stats["scorer"]).sum()
    spread = weights * (stats["_var"] + (stats["_mean"] - stats["scorer"].map(mean)) ** 2)
    std = np.sqrt(spread.groupby(stats["scorer"]).sum())
    return pd.DataFrame({"mean": mean, "std": std.where(std > 0, 1.0)})


def _fit_pairs(labelled_df: DataFrame, stats: pd.DataFrame) -> pd.DataFrame:
    # Scores are standardised per scorer here rather than by MLlib, whose standardisation
    # turns the bounds of a constant feature (one pair's indicator) into NaN.
    moments = _scorer_moments(stats)
    pairs = [f"{r.scorer}|{r.market}" for r in stats.itertuples()]
    pair = F.concat_ws("|", "scorer", "market")
    mean = literal_map(moments["mean"].astype(float).to_dict())[F.col("scorer")]
    std = literal_map(moments["std"].astype(float).to_dict())[F.col("scorer")]
    data_df = labelled_df.select(
        literal_map({p: float(i) for i, p in enumerate(pairs)})[pair].alias("_pair"),
        ((F.col("score").cast("double") - mean) / std).alias("score"),
        F.col("label").cast("double").alias("label"),
    )
    n = len(pairs)
    # Features: n pair indicators (each pair's intercept), then n indicator x score (the
    # slopes, bounded below by 0). With one pair, its indicator would be a constant feature,
    # which MLlib zeroes when fitting without an intercept; the model's intercept serves.
    with_intercept = n == 1
    indicators = [] if with_intercept else ["_onehot"]
    lower = [float("-inf")] * len(indicators) * n + [0.0] * n
    features = Pipeline(
        stages=[
            OneHotEncoder(inputCols=["_pair"], outputCols=["_onehot"], dropLast=False),
            Interaction(inputCols=["_onehot", "score"], outputCol="_slopes"),
            VectorAssembler(inputCols=[*indicators, "_slopes"], outputCol="features"),
        ]
    )
    regression = LogisticRegression(
        regParam=1e-6,  # keeps a pair without conversions finite
        maxIter=200,
        fitIntercept=with_intercept,
        standardization=False,
        lowerBoundsOnCoefficients=Matrices.dense(1, len(lower), lower),
    )
    fitted = Pipeline(stages=[features, regression]).fit(data_df).stages[-1]
    coefficients = fitted.coefficients.toArray()
    scorer_mean = stats["scorer"].map(moments["mean"]).to_numpy()
    scorer_std = stats["scorer"].map(moments["std"]).to_numpy()
    intercepts = np.full(n, fitted.intercept) if with_intercept else coefficients[:n]
    slopes = coefficients[-n:] / scorer_std  # back to raw scores
    return pd.DataFrame(
        {
            "scorer": stats["scorer"],
            "market": stats["market"],
            "intercept": intercepts - slopes * scorer_mean,
            "slope": slopes,
        }
    )


def p_convert(coefficients: pd.DataFrame) -> Column:
    """sigmoid(a + b * score) with each row's (scorer, market) coefficients; null where the
    pair was not calibrated."""
    key = F.concat_ws("|", "scorer", "market")
    keys = [f"{r.scorer}|{r.market}" for r in coefficients.itertuples()]
    intercept = literal_map(dict(zip(keys, coefficients["intercept"].astype(float), strict=True)))
    slope = literal_map(dict(zip(keys, coefficients["slope"].astype(float), strict=True)))
    logit = intercept[key] + slope[key] * F.col("score")
    return F.lit(1.0) / (F.lit(1.0) + F.exp(-logit))


def with_p_convert(scored_df: DataFrame, coefficients: pd.DataFrame) -> DataFrame:
    """``scored_df`` (scorer, market, score, ...) with ``p_convert`` added."""
    return scored_df.withColumn("p_convert", p_convert(coefficients))
