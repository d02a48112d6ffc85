"""What a staged snapshot of ``plan_recommendations`` holds per market and arm: the table
logged with the recommend run, its metrics, and the line the job ends with."""

from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys import tracking
from recsys.vocabulary import EXPLORATION_REASON, FALLBACK_REASON


def snapshot_summary(snapshot_df: DataFrame) -> pd.DataFrame:
    """What a snapshot holds per market and arm (config-sized: collected to the driver).

    Parameters
    ----------
    snapshot_df : DataFrame
        Rows of the ``plan_recommendations`` contract.

    Returns
    -------
    pandas.DataFrame
        One row per (market, arm): ``users``, ``rows``, ``fallback_share`` and
        ``exploration_share`` of the rows, and ``top_p_convert``, the mean ``p_convert`` of
        the first slot.
    """
    first = F.col("rank") <= 1
    return (
        snapshot_df.groupBy("market", "arm")
        .agg(
            F.countDistinct("user_id").alias("users"),
            F.count(F.lit(1)).alias("rows"),
            F.avg((F.col("reason_code") == FALLBACK_REASON).cast("double")).alias("fallback_share"),
            F.avg((F.col("reason_code") == EXPLORATION_REASON).cast("double")).alias(
                "exploration_share"
            ),
            F.avg(F.when(first, F.col("p_convert"))).alias("top_p_convert"),
        )
        .orderBy("market", "arm")
        .toPandas()
    )


def log_summary(summary: pd.DataFrame) -> None:
    """Log users per arm, per arm and market, and the row count to the active MLflow run.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`snapshot_summary` of the snapshot.
    """
    by_arm = summary.groupby("arm")[["users", "rows"]].sum()
    metrics = {f"{arm}_users": float(r.users) for arm, r in by_arm.iterrows()}
    metrics["rows"] = float(summary["rows"].sum())
    for r in summary.itertuples():
        metrics[f"users_{r.arm}/{r.market}"] = float(r.users)
    tracking.log_metrics(metrics)


def headline(summary: pd.DataFrame) -> str:
    """One line for the log: rows, and users by arm.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`snapshot_summary` of the snapshot.

    Returns
    -------
    str
    """
    by_arm = summary.groupby("arm")["users"].sum()
    arms = ", ".join(f"{arm} {int(n):,}" for arm, n in by_arm.items())
    return f"{int(summary['rows'].sum()):,} rows, users by arm: {arms}"
