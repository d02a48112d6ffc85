"""The decision report's tables, and how its figures are written: rates in percent, lifts in
points or money, money with its currency, p-values, and relative lifts only where the base
rate gives them a meaning. Every table is built from the ``experiment_results`` and
``experiment_policy_values`` rows (pandas, one row per figure)."""

from __future__ import annotations

import math

import pandas as pd

from recsys.config import AnalyzeConfig
from recsys.experiment.analysis import HEADLINE
from recsys.vocabulary import ARMS, CONTROL, TREATMENT

DECISIONS = {
    "ship": "SHIP",
    "keep_baseline": "KEEP THE BASELINE",
    "keep_testing": "KEEP TESTING",
    "invalid": "INVALID TEST",
}


def pct(x: float) -> str:
    return "n/a" if _missing(x) else f"{100 * x:.2f}%"


def points(x: float) -> str:
    return "n/a" if _missing(x) else f"{100 * x:+.2f} pp"


def rel(x: float) -> str:
    return "n/a" if _missing(x) else f"{100 * x:+.1f}%"


# A relative lift beyond this many times the base is a ratio over a near-zero base rate.
_MEANINGFUL_RATIO = 10.0
NEAR_ZERO = "not shown"


def rel_interval(row) -> str:
    """The relative lift with its interval, or :data:`NEAR_ZERO` where the base is so small
    that the ratio says nothing (thousands of percent)."""
    if _missing(row.rel_lift) or abs(row.rel_lift) > _MEANINGFUL_RATIO:
        return NEAR_ZERO
    return f"{rel(row.rel_lift)} [{rel(row.rel_low)}, {rel(row.rel_high)}]"


def amount(x: float) -> str:
    return "n/a" if _missing(x) else f"{x:,.3f}"


def signed(x: float) -> str:
    return "n/a" if _missing(x) else f"{x:+,.3f}"


def p_value(p: float) -> str:
    if _missing(p):
        return "n/a"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def lift_text(row) -> str:
    """A lift with its interval, in points for rates and in the metric's unit for money."""
    if row.metric == "revenue":
        return f"{signed(row.lift)} [{signed(row.lift_low)}, {signed(row.lift_high)}]"
    return f"{points(row.lift)} [{points(row.lift_low)}, {points(row.lift_high)}]"


def mean_text(row, value: float) -> str:
    return amount(value) if row.metric == "revenue" else pct(value)


def comparison_row(frame: pd.DataFrame, metric: str, comparison: str, adjustment: str):
    """The one ``experiment_results`` row of a metric, comparison and adjustment.

    Parameters
    ----------
    frame : pandas.DataFrame
        ``experiment_results`` rows of one market (or the pooled rows).
    metric, comparison, adjustment : str
        E.g. ``"revenue"``, ``"treatment_vs_control"``, ``"cuped"``.

    Returns
    -------
    pandas.Series
        The row; ``IndexError`` if there is none.
    """
    return frame[
        (frame["metric"] == metric)
        & (frame["comparison"] == comparison)
        & (frame["adjustment"] == adjustment)
    ].iloc[0]


def arms_table(pooled: pd.DataFrame) -> pd.DataFrame:
    """Users, conversions, conversion rate and revenue per user of each arm, formatted.

    Parameters
    ----------
    pooled : pandas.DataFrame
        The pooled (``market == ALL``) rows of ``experiment_results``: one per comparison,
        metric and adjustment.

    Returns
    -------
    pandas.DataFrame
        One row per arm (treatment, control, holdout), cells as text.
    """
    raw = pooled[pooled["adjustment"] == "raw"]
    conversion = raw[raw["metric"] == "conversion"]
    revenue = raw[raw["metric"] == "revenue"]
    arms = {}
    for frame, column in ((conversion, "conversion rate"), (revenue, "revenue per user")):
        for r in frame.itertuples():
            first, second = r.comparison.split("_vs_")
            for arm, n, mean in ((first, r.users_a, r.mean_a), (second, r.users_b, r.mean_b)):
                entry = arms.setdefault(arm, {"arm": arm, "users": f"{n:,}"})
                entry[column] = mean_text(r, mean)
                if column == "conversion rate":
                    entry["conversions"] = f"{round(mean * n):,}"
    order = [a for a in ARMS if a in arms]
    columns = ["arm", "users", "conversions", "conversion rate", "revenue per user"]
    return pd.DataFrame([arms[a] for a in order])[columns]


def lifts_table(pooled: pd.DataFrame) -> pd.DataFrame:
    """Raw and CUPED lifts of conversion and revenue for every comparison, formatted.

    Parameters
    ----------
    pooled : pandas.DataFrame
        The pooled (``market == ALL``) rows of ``experiment_results``: one per comparison,
        metric and adjustment.

    Returns
    -------
    pandas.DataFrame
        One row per (metric, comparison): lifts with intervals, the relative lift where it
        means something (:func:`rel_interval`), p-values and CUPED's variance reduction.
    """
    rows = []
    for metric in ("conversion", "revenue"):
        for comparison in ("treatment_vs_control", "treatment_vs_holdout", "control_vs_holdout"):
            raw = pooled[
                (pooled["metric"] == metric)
                & (pooled["comparison"] == comparison)
                & (pooled["adjustment"] == "raw")
            ]
            if raw.empty:
                continue
            raw = raw.iloc[0]
            cuped = comparison_row(pooled, metric, comparison, "cuped")
            rows.append(
                {
                    "metric": metric,
                    "comparison": comparison.replace("_", " "),
                    "lift (raw, 95% CI)": lift_text(raw),
                    "relative (raw)": rel_interval(raw),
                    "p (raw)": p_value(raw.p_value),
                    "lift (CUPED, 95% CI)": lift_text(cuped),
                    "p (CUPED)": p_value(cuped.p_value),
                    "variance reduction": pct(cuped.variance_reduction),
                }
            )
    return pd.DataFrame(rows)


