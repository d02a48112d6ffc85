"""Off-policy estimates of the treatment policy's conversion rate from the exploration slice
alone: what could be known before any user saw the policy's own lists.

The slice is the treatment users shown a random order of their eligible offers. recommend
logged, for each shown (offer, rank), the propensity of the epsilon-greedy policy,
``(1 - eps) x [greedy puts it here] + eps / n``; within the slice, the chance of that offer at
that rank was ``eps / n``, recovered as ``(propensity - (1 - eps) x match) / eps``. What the
greedy policy would have shown those users is in ``exploration_candidates`` (``target_rank``).

Per slot, under a position-based model (Li et al., 2018), a user's contribution is
- IPS: ``sum_r [shown_r == target_r] / q_r x y_r``,
- DR: ``sum_r theta_r p(target_r) + [shown_r == target_r] / q_r x (y_r - theta_r p(shown_r))``,
where y_r is a conversion attributed to rank r, q_r the slice's chance of the shown offer at r,
p the calibrated ``p_convert`` and theta_r the slot's conversions per unit of p_convert on
the slice (the direct model). Conversions off the surface (the plan page) are the same under
any list and are added as observed. Slots interact only through a user converting once, a
second-order effect at these rates.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys.vocabulary import EXPLORATION_REASON, KEYS, TREATMENT


def slice_rows(
    exposures_df: DataFrame, candidates_df: DataFrame, outcomes_df: DataFrame
) -> DataFrame:
    """One row per shown slot of the treatment's exploration slice: the shown offer's match
    with the target policy, the slice's chance ``q`` of it, its ``p_convert``, the target's
    ``p_convert`` at that rank and ``y`` (a conversion attributed to this rank)."""
    shown_df = exposures_df.where(
        (F.col("arm") == TREATMENT)
        & (F.col("reason_code") == EXPLORATION_REASON)
        & (F.col("rank") > 0)
    ).select(*KEYS, "rank", "offer_id", "propensity")
    shown_candidate_df = candidates_df.select(
        *KEYS, "offer_id", "target_rank", "p_convert", "epsilon"
    )
    target_df = candidates_df.select(
        *KEYS,
        F.col("target_rank").alias("rank"),
        F.col("p_convert").alias("target_p_convert"),
    )
    match = (F.col("target_rank") == F.col("rank")).cast("double")
    epsilon = F.col("epsilon")
    return (
        shown_df.join(shown_candidate_df, on=[*KEYS, "offer_id"], how="inner")
        .join(target_df, on=[*KEYS, "rank"], how="left")
        .join(
            outcomes_df.select("user_id", "converted_rank"),
            on="user_id",
            how="left",
        )
        .select(
            *KEYS,
            "rank",
            match.alias("match"),
            ((F.col("propensity") - (1 - epsilon) * match) / epsilon).alias("q"),
            "p_convert",
            F.coalesce("target_p_convert", F.lit(0.0)).alias("target_p_convert"),
            (F.col("converted_rank") == F.col("rank")).cast("double").alias("y"),
        )
        .fillna({"y": 0.0})
    )


def user_estimates(slots_df: DataFrame, outcomes_df: DataFrame) -> DataFrame:
    """Per slice user: ``ips`` and ``dr`` contributions, off-surface conversions included.

    ``slots_df``: :func:`slice_rows`. The direct model's theta_r is fitted on the same rows."""
    theta_df = slots_df.groupBy("rank").agg(
        (F.sum("y") / F.greatest(F.sum("p_convert"), F.lit(1e-12))).alias("theta")
    )
    weight = F.col("match") / F.col("q")
    return (
        slots_df.join(F.broadcast(theta_df), on="rank", how="inner")
        .groupBy("market", "user_id")
        .agg(
            F.sum(weight * F.col("y")).alias("ips_surface"),
            F.sum(
                F.col("theta") * F.col("target_p_convert")
                + weight * (F.col("y") - F.col("theta") * F.col("p_convert"))
            ).alias("dr_surface"),
        )
        .join(
            outcomes_df.select(
                "user_id",
                (F.col("converted") == 1) & F.col("converted_rank").isNull(),
            ).toDF("user_id", "off_surface"),
            on="user_id",
            how="left",
        )
        .select(
            "market",
            "user_id",
            (
                F.col("ips_surface") + F.coalesce(F.col("off_surface").cast("double"), F.lit(0.0))
            ).alias("ips"),
            (
                F.col("dr_surface") + F.coalesce(F.col("off_surface").cast("double"), F.lit(0.0))
            ).alias("dr"),
        )
    )
