"""The interaction rows of one snapshot: matrices to fit on and labels to evaluate against.

Time runs left to right; each window is ``holdout_days`` long::

    ... tune | validation | holdout | snapshot
    <------ tune ------->
    <------------ train -------->
    <------------------ full ---------------->

- ``train``: events before the split point (snapshot - holdout_days), decayed to the split;
  what models are fitted on for evaluation.
- ``holdout``: the offers users converted to (trial or paid) between the split and the
  snapshot; the evaluation labels. Never used for fitting, nor for choosing hyperparameters.
- ``tune`` and ``validation``: the same pair one window earlier, for hyperparameter search,
  so that the holdout is looked at once, by the chosen models.
- ``full``: all events before the snapshot, decayed to the snapshot; what the serving model
  is fitted on.
- ``past_1``, ``past_2``, ...: the events before the start of each earlier window
  (``interactions.past_windows`` of them), decayed to it; what supervised families
  describe users by when they learn from those windows' examples.

User and item indices are shared by all of them, per market.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.config import InteractionsConfig
from recsys.interactions.confidence import with_confidence
from recsys.interactions.index import contiguous_index
from recsys.interactions.validate import with_is_offer
from recsys.vocabulary import FULL, HOLDOUT, TRAIN, TUNE, VALIDATION, past_split


def cutoffs(snapshot: dt.date, holdout_days: int) -> tuple[dt.datetime, dt.datetime]:
    """(split, cutoff): UTC midnights; events at or after ``cutoff`` are in the future."""
    cutoff = dt.datetime.combine(snapshot, dt.time(), tzinfo=dt.UTC)
    return cutoff - dt.timedelta(days=holdout_days), cutoff


def moments(snapshot: dt.date, holdout_days: int, past_windows: int = 0) -> dict[str, dt.datetime]:
    """The reference moment of every feature split, earliest first.

    Parameters
    ----------
    snapshot : datetime.date
        The snapshot day: events strictly before it count.
    holdout_days : int
        The length of each window.
    past_windows : int
        How many windows before the tune split also get a moment (``past_1`` the latest).

    Returns
    -------
    dict of str to datetime.datetime
        ``past_n`` .. ``past_1``, ``tune``, ``train``, ``full``: UTC midnights, each
        ``holdout_days`` after the one before.
    """
    _, cutoff = cutoffs(snapshot, holdout_days)
    window = dt.timedelta(days=holdout_days)
    pasts = {past_split(n): cutoff - (n + 2) * window for n in range(past_windows, 0, -1)}
    return {**pasts, TUNE: cutoff - 2 * window, TRAIN: cutoff - window, FULL: cutoff}


def _ts(moment: dt.datetime) -> Column:
    return F.lit(moment)  # timezone-aware, so Spark does not read it as the machine's local time


def interaction_rows(
    events_df: DataFrame, settings: InteractionsConfig, *, snapshot: dt.date
) -> DataFrame:
    """(market, user_id, item_id, confidence, split) for the row sets of every split
    (:data:`recsys.vocabulary.SPLITS`).

    ``events_df``: valid events (the output of validation).
    """
    at = moments(snapshot, settings.holdout_days, settings.past_windows)
    matrices_df = with_confidence(
        events_df,
        references={name: _ts(moment) for name, moment in at.items()},
        weights=settings.weights,
        half_life_days=settings.half_life_days,
        aggregation=settings.aggregation,
        cap=settings.cap,
    )
    labels_df = _labels(
        events_df, {VALIDATION: (at[TUNE], at[TRAIN]), HOLDOUT: (at[TRAIN], at[FULL])}
    )
    return matrices_df.unionByName(labels_df)


def _labels(events_df: DataFrame, windows: dict[str, tuple[dt.datetime, dt.datetime]]) -> DataFrame:
    """The offers users converted to (trial or paid) in each window [start, end), as rows
    of the window's split with confidence 1."""
    ts = F.col("event_ts")
    split = None
    for name, (start, end) in windows.items():
        inside = (ts >= _ts(start)) & (ts < _ts(end))
        split = (F.when if split is None else split.when)(inside, F.lit(name))
    return (
        events_df.where(F.col("event_type").isin(S.CONVERSION, S.TRIAL_START))
        .select("market", "user_id", "item_id", split.alias("split"))
        .where(F.col("split").isNotNull())
        .distinct()
        .withColumn("confidence", F.lit(1.0))
    )


