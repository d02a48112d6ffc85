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

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recsys.rand import Rng, uniforms
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

    Each row gets a Poisson(1) weight per replicate, drawn from the hash of (seed, key,
    replicate) (:func:`_weights`), so a row weighs the same in every bootstrap with that
    seed, whatever else is grouped or stacked with it: for a paired comparison pass the
    per-user difference of two models. Spark hashes each row's key once and collects the
    rows; the replicates are drawn and averaged on the driver. The rows are per-user figures
    of one evaluation window, a few hundred thousand at 10M users.

    Returns
    -------
    pandas.DataFrame
        The ``by`` columns, ``mean``, ``low``, ``high``, ``n``: one row per group, or one row
        over all rows when ``by`` is empty (``n`` 0 and no figures when there are none).
    """
    rows = _collect(values_df, [column], by=by, key=key, seed=seed)
    if not by:
        return _interval(rows, [column], replicates, level).reset_index(drop=True)
    table = []
    for name, group in rows.groupby(list(by), sort=False, dropna=False):
        labels = dict(zip(by, name, strict=True))
        table.append({**labels, **_interval(group, [column], replicates, level).iloc[0]})
    return pd.DataFrame(table, columns=[*by, "mean", "low", "high", "n"]).astype({"n": "int64"})


def bootstrap_cis(
    values_df: DataFrame,
    columns: list[str],
    *,
    key: str = "user_id",
    replicates: int = 200,
    seed: int = 7,
    level: float = 0.95,
) -> pd.DataFrame:
    """:func:`bootstrap_ci` of several columns, each row's weights drawn once for all.

    Returns
    -------
    pandas.DataFrame
        Indexed by column name: ``mean``, ``low``, ``high``, ``n``. A row's bootstrap weights
        are the same for every column, as if each were bootstrapped on its own.
    """
    rows = _collect(values_df, columns, by=(), key=key, seed=seed)
    return _interval(rows, columns, replicates, level)


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


def _poisson_one_cdf() -> np.ndarray:
    """Poisson(1)'s distribution function at 0..11: a weight is how many of these its
    uniform exceeds (inverse CDF; the mass above 11 is below 1e-9)."""
    cdf, term, steps = 0.0, math.exp(-1.0), []
    for n in range(12):
        cdf += term
        steps.append(cdf)
        term /= n + 1
    return np.array(steps)


_POISSON_ONE_CDF = _poisson_one_cdf()
# Replicate weights held at once (32 MiB an array), so memory does not grow with the rows or
# with train.gate.replicates (up to 10,000).
_CHUNK_CELLS = 1 << 22


def _collect(
    values_df: DataFrame, columns: list[str], *, by: tuple[str, ...], key: str, seed: int
) -> pd.DataFrame:
    """The rows' ``by`` labels, figures (as doubles) and the hash their weights are drawn from."""
    return values_df.select(
        *by,
        *(F.col(c).cast("double").alias(c) for c in columns),
        Rng(seed, F.col(key)).stem("bootstrap").alias("_stem"),
    ).toPandas()


def _interval(
    rows: pd.DataFrame, columns: list[str], replicates: int, level: float
) -> pd.DataFrame:
    """Mean, percentile interval and count of each column over ``rows`` (see bootstrap_ci).

    A missing figure adds nothing to a replicate's sum but its row still counts in the
    weights, and the mean skips it. A replicate whose weights are all zero (a small group can
    draw that) has no mean and is left out of the percentiles.
    """
    figures = rows[columns].to_numpy(dtype=np.float64)
    stems = rows["_stem"].to_numpy()
    sums = np.zeros((len(columns), replicates))
    weights = np.zeros(replicates)
    chunk = max(1, _CHUNK_CELLS // replicates)
    for start in range(0, len(rows), chunk):
        w = _weights(stems[start : start + chunk], replicates)
        sums += np.nan_to_num(figures[start : start + chunk]).T @ w
        weights += w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(weights > 0, sums / weights, np.nan)
    tail = (1 - level) / 2
    table = {}
    for n, column in enumerate(columns):
        present = figures[:, n][~np.isnan(figures[:, n])]
        drawn = means[n][~np.isnan(means[n])]
        mean = present.mean() if len(present) else np.nan
        low, high = np.nan, np.nan
        if len(present) and len(drawn):
            low, high = np.percentile(drawn, [100 * tail, 100 * (1 - tail)])
        table[column] = {"mean": mean, "low": low, "high": high, "n": len(rows)}
    return pd.DataFrame.from_dict(table, orient="index").astype({"n": "int64"})


def _weights(stems: np.ndarray, replicates: int) -> np.ndarray:
    """Each row's Poisson(1) weight in every replicate: (rows, replicates) doubles."""
    return np.searchsorted(_POISSON_ONE_CDF, uniforms(stems, replicates)).astype(np.float64)
