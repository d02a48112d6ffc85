"""What a snapshot of ``plan_recommendations`` must satisfy to be served (docs/reliability.md).

Each check returns the problems it found as sentences that name counts and a few example
users, so that a refused publish says what to look at:

- coverage: every user of the run has ranks 1..n with n = min(k, offers they are eligible
  for), or exactly one row of rank 0 whose reason is ``holdout`` (their arm) or
  ``no_eligible_offer`` (they have none); no user outside the run;
- eligibility: no listed offer is one the user's verdict excludes;
- completeness: no null in a contract column (offer columns are null exactly on rank 0; the
  price columns also on an offer without a price, both or neither);
- stability: no offer's share of a market's top slot moved more than ``max_mix_shift``
  against the snapshot being served.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.vocabulary import HOLDOUT_ARM, HOLDOUT_REASON, KEYS, NO_ELIGIBLE_OFFER

_EXAMPLES = 3


def problems(
    snapshot_df: DataFrame,
    users_df: DataFrame,
    verdicts_df: DataFrame,
    previous_df: DataFrame | None,
    *,
    k: int,
    max_mix_shift: float,
) -> list[str]:
    """Every problem of ``snapshot_df``; empty when it may be published.

    ``snapshot_df``: the staged rows (contract columns). ``users_df``: (market, user_id, arm)
    of every user of the run. ``verdicts_df``: (market, user_id, offer_id, eligible) of the
    run. ``previous_df``: the snapshot being served, or None.
    """
    found = []
    found += coverage(snapshot_df, users_df, verdicts_df, k)
    found += ineligible(snapshot_df, verdicts_df)
    found += nulls(snapshot_df)
    if previous_df is not None:
        found += mix_shift(snapshot_df, previous_df, max_mix_shift)
    return found


def coverage(
    snapshot_df: DataFrame, users_df: DataFrame, verdicts_df: DataFrame, k: int
) -> list[str]:
    eligible_df = verdicts_df.groupBy(*KEYS).agg(
        F.sum(F.col("eligible").cast("int")).alias("eligible_offers")
    )
    rank = F.col("rank")
    per_user_df = snapshot_df.groupBy(*KEYS).agg(
        F.count(F.lit(1)).alias("rows"),
        F.countDistinct("rank").alias("ranks"),
        F.min("rank").alias("first"),
        F.max("rank").alias("last"),
        F.max(F.when(rank == S.NO_OFFER_RANK, F.col("reason_code"))).alias("no_offer_reason"),
    )
    joined_df = (
        users_df.select(*KEYS, "arm", F.lit(True).alias("in_run"))
        .join(per_user_df, on=list(KEYS), how="full")
        .join(eligible_df, on=list(KEYS), how="left")
        .withColumn("eligible_offers", F.coalesce("eligible_offers", F.lit(0)))
    )
    expected = F.least(F.lit(k), F.col("eligible_offers"))
    is_list = (
        (F.col("first") == 1)
        & (F.col("last") == F.col("rows"))
        & (F.col("ranks") == F.col("rows"))
        & (F.col("rows") == expected)
        & (F.col("arm") != HOLDOUT_ARM)
    )
    is_no_offer = (F.col("rows") == 1) & (
        ((F.col("no_offer_reason") == HOLDOUT_REASON) & (F.col("arm") == HOLDOUT_ARM))
        | (
            (F.col("no_offer_reason") == NO_ELIGIBLE_OFFER)
            & (F.col("eligible_offers") == 0)
            & (F.col("arm") != HOLDOUT_ARM)
        )
    )
    # Null comparisons (a user without a rank-0 row has no reason) must count as "no".
    is_list, is_no_offer = (F.coalesce(c, F.lit(False)) for c in (is_list, is_no_offer))
    kind = (
        F.when(F.col("in_run").isNull(), "users not in this run")
        .when(F.col("rows").isNull(), "users of the run without rows")
        .when(~(is_list | is_no_offer), f"users without ranks 1..min({k}, eligible offers)")
    )
    failing_df = joined_df.select(*KEYS, kind.alias("kind")).where(F.col("kind").isNotNull())
    return _grouped(failing_df)


def ineligible(snapshot_df: DataFrame, verdicts_df: DataFrame) -> list[str]:
    failing_df = (
        snapshot_df.where(F.col("rank") > S.NO_OFFER_RANK)
        .join(
            verdicts_df.select(*KEYS, "offer_id", "eligible"),
            on=[*KEYS, "offer_id"],
            how="left",
        )
        .where(~F.coalesce(F.col("eligible"), F.lit(False)))
        .select(*KEYS, F.lit("rows with an offer the user is not eligible for").alias("kind"))
    )
    return _grouped(failing_df)


def nulls(snapshot_df: DataFrame) -> list[str]:
    has_offer = F.col("rank") > S.NO_OFFER_RANK
    checks = []
    for column in S.PLAN_RECOMMENDATION_COLUMNS:
        missing = F.col(column).isNull()
        if column in S.PRICE_COLUMNS:
            # An offer may have no price (a market without prices), but then neither column
            # has one: an amount without its display, or the reverse, is wrong.
            other = next(c for c in S.PRICE_COLUMNS if c != column)
            missing = (has_offer & (missing != F.col(other).isNull())) | (
                ~has_offer & F.col(column).isNotNull()
            )
        elif column in S.OFFER_COLUMNS:
            # Null exactly on the rows without an offer.
            missing = (has_offer & missing) | (~has_offer & F.col(column).isNotNull())
        checks.append(F.sum(missing.cast("int")).alias(column))
    counts = snapshot_df.agg(*checks).first().asDict()
    return [
        f"{count:,} rows with a wrong null in {column}"
        if column in S.OFFER_COLUMNS
        else f"{count:,} rows with a null {column}"
        for column, count in counts.items()
        if count
    ]


def top_slot_mix(snapshot_df: DataFrame) -> DataFrame:
    """(market, offer_id, share): each offer's share of its market's first slot."""
    first_df = snapshot_df.where(F.col("rank") == 1)
    return (
        first_df.groupBy("market", "offer_id")
        .agg(F.count(F.lit(1)).alias("_n"))
        .withColumn("share", F.col("_n") / F.sum("_n").over(Window.partitionBy("market")))
        .select("market", "offer_id", "share")
    )


def mix_shift(snapshot_df: DataFrame, previous_df: DataFrame, bound: float) -> list[str]:
    """Offers whose top-slot share moved more than ``bound``, in markets both snapshots
    serve (a market new to this snapshot has nothing to compare with)."""
    new_df = top_slot_mix(snapshot_df).withColumnRenamed("share", "new")
    old_df = top_slot_mix(previous_df).withColumnRenamed("share", "old")
    both_df = new_df.select("market").intersect(old_df.select("market"))
    shifts = (
        new_df.join(old_df, on=["market", "offer_id"], how="full")
        .join(both_df, on="market", how="left_semi")
        .fillna(0.0, subset=["new", "old"])
        .where(F.abs(F.col("new") - F.col("old")) > bound)
        .orderBy("market", "offer_id")
        .collect()
    )
    return [
        f"{r['market']}: {r['offer_id']} holds {r['new']:.1%} of the top slot, against "
        f"{r['old']:.1%} in the served snapshot (recommend.publish.max_mix_shift={bound})"
        for r in shifts
    ]


def _grouped(failing_df: DataFrame) -> list[str]:
    """One sentence per kind of failure: the count and a few example users."""
    user = F.concat_ws("/", *KEYS)
    counts = {
        r["kind"]: r["n"]
        for r in failing_df.groupBy("kind").count().withColumnRenamed("count", "n").collect()
    }
    if not counts:
        return []
    first = Window.partitionBy("kind").orderBy(user)
    examples: dict[str, list[str]] = {}
    for r in (
        failing_df.withColumn("_n", F.row_number().over(first))
        .where(F.col("_n") <= _EXAMPLES)
        .select("kind", user.alias("user"))
        .orderBy("kind", "user")
        .collect()
    ):
        examples.setdefault(r["kind"], []).append(r["user"])
    return [
        f"{n:,} {kind} (e.g. {', '.join(examples[kind])})" for kind, n in sorted(counts.items())
    ]
