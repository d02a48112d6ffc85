"""Top-k lists from scores: deterministic, ties broken by offer id."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recsys.vocabulary import KEYS


def top_k(scores_df: DataFrame, k: int | None, *, keys: tuple[str, ...] = KEYS) -> DataFrame:
    """The ``k`` best offers per user, deterministically.

    Parameters
    ----------
    scores_df : DataFrame
        ``keys``, ``offer_id``, ``score`` (null: unknown, ranked after every known score).
    k : int or None
        The list length; None ranks every offer.
    keys : tuple of str, default ("market", "user_id")
        What one list belongs to.

    Returns
    -------
    DataFrame
        ``keys``, ``offer_id``, ``score``, ``rank`` (1 = best). Equal scores are ordered by
        ``offer_id``, so the same input always gives the same lists.
    """
    order = Window.partitionBy(*keys).orderBy(
        F.col("score").desc_nulls_last(), F.col("offer_id").asc()
    )
    ranked_df = scores_df.withColumn("rank", F.row_number().over(order))
    if k is not None:
        ranked_df = ranked_df.where(F.col("rank") <= k)
    return ranked_df.select(*keys, "offer_id", "score", "rank")
