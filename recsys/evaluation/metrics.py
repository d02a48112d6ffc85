"""Top-k ranking metrics in Spark, per user and summarised, with bootstrap intervals.

Definitions, for a user with relevant (held-out) items R and a ranked list whose item at rank
r is relevant when rel_r = 1 (ranks 1..k):

    hits@k      = sum_{r<=k} rel_r
    precision@k = hits@k / k
    recall@k    = hits@k / |R|
    hit_rate@k  = 1 if hits@k > 0 else 0
    ndcg@k      = sum_{r<=k} rel_r / log2(r + 1)  /  sum_{r<=min(|R|,k)} 1 / log2(r + 1)
    map@k       = sum_{r<=k} rel_r * precision@r  /  min(|R|, k)
    mrr@k       = 1 / (rank of the first relevant item) if hits@k > 0 else 0
    mrr         = 1 / (rank of the first relevant item in the whole ranking), 0 if none
    revenue@k   = sum_{r<=k} rel_r * value of the item (e.g. its price)

Only users with at least one relevant item are evaluated; a user the model gave no list
scores 0 (never silently dropped). ``tests/evaluation`` checks every metric against a
pure-Python reference.
"""

from __future__ import annotations

import math

import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recsys.rand import Rng
from recsys.vocabulary import KEYS

METRICS = ("precision", "recall", "hit_rate", "ndcg", "map", "mrr", "revenue")
MRR = "mrr"  # the plain MRR column of per_user_metrics_at: no cut-off


def _ideal_dcg(n_relevant: Column, k: int) -> Column:
    """sum_{r <= min(n, k)} 1 / log2(r + 1), as a CASE over the k possible values."""
    branches = None
    total = 0.0
    for r in range(1, k + 1):
        total += 1.0 / math.log2(r + 1)
        condition = F.least(n_relevant, F.lit(k)) == r
        branches = (F.when if branches is None else branches.when)(condition, F.lit(total))
    return branches.otherwise(F.lit(0.0))


def metric_column(metric: str, k: int) -> str:
    """The column of ``metric`` at ``k`` in :func:`per_user_metrics_at`'s output."""
    return f"{metric}_at_{k}"


def per_user_metrics(
    recommendations_df: DataFrame,
    labels_df: DataFrame,
    k: int,
    *,
    keys: tuple[str, ...] = KEYS,
    value_col: str | None = None,
) -> DataFrame:
    """Ranking metrics of each labelled user's list at one cut-off.

    Parameters
    ----------
    recommendations_df : DataFrame
        ``keys``, ``item_id``, ``rank`` (1 = best; ranks above ``k`` are ignored).
    labels_df : DataFrame
        ``keys``, ``item_id``: the relevant items (duplicates ignored), and ``value_col``
        when given.
    k : int
        The cut-off.
    keys : tuple of str, default ("market", "user_id")
        What one list belongs to.
    value_col : str, optional
        The value a hit earns (e.g. the offer's price), for the revenue metric.

    Returns
    -------
    DataFrame
        One row per labelled user: ``keys`` and each metric of :data:`METRICS` at ``k``; a
        labelled user without a list scores 0.
    """
    at_k = per_user_metrics_at(recommendations_df, labels_df, [k], keys=keys, value_col=value_col)
    return at_k.select(*keys, *(F.col(metric_column(m, k)).alias(m) for m in METRICS))


def per_user_metrics_at(
    recommendations_df: DataFrame,
    labels_df: DataFrame,
    ks: list[int],
    *,
    keys: tuple[str, ...] = KEYS,
    value_col: str | None = None,
) -> DataFrame:
    """:func:`per_user_metrics` at every k of ``ks`` in one pass: ``keys``, then the
    :data:`METRICS` at each k in turn, named by :func:`metric_column`, then the plain
    :data:`MRR` over every rank the lists hold (pass whole rankings, not only the top
    ``max(ks)``, for it to be the plain MRR).

    A hit at rank r counts towards every k >= r, so one join of the lists with the labels
    and one aggregation per user serve all the ks.
    """
    labels = labels_df.select(
        *keys,
        "item_id",
        (F.col(value_col) if value_col else F.lit(0.0)).cast("double").alias("_value"),
    ).dropDuplicates([*keys, "item_id"])
    relevant_df = labels.groupBy(*keys).agg(F.count(F.lit(1)).alias("n_relevant"))
    hits_df = recommendations_df.select(*keys, "item_id", "rank").join(
        labels, on=[*keys, "item_id"], how="inner"
    )
    # precision@r at a hit at rank r = (hits at ranks <= r) / r, whatever k >= r
    running = F.count(F.lit(1)).over(
        Window.partitionBy(*keys).orderBy("rank").rowsBetween(Window.unboundedPreceding, 0)
    )
    per_hit_df = hits_df.select(
        *keys,
        "rank",
        (F.lit(1.0) / F.log2(F.col("rank") + 1)).alias("gain"),
        (running / F.col("rank")).alias("precision_at_hit"),
        "_value",
    )
    sums = {
        f"{name}_{k}": aggregate(F.when(F.col("rank") <= k, F.col(column)))
        for k in ks
        for name, column, aggregate in (
            ("hits", "rank", F.count),
            ("dcg", "gain", F.sum),
            ("ap_sum", "precision_at_hit", F.sum),
            ("revenue", "_value", F.sum),
        )
    }
    sums_df = per_hit_df.groupBy(*keys).agg(
        F.min("rank").alias("first_hit"), *(column.alias(name) for name, column in sums.items())
    )
    joined = relevant_df.join(sums_df, on=list(keys), how="left").na.fill(0, subset=list(sums))
    n, first_hit = F.col("n_relevant"), F.col("first_hit")
    columns = []
    for k in ks:
        hits = F.col(f"hits_{k}")
        values = {
            "precision": hits / F.lit(k),
            "recall": hits / n,
            "hit_rate": (hits > 0).cast("double"),
            "ndcg": F.col(f"dcg_{k}") / _ideal_dcg(n, k),
            "map": F.col(f"ap_sum_{k}") / F.least(n, F.lit(k)),
            "mrr": F.when(first_hit <= k, F.lit(1.0) / first_hit).otherwise(F.lit(0.0)),
            "revenue": F.col(f"revenue_{k}").cast("double"),
        }
        columns += [values[m].alias(metric_column(m, k)) for m in METRICS]
    plain_mrr = F.when(first_hit.isNotNull(), F.lit(1.0) / first_hit).otherwise(F.lit(0.0))
    return joined.select(*keys, *columns, plain_mrr.alias(MRR))


