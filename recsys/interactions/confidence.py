"""Confidence weights: event-type weight x time decay, with repeated events damped.

For a user u, item i and event type t with events at times s_1..s_n before a reference time r:

    decayed(u, i, t) = sum_k 0.5 ** ((r - s_k) / half_life)
    confidence(u, i) = sum_t weight(t) * damp(decayed(u, i, t))

where damp is log1p (``log``) or min(., cap) (``cap``): one user's 10,000 page views count
like a handful, never like 10,000.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recsys.columns import literal_map

DAY_SECONDS = 86_400.0


def decay(ts: Column, reference: Column, half_life_days: float | None) -> Column:
    """``0.5 ** (age in days / half_life_days)``; 1 when ``half_life_days`` is None."""
    if half_life_days is None:
        return F.lit(1.0)
    age_days = (reference.cast("double") - ts.cast("double")) / DAY_SECONDS
    return F.pow(F.lit(0.5), age_days / F.lit(half_life_days))


def damp(decayed: Column, aggregation: Literal["log", "cap"], cap: float) -> Column:
    return F.log1p(decayed) if aggregation == "log" else F.least(decayed, F.lit(cap))


def with_confidence(
    events_df: DataFrame,
    *,
    references: Mapping[str, Column],
    weights: dict[str, float],
    half_life_days: float | None,
    aggregation: Literal["log", "cap"],
    cap: float,
) -> DataFrame:
    """Aggregate events into (market, user_id, item_id, split, confidence).

    ``references``: split name -> reference time; each split's rows are the events before
    its time, decayed to it. All splits come from one pass over the events (one shuffle,
    not one per split). ``events_df``: valid events (user_id, market, event_type, item_id,
    event_ts). Event types without a positive weight are left out, and so is a (user, item)
    with no event before a split's time.
    """
    counted = {t: w for t, w in weights.items() if w > 0}
    weight_of = literal_map(counted)
    ts = F.col("event_ts")
    decayed = [
        F.sum(F.when(ts < moment, decay(ts, moment, half_life_days))).alias(name)
        for name, moment in references.items()
    ]
    confidences = [
        F.sum(weight_of[F.col("event_type")] * damp(F.col(name), aggregation, cap)).alias(name)
        for name in references
    ]
    by_split = F.explode(
        F.array(
            *(
                F.struct(F.lit(name).alias("split"), F.col(name).alias("confidence"))
                for name in references
            )
        )
    ).alias("row")
    return (
        events_df.where(F.col("event_type").isin(*counted))
        .groupBy("market", "user_id", "item_id", "event_type")
        .agg(*decayed)
        .groupBy("market", "user_id", "item_id")
        .agg(*confidences)
        .select("market", "user_id", "item_id", by_split)
        .where(F.col("row.confidence").isNotNull())
        .select("market", "user_id", "item_id", "row.split", "row.confidence")
    )
