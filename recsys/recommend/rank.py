"""Top-k lists per user from calibrated candidates, with exploration and its propensities.

Each served user's arm has a greedy order: the treatment arm by the configured objective
(``p_convert``, or ``expected_value = p_convert x value``), the control arm by its baseline's
own score (the status quo, as it ranks today). Ties fall to the score, then to offer_id, so
the same input always gives the same lists.

With exploration (``epsilon`` > 0 in a market), a user drawn into the slice is shown their
eligible offers in a random order instead (a salted hash, so reruns agree). The policy is
then stochastic for every user of that market, and ``propensity``, the probability that it
shows this offer at this rank, is ``(1 - epsilon) x [greedy puts it here] + epsilon / n`` for
a user with n eligible offers: 1.0 everywhere when epsilon is 0.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recsys.columns import unit
from recsys.vocabulary import TREATMENT

# What ranked_lists reads: one row per (served user, eligible offer).
CANDIDATE_COLUMNS = (
    "market",
    "user_id",
    "offer_id",
    "arm",
    "scorer",
    "score",
    "p_convert",
    "expected_value",
    "epsilon",
    "is_exploring",
)
LIST_COLUMNS = (*CANDIDATE_COLUMNS, "rank", "propensity")


# recommend.objective -> the column the treatment arm is sorted by.
OBJECTIVES = {"propensity": "p_convert", "expected_value": "expected_value"}


def objective_of(objective: str) -> Column:
    """The greedy sort key of a row: the treatment's objective (``recommend.objective``), the
    control's own score."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; known: {list(OBJECTIVES)}")
    return F.when(F.col("arm") == TREATMENT, F.col(OBJECTIVES[objective])).otherwise(F.col("score"))


def _greedy(objective: str) -> Window:
    return Window.partitionBy("market", "user_id").orderBy(
        objective_of(objective).desc_nulls_last(),
        F.col("score").desc_nulls_last(),
        F.col("offer_id"),
    )


def ranked_lists(candidates_df: DataFrame, k: int, objective: str, salt: str) -> DataFrame:
    """The ``k`` offers shown to each user, with ``rank`` (1 = first) and ``propensity``.

    ``candidates_df``: :data:`CANDIDATE_COLUMNS`, grain (market, user_id, offer_id).
    ``objective``: ``propensity`` (by ``p_convert``) or ``expected_value``, as in
    ``recommend.objective``. ``salt``: the experiment id.
    """
    user = Window.partitionBy("market", "user_id")
    greedy = _greedy(objective)
    shuffled = user.orderBy(unit(f"{salt}/order", "user_id", "offer_id"), F.col("offer_id"))
    epsilon = F.col("epsilon")
    return (
        candidates_df.select(*CANDIDATE_COLUMNS)
        .withColumn("_greedy", F.row_number().over(greedy))
        .withColumn("_shuffled", F.row_number().over(shuffled))
        .withColumn("_offers", F.count(F.lit(1)).over(user))
        .withColumn(
            "rank", F.when(F.col("is_exploring"), F.col("_shuffled")).otherwise(F.col("_greedy"))
        )
        .where(F.col("rank") <= k)
        .withColumn(
            "propensity",
            (F.lit(1.0) - epsilon) * (F.col("_greedy") == F.col("rank")).cast("double")
            + epsilon / F.col("_offers"),
        )
        .select(*LIST_COLUMNS)
    )


def exploration_candidates(candidates_df: DataFrame, objective: str) -> DataFrame:
    """Every eligible offer of the treatment arm's exploring users, with ``target_rank``: the
    rank the treatment's greedy policy gives it. Those users saw a random list; this is what
    the policy under test would have shown them, which off-policy evaluation needs.

    ``candidates_df``: :data:`CANDIDATE_COLUMNS`. Returns (market, user_id, offer_id,
    target_rank, p_convert, expected_value, epsilon).
    """
    return (
        candidates_df.where((F.col("arm") == TREATMENT) & F.col("is_exploring"))
        .withColumn("target_rank", F.row_number().over(_greedy(objective)))
        .select(
            "market", "user_id", "offer_id", "target_rank", "p_convert", "expected_value", "epsilon"
        )
    )