def summarize(per_user_df: DataFrame, by: tuple[str, ...] = ()) -> DataFrame:
    """Mean of each metric and the number of users, overall or per ``by`` group."""
    aggregates = [F.avg(m).alias(m) for m in METRICS] + [F.count(F.lit(1)).alias("users")]
    grouped = per_user_df.groupBy(*by) if by else per_user_df
    return grouped.agg(*aggregates)


def bootstrap_ci(
    values_df: DataFrame,
    column: str,
    *,
    by: tuple[str, ...] = (),
    key: str = "user_id",
    replicates: int = 200,
    seed: int = 7,
    level: float = 0.95,
) -> pd.DataFrame:
    """Mean of ``column`` with a Poisson-bootstrap percentile interval, per ``by`` group.

    Each row gets a Poisson(1) weight per replicate, drawn by hashing (seed, key, replicate),
    so all replicates of all groups are computed by Spark in one pass and only groups x
    replicates numbers are aggregated. Returns a pandas frame: ``by`` columns, ``mean``,
    ``low``, ``high``, ``n``. For a paired comparison pass the per-user difference of two
    models.
    """
    tail = (1 - level) / 2
    weighted_df = values_df.select(
        *by,
        F.col(column).cast("double").alias("_x"),
        F.explode(F.sequence(F.lit(0), F.lit(replicates - 1))).alias("_replicate"),
        F.col(key),
    ).select(
        *by,
        "_x",
        "_replicate",
        _poisson_one(Rng(seed, F.col(key)), F.col("_replicate")).alias("_w"),
    )
    # A small group can draw all-zero weights in a replicate: that replicate has no mean
    # (null, skipped by the percentiles) rather than a division by zero.
    replicate_df = weighted_df.groupBy(*by, "_replicate").agg(
        F.try_divide(F.sum(F.col("_x") * F.col("_w")), F.sum("_w")).alias("_m")
    )
    interval_df = replicate_df.groupBy(*by).agg(
        F.percentile("_m", F.lit(tail)).alias("low"),
        F.percentile("_m", F.lit(1 - tail)).alias("high"),
    )
    point_df = values_df.groupBy(*by).agg(F.avg(column).alias("mean"), F.count(F.lit(1)).alias("n"))
    if not by:
        interval_df = interval_df.withColumn("_all", F.lit(1))
        point_df = point_df.withColumn("_all", F.lit(1))
    on = list(by) or ["_all"]
    result = point_df.join(interval_df, on=on, how="left").select(*by, "mean", "low", "high", "n")
    return result.toPandas()


def bootstrap_cis(
    values_df: DataFrame,
    columns: list[str],
    *,
    key: str = "user_id",
    replicates: int = 200,
    seed: int = 7,
    level: float = 0.95,
) -> pd.DataFrame:
    """:func:`bootstrap_ci` of several columns in one pass over the rows.

    Returns
    -------
    pandas.DataFrame
        Indexed by column name: ``mean``, ``low``, ``high``, ``n``. A row's bootstrap weights
        are the same for every column, as if each were bootstrapped on its own.
    """
    stacked = F.explode(
        F.array(
            *(
                F.struct(F.lit(c).alias("_metric"), F.col(c).cast("double").alias("_value"))
                for c in columns
            )
        )
    )
    long_df = values_df.select(F.col(key), stacked.alias("_s")).select(key, "_s.*")
    table = bootstrap_ci(
        long_df,
        "_value",
        by=("_metric",),
        key=key,
        replicates=replicates,
        seed=seed,
        level=level,
    )
    return table.set_index("_metric").rename_axis(None).reindex(columns)


def bootstrap_mean_ci(
    values_df: DataFrame,
    column: str,
    *,
    key: str = "user_id",
    replicates: int = 200,
    seed: int = 7,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """(mean, lower, upper) over all rows: :func:`bootstrap_ci` without groups."""
    row = bootstrap_ci(
        values_df, column, key=key, replicates=replicates, seed=seed, level=level
    ).iloc[0]
    return float(row["mean"]), float(row["low"]), float(row["high"])


def _poisson_one(rng: Rng, replicate: Column) -> Column:
    """Poisson(1) by inverse CDF, keyed by the row and the replicate number."""
    u = rng.uniform("bootstrap", replicate)
    cdf, term, count = 0.0, math.exp(-1.0), None
    for n in range(12):
        cdf += term
        step = (u > F.lit(cdf)).cast("int")
        count = step if count is None else count + step
        term /= n + 1
    return count
