"""Reading an A/B test from its logs: per-user metrics in Spark, sufficient statistics per
(market, arm) on the driver, and the comparisons, tests and decisions of :mod:`stats`.

Works on any ``experiment_exposures`` / ``experiment_outcomes`` of the documented schema
(recsys/schemas.py). The population is the users of the exposures, each in the arm logged
there (intention to treat: a treatment user who never opened a surface still counts). A user
with no outcome row had no outcome events: zeros, counted and reported.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.columns import literal_map
from recsys.config import AnalyzeConfig
from recsys.errors import RecsysError
from recsys.experiment import decision, stats
from recsys.vocabulary import ARMS, CONTROL, EXPLORATION_REASON, HOLDOUT_ARM, TREATMENT

# metric -> (outcome column, CUPED covariate): the same quantity before the window where
# there is one (money), else the user's behaviour volume, which predicts buying.
METRICS = {
    "conversion": ("converted", "pre_engagement"),
    "revenue": ("revenue", "pre_revenue"),
    "cancellation": ("cancellation", "pre_engagement"),
    "downgrade": ("downgrade", "pre_engagement"),
    "trial_abuse": ("trial_abuse", "pre_engagement"),
}
COMPARISONS = {
    "treatment_vs_control": (TREATMENT, CONTROL),
    "treatment_vs_holdout": (TREATMENT, HOLDOUT_ARM),
    "control_vs_holdout": (CONTROL, HOLDOUT_ARM),
}
HEADLINE = "treatment_vs_control"
SUMS = ("sum_y", "sum_y2", "sum_x", "sum_x2", "sum_xy")
REFERENCE_UNIT = "reference_months"
# The simulator's truth: optional in outcomes (real logs have no oracle).
TRUTH_COLUMNS = ("expected_conversion", "expected_revenue", "oracle_conversion", "oracle_revenue")


def check_columns(df: DataFrame, schema, table: str, *, optional: tuple[str, ...] = ()) -> None:
    """Raises naming the table and the columns it lacks against its documented schema."""
    missing = [c for c in schema.fieldNames() if c not in df.columns and c not in optional]
    if missing:
        raise RecsysError(
            f"{table} lacks the columns {missing} of its documented schema (recsys/schemas.py)"
        )


def population(exposures_df: DataFrame, outcomes_df: DataFrame) -> DataFrame:
    """One row per assigned user with their arm, whether their list was the exploration
    slice's, whether they were shown any offer, and their outcomes (zeros when they have no
    outcome row).

    ``exposures_df``: ``experiment_exposures`` rows of one experiment; ``outcomes_df``: its
    ``experiment_outcomes`` rows. Returns the per-user frame with ``arms`` (distinct arms
    logged; more than one is a broken assignment) and ``has_outcome``.
    """
    assigned_df = exposures_df.groupBy("market", "user_id").agg(
        F.first("arm").alias("arm"),
        F.countDistinct("arm").alias("arms"),
        F.max((F.col("reason_code") == EXPLORATION_REASON).cast("int")).alias("is_exploring"),
        F.max((F.col("rank") > 0).cast("int")).alias("has_list"),
    )
    zero = F.lit(0)
    for column in TRUTH_COLUMNS:
        if column not in outcomes_df.columns:
            outcomes_df = outcomes_df.withColumn(column, F.lit(None).cast("double"))
    return assigned_df.join(
        outcomes_df.drop("market").withColumn("has_outcome", F.lit(1)),
        on="user_id",
        how="left",
    ).select(
        "market",
        "user_id",
        "arm",
        "arms",
        F.col("is_exploring").cast("boolean").alias("is_exploring"),
        F.col("has_list").cast("boolean").alias("has_list"),
        F.coalesce("has_outcome", zero).alias("has_outcome"),
        *[F.coalesce(F.col(c), zero).cast("double").alias(c) for c, _ in METRICS.values()],
        *[F.coalesce(F.col(c), F.lit(0.0)).alias(c) for c in ("pre_revenue", "pre_engagement")],
        "converted_rank",
        "converted_at",
        *TRUTH_COLUMNS,
    )


def with_reference_revenue(users_df: DataFrame, reference_price: Mapping[str, float]) -> DataFrame:
    """Adds revenue columns in months of each market's reference price, so markets pool."""
    per = literal_map(reference_price)[F.col("market")]
    return users_df.select(
        "*",
        (F.col("revenue") / per).alias("revenue_ref"),
        (F.col("pre_revenue") / per).alias("pre_revenue_ref"),
        (F.col("expected_revenue") / per).alias("expected_revenue_ref"),
        (F.col("oracle_revenue") / per).alias("oracle_revenue_ref"),
    )


