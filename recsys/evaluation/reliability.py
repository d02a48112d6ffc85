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
    figures = [
        F.count(F.lit(1)).alias("impressions"),
        F.avg("p").alias("predicted"),
        F.avg("y").alias("observed"),
    ]
    by_decile = scored_df.groupBy(decile.alias("decile")).agg(*figures).orderBy("decile").toPandas()
    by_market = scored_df.groupBy("market").agg(*figures).orderBy("market").toPandas()
    p = F.least(F.greatest(F.col("p"), F.lit(1e-12)), F.lit(1 - 1e-12))
    totals = scored_df.agg(
        F.avg(-(F.col("y") * F.log(p) + (1 - F.col("y")) * F.log(1 - p))).alias("log_loss"),
        F.avg(F.pow(F.col("p") - F.col("y"), 2)).alias("brier"),
        F.count(F.lit(1)).alias("impressions"),
    ).first()
    scored_df.unpersist()
    return Reliability(
        by_decile,
        by_market,
        float(totals["log_loss"] or 0.0),
        float(totals["brier"] or 0.0),
        int(totals["impressions"]),
    )
