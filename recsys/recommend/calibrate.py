"""From scores to probabilities of conversion, per scorer and market (Platt scaling).

A model's score ranks offers but is not a probability, and scores of different models (the
served model, the popularity fallback, the control baseline) are not comparable. Each is
mapped to ``p_convert = sigmoid(a + b * score)`` with its own ``a`` and ``b`` per market,
fitted on a past window: candidates are what each user was eligible for at the window's
start, the label whether they converted to it in the window. ``b`` is bounded below by 0, so
calibration never reverses a model's order; where the score carries no signal, ``b`` is 0 and
every offer of the market gets its base rate.

All markets of a scorer are fitted at once by Spark MLlib's logistic regression on market
indicators and market indicator x score: one distributed fit, no loop over markets.
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
        .agg(F.count(F.lit(1)).alias("rows"), F.avg("label").alias("rate"))
        .toPandas()
    )
    tables = []
    for scorer in sorted(stats["scorer"].unique()):
        markets = sorted(stats.loc[stats["scorer"] == scorer, "market"])
        tables.append(_fit_scorer(labelled_df.where(F.col("scorer") == scorer), scorer, markets))
    coefficients = pd.concat(tables, ignore_index=True).merge(stats, on=["scorer", "market"])
    predicted = (
        labelled_df.transform(with_p_convert, coefficients)
        .groupBy("scorer", "market")
        .agg(F.avg("p_convert").alias("predicted"))
        .toPandas()
    )
    labelled_df.unpersist()
    return (
        coefficients.merge(predicted, on=["scorer", "market"])
        .sort_values(["scorer", "market"])
        .reset_index(drop=True)
    )


def _fit_scorer(labelled_df: DataFrame, scorer: str, markets: list[str]) -> pd.DataFrame:
    # Scores are standardised here rather than by MLlib, whose standardisation turns the
    # bounds of a constant feature (one market's indicator) into NaN.
    moments = labelled_df.agg(F.avg("score"), F.stddev_pop("score")).first()
    mean, std = float(moments[0]), float(moments[1]) or 1.0
    index = literal_map({m: float(i) for i, m in enumerate(markets)})
    data_df = labelled_df.select(
        index[F.col("market")].alias("_market"),
        ((F.col("score").cast("double") - mean) / std).alias("score"),
        F.col("label").cast("double").alias("label"),
    )
    n = len(markets)
    # Features: n - 1 market indicators (offsets of each market's intercept from the last
    # market's, which is the model's intercept), then n indicator x score (the slopes, bounded
    # below by 0). No feature is constant, which MLlib would zero without an intercept.
    lower = [float("-inf")] * (n - 1) + [0.0] * n
    features = Pipeline(
        stages=[
            OneHotEncoder(inputCols=["_market"], outputCols=["_offsets"], dropLast=True),
            OneHotEncoder(inputCols=["_market"], outputCols=["_onehot"], dropLast=False),
            Interaction(inputCols=["_onehot", "score"], outputCol="_slopes"),
            VectorAssembler(inputCols=["_offsets", "_slopes"], outputCol="features"),
        ]
    )
    regression = LogisticRegression(
        regParam=1e-6,  # keeps a market without conversions finite
        maxIter=200,
        standardization=False,
        lowerBoundsOnCoefficients=Matrices.dense(1, 2 * n - 1, lower),
    )
    fitted = Pipeline(stages=[features, regression]).fit(data_df).stages[-1]
    coefficients = fitted.coefficients.toArray()
    offsets = np.append(coefficients[: n - 1], 0.0)
    slopes = coefficients[n - 1 :] / std  # back to raw scores
    intercepts = fitted.intercept + offsets - slopes * mean
    return pd.DataFrame(
        {"scorer": scorer, "market": markets, "intercept": intercepts, "slope": slopes}
    )


def identity(scorer: str, markets: list[str]) -> pd.DataFrame:
    """Coefficients that serve a scorer's own probability: its score is already the logit of
    one (intercept 0, slope 1); ``rows``, ``rate`` and ``predicted`` are not measured (NaN)."""
    nan = float("nan")
    return pd.DataFrame(
        {
            "scorer": scorer,
            "market": markets,
            "intercept": 0.0,
            "slope": 1.0,
            "rows": nan,
            "rate": nan,
            "predicted": nan,
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