def moments_table(users_df: DataFrame) -> pd.DataFrame:
    """Sufficient statistics per (market, arm) of every metric: markets x arms rows."""
    aggregates = [F.count(F.lit(1)).alias("n")]
    pairs = {**METRICS, "revenue_ref": ("revenue_ref", "pre_revenue_ref")}
    for metric, (y, x) in pairs.items():
        aggregates += [
            F.sum(y).alias(f"{metric}__sum_y"),
            F.sum(F.col(y) * F.col(y)).alias(f"{metric}__sum_y2"),
            F.sum(x).alias(f"{metric}__sum_x"),
            F.sum(F.col(x) * F.col(x)).alias(f"{metric}__sum_x2"),
            F.sum(F.col(x) * F.col(y)).alias(f"{metric}__sum_xy"),
        ]
    return users_df.groupBy("market", "arm").agg(*aggregates).toPandas()


def _moments(row: pd.Series, metric: str) -> stats.Moments:
    return stats.Moments(
        n=int(row["n"]),
        **{field: float(row[f"{metric}__{field}"] or 0.0) for field in SUMS},
    )


def arm_moments(table: pd.DataFrame) -> dict[tuple[str, str, str], stats.Moments]:
    """(scope, arm, metric) -> Moments; scope is a market or ``ALL`` (revenue pooled in
    reference months)."""
    found: dict[tuple[str, str, str], stats.Moments] = {}
    for _, row in table.iterrows():
        for metric in METRICS:
            found[(row["market"], row["arm"], metric)] = _moments(row, metric)
            source = "revenue_ref" if metric == "revenue" else metric
            key = (S.POOLED, row["arm"], metric)
            pooled = _moments(row, source)
            found[key] = found[key] + pooled if key in found else pooled
    return found


def results(
    moments: Mapping[tuple[str, str, str], stats.Moments],
    settings: AnalyzeConfig,
    shares: Mapping[str, float],
    currencies: Mapping[str, str],
) -> pd.DataFrame:
    """The rows of ``experiment_results`` (without the stamps), decisions included."""
    scopes = [*sorted({scope for scope, _, _ in moments} - {S.POOLED}), S.POOLED]
    rows = []
    srm = {}
    for scope in scopes:
        counts = {
            arm: moments[(scope, arm, "conversion")].n
            for arm in ARMS
            if (scope, arm, "conversion") in moments
        }
        srm[scope] = stats.srm_p_value(counts, shares)
        for metric in METRICS:
            for comparison, (a, b) in COMPARISONS.items():
                if (scope, a, metric) not in moments or (scope, b, metric) not in moments:
                    continue
                for cuped in (False, True):
                    c = stats.compare(
                        moments[(scope, a, metric)],
                        moments[(scope, b, metric)],
                        level=settings.level,
                        cuped=cuped,
                    )
                    rows.append(
                        {
                            "market": scope,
                            "metric": metric,
                            "role": _role(metric, settings),
                            "unit": _unit(metric, scope, currencies),
                            "comparison": comparison,
                            "adjustment": "cuped" if cuped else "raw",
                            "users_a": c.n_a,
                            "users_b": c.n_b,
                            "mean_a": c.mean_a,
                            "mean_b": c.mean_b,
                            "lift": c.lift,
                            "lift_low": c.lift_low,
                            "lift_high": c.lift_high,
                            "rel_lift": c.rel_lift,
                            "rel_low": c.rel_low,
                            "rel_high": c.rel_high,
                            "p_value": c.p_value,
                            "variance_reduction": c.variance_reduction,
                            "margin": settings.guardrails.get(metric),
                            "srm_p_value": srm[scope],
                            "is_valid": bool(not srm[scope] < settings.srm_alpha),
                        }
                    )
    frame = pd.DataFrame(rows)
    frame["p_adjusted"] = _adjusted(frame)
    frame["verdict"] = [_verdict(r, settings) for r in frame.itertuples()]
    decisions = {
        scope: _decide(frame, scope, moments, settings) for scope in frame["market"].unique()
    }
    frame["decision"] = frame["market"].map(lambda s: decisions[s].decision)
    frame["decision_reason"] = frame["market"].map(lambda s: decisions[s].reason)
    frame["required_users_per_arm"] = frame["market"].map(
        lambda s: decisions[s].required_users_per_arm
    )
    return frame


def _role(metric: str, settings: AnalyzeConfig) -> str:
    if metric == settings.success_metric:
        return "success"
    return "guardrail" if metric in settings.guardrails else "secondary"


def _unit(metric: str, scope: str, currencies: Mapping[str, str]) -> str:
    if metric != "revenue":
        return "share_of_users"
    return REFERENCE_UNIT if scope == S.POOLED else currencies[scope]


