"""The ``experiment_policy_values`` table: each policy's conversion rate and revenue per user.

A policy's value is measured in the arm that ran it (``ab_measured``), estimated off policy
from the exploration slice alone (``ips``, ``dr``: :mod:`recsys.experiment.ope`), and, on a
simulated world, known exactly from the world's true probabilities (``truth``, with the
oracle's list beside it). Real logs have no truth columns: their ``truth`` rows are left out.
docs/experiments.md explains every policy and estimator.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.experiment import ope, stats
from recsys.vocabulary import CONTROL, HOLDOUT_ARM, TREATMENT

log = logging.getLogger(__name__)

GREEDY = "treatment_greedy"  # treatment users outside the exploration slice, shown a list
ORACLE = "oracle"
METRICS = ("conversion", "revenue")


def policy_values(
    users_df: DataFrame,
    moments: Mapping[tuple[str, str, str], stats.Moments],
    *,
    exposures_df: DataFrame,
    outcomes_df: DataFrame,
    candidates_df: DataFrame | None,
    level: float,
) -> pd.DataFrame:
    """Each policy's conversion rate and revenue per user, pooled over markets, with intervals.

    One aggregation over ``users_df`` and, where there is an exploration slice, one over its
    off-policy estimates.

    Parameters
    ----------
    users_df : DataFrame
        One row per user in exactly one arm, from :func:`recsys.experiment.analysis.population`
        with :func:`~recsys.experiment.analysis.with_reference_revenue`: ``arm``,
        ``is_exploring``, ``has_list``, ``converted``, ``revenue_ref`` and, on a simulated world,
        ``expected_conversion``, ``expected_revenue_ref``, ``oracle_conversion``,
        ``oracle_revenue_ref``.
    moments : Mapping
        (scope, arm, metric) -> :class:`~recsys.experiment.stats.Moments`, as
        :func:`~recsys.experiment.analysis.arm_moments` gives; its pooled arms are the
        measured values of ``treatment``, ``control`` and ``holdout``.
    exposures_df : DataFrame
        The experiment's ``experiment_exposures`` rows.
    outcomes_df : DataFrame
        The experiment's ``experiment_outcomes`` rows.
    candidates_df : DataFrame or None
        The experiment's ``exploration_candidates`` rows for the served snapshot; None where
        there is no such table, and then no off-policy estimate.
    level : float
        Confidence level of the intervals, e.g. 0.95.

    Returns
    -------
    pandas.DataFrame
        One row per (policy, metric, estimator): ``market`` (pooled), ``policy``, ``metric``,
        ``estimator``, ``users``, ``value``, ``low``, ``high``.
    """
    rows: list[dict] = []

    def add(policy: str, metric: str, estimator: str, m: stats.Moments) -> None:
        low, high = stats.mean_interval(m, level=level)
        rows.append(
            {
                "market": S.POOLED,
                "policy": policy,
                "metric": metric,
                "estimator": estimator,
                "users": m.n,
                "value": m.mean_y,
                "low": low,
                "high": high,
            }
        )

    arm = F.col("arm")
    groups = {
        TREATMENT: arm == TREATMENT,
        CONTROL: arm == CONTROL,
        HOLDOUT_ARM: arm == HOLDOUT_ARM,
        GREEDY: (arm == TREATMENT) & ~F.col("is_exploring") & F.col("has_list"),
    }
    cases: dict[tuple[str, str, str], tuple[Column, str]] = {
        (GREEDY, "conversion", "ab_measured"): (groups[GREEDY], "converted"),
        (GREEDY, "revenue", "ab_measured"): (groups[GREEDY], "revenue_ref"),
    }
    for policy, member in groups.items():
        cases[(policy, "conversion", "truth")] = (member, "expected_conversion")
        cases[(policy, "revenue", "truth")] = (member, "expected_revenue_ref")
    cases[(ORACLE, "conversion", "truth")] = (arm != HOLDOUT_ARM, "oracle_conversion")
    cases[(ORACLE, "revenue", "truth")] = (arm != HOLDOUT_ARM, "oracle_revenue_ref")
    found = moments_of(users_df, cases)
    simulated = found[(TREATMENT, "conversion", "truth")].n > 0  # real logs have no truth
    for policy in groups:
        for metric in METRICS:
            if policy == GREEDY:
                add(policy, metric, "ab_measured", found[(policy, metric, "ab_measured")])
            else:
                measured = moments.get((S.POOLED, policy, metric), stats.Moments(0, 0.0, 0.0))
                add(policy, metric, "ab_measured", measured)
        for metric in METRICS:
            if simulated:
                add(policy, metric, "truth", found[(policy, metric, "truth")])
    if simulated:
        for metric in METRICS:
            add(ORACLE, metric, "truth", found[(ORACLE, metric, "truth")])

    if candidates_df is None:
        return pd.DataFrame(rows)
    estimates_df = ope.user_estimates(
        ope.slice_rows(exposures_df, candidates_df, outcomes_df), outcomes_df
    )
    everyone = F.lit(True)
    estimates = moments_of(estimates_df, {e: (everyone, e) for e in ("ips", "dr")})
    if not estimates["ips"].n:
        log.info("no exploration slice in the treatment arm: no off-policy estimate")
        return pd.DataFrame(rows)
    for estimator, m in estimates.items():
        add(GREEDY, "conversion", estimator, m)
    return pd.DataFrame(rows)


def moments_of(df: DataFrame, cases: Mapping) -> dict:
    """Moments of several (condition, column) cases in one aggregation.

    Parameters
    ----------
    df : DataFrame
        Any rows holding the columns ``cases`` name.
    cases : Mapping
        key -> (condition, value): a boolean Column and the name of a numeric column.

    Returns
    -------
    dict
        key -> :class:`~recsys.experiment.stats.Moments` of ``value`` over the rows where
        ``condition`` holds, nulls left out.
    """
    aggregates = []
    for i, (condition, value) in enumerate(cases.values()):
        y = F.when(condition, F.col(value))
        aggregates += [
            F.count(y).alias(f"n{i}"),
            F.sum(y).alias(f"s{i}"),
            F.sum(y * y).alias(f"q{i}"),
        ]
    row = df.agg(*aggregates).first()
    return {
        key: stats.Moments(
            n=int(row[f"n{i}"]), sum_y=float(row[f"s{i}"] or 0), sum_y2=float(row[f"q{i}"] or 0)
        )
        for i, key in enumerate(cases)
    }