def guardrails_table(pooled: pd.DataFrame, adjustment: str) -> pd.DataFrame:
    """Each guardrail's treatment and control rates, difference, margin and verdict.

    Parameters
    ----------
    pooled : pandas.DataFrame
        The pooled (``market == ALL``) rows of ``experiment_results``: one per comparison,
        metric and adjustment.
    adjustment : str
        ``"raw"`` or ``"cuped"``: which estimate the verdicts read.

    Returns
    -------
    pandas.DataFrame
        One row per guardrail metric of treatment vs control, cells as text.
    """
    rows = []
    for r in pooled[
        (pooled["role"] == "guardrail")
        & (pooled["comparison"] == HEADLINE)
        & (pooled["adjustment"] == adjustment)
    ].itertuples():
        rows.append(
            {
                "guardrail": r.metric,
                TREATMENT: pct(r.mean_a),
                CONTROL: pct(r.mean_b),
                "difference (95% CI)": lift_text(r),
                "margin": points(r.margin),
                "verdict": r.verdict.replace("_", " "),
            }
        )
    return pd.DataFrame(rows)


def markets_table(results: pd.DataFrame, settings: AnalyzeConfig, adjustment: str) -> pd.DataFrame:
    """The success metric per market, treatment vs control, with each market's decision.

    Parameters
    ----------
    results : pandas.DataFrame
        All ``experiment_results`` rows, every market and the pool.
    settings : AnalyzeConfig
        ``analyze``: names the success metric.
    adjustment : str
        ``"raw"`` or ``"cuped"``.

    Returns
    -------
    pandas.DataFrame
        One row per market (and the pool): users, SRM p, means and lift with money in the
        market's currency, BH-adjusted p, the decision and the users per arm a verdict needs.
    """
    rows = []
    success = results[
        (results["metric"] == settings.success_metric)
        & (results["comparison"] == HEADLINE)
        & (results["adjustment"] == adjustment)
    ]
    for r in success.itertuples():
        rows.append(
            {
                "market": r.market,
                "users T / C": f"{r.users_a:,} / {r.users_b:,}",
                "SRM p": p_value(r.srm_p_value),
                f"{r.metric} T ({adjustment})": _in_unit(r, mean_text(r, r.mean_a)),
                f"{r.metric} C ({adjustment})": _in_unit(r, mean_text(r, r.mean_b)),
                f"lift ({adjustment}, 95% CI)": _in_unit(r, lift_text(r)),
                "relative": rel(r.rel_lift),
                "p (BH-adjusted)": p_value(r.p_adjusted),
                "decision": DECISIONS[r.decision],
                "users per arm needed": ""
                if _missing(r.required_users_per_arm)
                else f"{int(r.required_users_per_arm):,}",
            }
        )
    return pd.DataFrame(rows)


def _in_unit(row, text: str) -> str:
    """Money with its currency (or the pooled unit); rates as they are."""
    return f"{text} {row.unit}" if row.metric == "revenue" else text


def value_row(values: pd.DataFrame, policy: str, metric: str, estimator: str):
    """One ``experiment_policy_values`` row, or None where that estimate was not made.

    Parameters
    ----------
    values : pandas.DataFrame
        ``experiment_policy_values`` rows (:func:`recsys.experiment.policy_values.policy_values`).
    policy, metric, estimator : str
        E.g. ``"treatment_greedy"``, ``"conversion"``, ``"ips"``.

    Returns
    -------
    pandas.Series or None
    """
    found = values[
        (values["policy"] == policy)
        & (values["metric"] == metric)
        & (values["estimator"] == estimator)
    ]
    return None if found.empty else found.iloc[0]


def values_table(values: pd.DataFrame) -> str:
    """The policy values as a Markdown table: rates in percent, revenue as amounts.

    Parameters
    ----------
    values : pandas.DataFrame
        ``experiment_policy_values`` rows.

    Returns
    -------
    str
        Markdown: policy, metric, estimator, users, value and its interval.
    """
    frame = values.copy()
    is_rate = frame["metric"] == "conversion"
    frame["value"] = [
        pct(v) if rate else amount(v) for v, rate in zip(values["value"], is_rate, strict=True)
    ]
    frame["95% CI"] = [
        f"[{pct(lo)}, {pct(hi)}]" if rate else f"[{amount(lo)}, {amount(hi)}]"
        for lo, hi, rate in zip(values["low"], values["high"], is_rate, strict=True)
    ]
    return frame[["policy", "metric", "estimator", "users", "value", "95% CI"]].to_markdown(
        index=False
    )