def _adjusted(frame: pd.DataFrame) -> list[float]:
    """Benjamini-Hochberg across markets within each (metric, comparison, adjustment); the
    pooled row is one test of its own."""
    adjusted = pd.Series(float("nan"), index=frame.index)
    markets = frame["market"] != S.POOLED
    for _, group in frame[markets].groupby(["metric", "comparison", "adjustment"]):
        adjusted[group.index] = stats.adjust_p_values(group["p_value"].tolist())
    adjusted[~markets] = frame.loc[~markets, "p_value"]
    return adjusted.tolist()


def _verdict(row, settings: AnalyzeConfig) -> str:
    c = _comparison(row)
    if row.role == "guardrail":
        return decision.guardrail_verdict(c, row.margin)
    return decision.success_verdict(c, row.p_adjusted, alpha=1 - settings.level)


def _comparison(row) -> stats.Comparison:
    return stats.Comparison(
        n_a=row.users_a,
        n_b=row.users_b,
        mean_a=row.mean_a,
        mean_b=row.mean_b,
        lift=row.lift,
        lift_low=row.lift_low,
        lift_high=row.lift_high,
        rel_lift=row.rel_lift,
        rel_low=row.rel_low,
        rel_high=row.rel_high,
        p_value=row.p_value,
        se=float("nan"),
        variance_reduction=row.variance_reduction,
        theta=None,
    )


def _decide(
    frame: pd.DataFrame,
    scope: str,
    moments: Mapping[tuple[str, str, str], stats.Moments],
    settings: AnalyzeConfig,
) -> decision.Outcome:
    metric = settings.success_metric
    if (scope, TREATMENT, metric) not in moments or (scope, CONTROL, metric) not in moments:
        return decision.Outcome(
            "invalid", "The logs hold no treatment or no control users here; no comparison.", None
        )
    adjustment = "cuped" if settings.cuped else "raw"
    headline = frame[
        (frame["market"] == scope)
        & (frame["comparison"] == HEADLINE)
        & (frame["adjustment"] == adjustment)
    ].set_index("metric")
    success = headline.loc[settings.success_metric]
    a = moments[(scope, TREATMENT, settings.success_metric)]
    b = moments[(scope, CONTROL, settings.success_metric)]
    kept = 1 - (success["variance_reduction"] if settings.cuped else 0.0)
    try:
        required = stats.required_users_per_arm(
            b.mean_y,
            a.var_y * kept,
            b.var_y * kept,
            mde=settings.mde,
            alpha=1 - settings.level,
            power=settings.power,
        )
    except ValueError:
        required = None
    return decision.decide(
        srm_p=float(success["srm_p_value"]),
        srm_alpha=settings.srm_alpha,
        success=_comparison(success),
        success_verdict=success["verdict"],
        guardrails={g: headline.loc[g, "verdict"] for g in settings.guardrails},
        required_users_per_arm=required,
        users_per_arm=min(a.n, b.n),
    )


def cumulative_conversion(
    users_df: DataFrame, start: dt.date, sizes: Mapping[str, int]
) -> pd.DataFrame:
    """Per arm and day of the window, the share of the arm's users converted so far.

    Parameters
    ----------
    users_df : DataFrame
        One row per user: ``arm``, ``converted`` and ``converted_at`` (null without one).
    start : datetime.date
        The window's first day (day 0).
    sizes : Mapping of str to int
        Users per arm: the denominators.

    Returns
    -------
    pandas.DataFrame
        ``arm``, ``day``, ``conversions`` (that day) and ``cumulative_rate``, by arm and day;
        days without a conversion have no row.
    """
    day = F.datediff(F.to_date("converted_at"), F.lit(start))
    daily = (
        users_df.where(F.col("converted") > 0)
        .groupBy("arm", day.alias("day"))
        .agg(F.count(F.lit(1)).alias("conversions"))
        .toPandas()
    )
    daily = daily.sort_values(["arm", "day"])
    daily["cumulative_rate"] = daily.groupby("arm")["conversions"].cumsum() / daily["arm"].map(
        sizes
    )
    return daily


def check_population(population_df: DataFrame) -> tuple[int, int]:
    """(users logged in more than one arm, users without an outcome row)."""
    row = population_df.agg(
        F.sum((F.col("arms") > 1).cast("int")).alias("conflicting"),
        F.sum((F.col("has_outcome") == 0).cast("int")).alias("missing"),
        F.count(F.lit(1)).alias("users"),
    ).first()
    if not row["users"]:
        raise RecsysError("the experiment has no exposures: run simulate or load your logs")
    return int(row["conflicting"] or 0), int(row["missing"] or 0)