def offer_log_rows(
    events_df: DataFrame, *, snapshot: dt.date, attribution_days: float
) -> DataFrame:
    """The ``offer_log`` rows: every offer impression, plan-page view and acceptance before the
    snapshot.

    An acceptance is a trial start or a conversion. An impression carries its logged
    ``propensity``; impressions and page views (which the user opened unprompted: no
    propensity) carry ``accepted_ts``: the first acceptance of the same offer by the same user
    at or after it, within ``attribution_days``, or null. Readers that label a window
    require ``accepted_ts`` before the window's end, so no label reads past it.

    ``events_df``: valid events (the output of validation), all before the snapshot.
    """
    keys = ["market", "user_id", "offer_id"]
    is_impression = F.col("event_type") == S.OFFER_IMPRESSION
    impressions_df = events_df.where(
        F.col("event_type").isin(S.OFFER_IMPRESSION, S.PLAN_PAGE_VIEW)
    ).select(
        "market",
        "user_id",
        F.col("item_id").alias("offer_id"),
        "event_type",
        "event_ts",
        F.when(is_impression, F.col("value")).alias("propensity"),
    )
    accepts_df = events_df.where(F.col("event_type").isin(S.CONVERSION, S.TRIAL_START)).select(
        "market",
        "user_id",
        F.col("item_id").alias("offer_id"),
        F.lit(S.ACCEPTANCE).alias("event_type"),
        "event_ts",
        F.lit(None).cast("double").alias("propensity"),
    )
    horizon = F.expr(f"INTERVAL {int(attribution_days * 86_400)} SECONDS")
    attributed_df = (
        impressions_df.alias("i")
        .join(
            accepts_df.select(*keys, F.col("event_ts").alias("_accepted_ts")).alias("a"),
            on=[
                *(F.col(f"i.{k}") == F.col(f"a.{k}") for k in keys),
                F.col("a._accepted_ts") >= F.col("i.event_ts"),
                F.col("a._accepted_ts") < F.col("i.event_ts") + horizon,
            ],
            how="left",
        )
        .groupBy(*(F.col(f"i.{c}") for c in impressions_df.columns))
        .agg(F.min("_accepted_ts").alias("accepted_ts"))
    )
    return attributed_df.unionByName(
        accepts_df.withColumn("accepted_ts", F.col("event_ts"))
    ).select(*S.OFFER_LOG_SCHEMA.fieldNames()[:-1], F.lit(snapshot).alias("snapshot_date"))


def with_indices(
    rows_df: DataFrame,
    catalog_df: DataFrame,
    *,
    snapshot: dt.date,
    partitions: int,
    behaviour_tokens: Sequence[str] = S.BEHAVIOUR_TOKENS,
) -> DataFrame:
    """The ``interactions`` table's rows (snapshot_date last): per-market contiguous user and
    item indices shared by the splits. Reads ``rows_df`` three times: persist it first.

    ``catalog_df`` (the catalog table) and ``behaviour_tokens`` (``interactions.
    behaviour_tokens``, patterns included) tell offers from behaviour tokens (``is_offer``);
    rows whose item is neither are dropped.
    """
    users_df = contiguous_index(rows_df, key="user_id", index="user_idx", partitions=partitions)
    items_df = contiguous_index(rows_df, key="item_id", index="item_idx", partitions=partitions)
    return (
        rows_df.join(users_df, on=["market", "user_id"], how="inner")
        .join(F.broadcast(items_df), on=["market", "item_id"], how="inner")
        .transform(with_is_offer, catalog_df, behaviour_tokens)
        .where(F.col("is_offer").isNotNull())
        .select(
            "market",
            "user_idx",
            "item_idx",
            "user_id",
            "item_id",
            "is_offer",
            "confidence",
            "split",
            F.lit(snapshot).alias("snapshot_date"),
        )
    )


def matrix_stats(interactions_df: DataFrame, splits: Sequence[str] = ()) -> DataFrame:
    """Per (split, market): users, items, nnz, density, share of users with an offer row.

    ``items`` counts the market's items in the snapshot index, so density is comparable
    between splits. Every split of ``splits`` gets a row per market, with zero users where
    no user has a row in it (a past window before any user's first event): the stats record
    which splits the build wrote, which readers check their settings against.
    """
    items_df = interactions_df.groupBy("market").agg(F.countDistinct("item_id").alias("items"))
    # Per user first: two distinct counts over the rows would make Spark expand every row.
    users_df = interactions_df.groupBy("split", "market", "user_id").agg(
        F.count(F.lit(1)).alias("nnz"), F.max(F.col("is_offer").cast("int")).alias("has_offer")
    )
    stats_df = (
        users_df.groupBy("split", "market")
        .agg(
            F.count(F.lit(1)).alias("users"),
            F.sum("nnz").alias("nnz"),
            F.sum("has_offer").alias("offer_users"),
        )
        .join(items_df, on="market", how="inner")
        .select(
            "split",
            "market",
            "users",
            "items",
            "nnz",
            (F.col("nnz") / (F.col("users") * F.col("items"))).alias("density"),
            (F.col("offer_users") / F.col("users")).alias("offer_user_share"),
        )
    )
    if not splits:
        return stats_df
    wanted_df = interactions_df.sparkSession.createDataFrame([(s,) for s in splits], "split string")
    empty_df = (
        wanted_df.crossJoin(items_df)
        .join(stats_df, on=["split", "market"], how="left_anti")
        .select(
            "split",
            "market",
            F.lit(0).cast("long").alias("users"),
            "items",
            F.lit(0).cast("long").alias("nnz"),
            F.lit(0.0).alias("density"),
            F.lit(0.0).alias("offer_user_share"),
        )
    )
    return stats_df.unionByName(empty_df)
