"""How far a model's probabilities can be taken at their word: predicted against observed.

For a model whose score is a probability of acceptance (the conversion family), every logged
impression of a window is a test: the model's probability for the shown offer, and whether
the user took it. Grouped by decile of the prediction and by market, the mean prediction
should match the observed rate; log loss and the Brier score sum it up in one number each.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

DECILES = 10


@dataclass(frozen=True)
class Reliability:
    """``by_decile`` and ``by_market``: impressions, mean ``predicted``, ``observed`` rate;
    ``log_loss`` and ``brier`` over every impression."""

    by_decile: pd.DataFrame
    by_market: pd.DataFrame
    log_loss: float
    brier: float
    impressions: int


def reliability(scored_df: DataFrame) -> Reliability:
    """Reliability of predictions ``p`` against outcomes ``y`` (0/1), one row per impression.

    Parameters
    ----------
    scored_df : DataFrame
        ``market``, ``p`` (predicted probability, in (0, 1)) and ``y``.

    Returns
    -------
    Reliability
        Deciles cut at the predictions' approximate quantiles (1 = lowest predictions).
    """
    scored_df = scored_df.select("market", "p", F.col("y").cast("double").alias("y")).persist()
    cuts = scored_df.stat.approxQuantile("p", [i / DECILES for i in range(1, DECILES)], 1e-3)
    decile = F.lit(1)
    for cut in cuts:
        decile = decile + (F.col("p") > F.lit(cut)).cast("int")
    p = F.least(F.greatest(F.col("p"), F.lit(1e-12)), F.lit(1 - 1e-12))
    # One pass: sums per (decile, market) cell, which add up to either grouping and the totals.
    cells = (
        scored_df.groupBy(decile.alias("decile"), "market")
        .agg(
            F.count(F.lit(1)).alias("impressions"),
            F.sum("p").alias("predicted"),
            F.sum("y").alias("observed"),
            F.sum(-(F.col("y") * F.log(p) + (1 - F.col("y")) * F.log(1 - p))).alias("log_loss"),
            F.sum(F.pow(F.col("p") - F.col("y"), 2)).alias("brier"),
        )
        .toPandas()
    )
    scored_df.unpersist()
    impressions = int(cells["impressions"].sum())
    return Reliability(
        _means(cells, "decile"),
        _means(cells, "market"),
        float(cells["log_loss"].sum() / impressions) if impressions else 0.0,
        float(cells["brier"].sum() / impressions) if impressions else 0.0,
        impressions,
    )


def _means(cells: pd.DataFrame, by: str) -> pd.DataFrame:
    """``by``, impressions, mean ``predicted`` and ``observed`` from the cells' sums."""
    sums = cells.groupby(by, sort=True)[["impressions", "predicted", "observed"]].sum()
    return sums.assign(
        predicted=sums["predicted"] / sums["impressions"],
        observed=sums["observed"] / sums["impressions"],
    ).reset_index()
