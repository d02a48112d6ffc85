"""The decision report: what a product manager reads to decide whether the model's lists
should replace the baseline. Markdown with two charts, written under ``analyze.report_dir``
and logged to the analyze run. Every figure in it comes from the ``experiment_results`` and
``experiment_policy_values`` rows written by the same run.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on a batch machine
import matplotlib.pyplot as plt
import pandas as pd

from recsys import schemas as S
from recsys.config import AnalyzeConfig
from recsys.experiment.analysis import HEADLINE, REFERENCE_UNIT

DECISIONS = {
    "ship": "SHIP",
    "keep_baseline": "KEEP THE BASELINE",
    "keep_testing": "KEEP TESTING",
    "invalid": "INVALID TEST",
}
RULE = (
    "Ship only if the success metric ({metric}) improves significantly over control "
    "(two-sided {level:.0%} interval; p-values across markets adjusted by Benjamini-Hochberg) "
    "and every guardrail is shown non-inferior (the upper end of its interval below its "
    "margin). Keep the baseline if the success metric is significantly worse or a guardrail "
    "is worse by more than its margin. Otherwise keep testing while the test is too small to "
    "see a {mde:.0%} lift, else keep the baseline. A sample-ratio mismatch (p < {srm:g}) makes "
    "the result invalid."
)


@dataclass(frozen=True)
class Written:
    path: Path
    files: list[Path]
    headline: list[str]


def pct(x: float) -> str:
    return "n/a" if _missing(x) else f"{100 * x:.2f}%"


def points(x: float) -> str:
    return "n/a" if _missing(x) else f"{100 * x:+.2f} pp"


def rel(x: float) -> str:
    return "n/a" if _missing(x) else f"{100 * x:+.1f}%"


# A relative lift beyond this many times the base is a ratio over a near-zero base rate.
_MEANINGFUL_RATIO = 10.0
NEAR_ZERO = "not shown"
ESTIMATORS = (
    "Policies: `treatment` and `control` are the arms as served; `oracle` is every user's best "
    "list by their true probabilities (the simulator only); `treatment_greedy` is the model's "
    "own lists without the exploration slice. Estimators: `ab_measured` is what the test "
    "measured; `truth` the simulator's expected value of the lists shown (no sampling noise, "
    "the simulator only); `ips` and `dr` estimate the greedy lists' value from the "
    "exploration slice's logged propensities (inverse propensity, doubly robust)."
)


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


def write(
    folder: Path,
    *,
    experiment: str,
    model: str,
    family: str | None,
    baseline: str,
    snapshot: dt.date,
    results: pd.DataFrame,
    values: pd.DataFrame,
    curve: pd.DataFrame,
    settings: AnalyzeConfig,
    shares: Mapping[str, float],
    caveats: list[str],
) -> Written:
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"experiment-{experiment}"
    lift_png, curve_png = folder / f"{stem}-lift.png", folder / f"{stem}-conversion.png"
    adjustment = "cuped" if settings.cuped else "raw"
    pooled = results[results["market"] == S.POOLED]
    decision_row = pooled.iloc[0]
    success = _one(pooled, settings.success_metric, HEADLINE, adjustment)
    headline = [
        f"decision: {DECISIONS[decision_row.decision]}: {decision_row.decision_reason}",
        f"{settings.success_metric} treatment vs control ({adjustment}): "
        f"{lift_text(success)}, relative {rel(success.rel_lift)}",
    ]
    share = _oracle_share(values)
    if share:
        headline.append(share[0])

    lines = [
        f"# Experiment `{experiment}`: {DECISIONS[decision_row.decision]}",
        "",
        f"**{decision_row.decision_reason}**",
        "",
        f"Success metric: **{settings.success_metric}** per user, treatment against control. "
        f"Model under test: `{model}`"
        + (f" (the {family} family)" if family else "")
        + f" in the treatment arm, against the {baseline} baseline's lists (control arm) and "
        f"no offer (holdout), lists of snapshot {snapshot}. Arms by hash of user_id: "
        + ", ".join(f"{arm} {s:.0%}" for arm, s in shares.items())
        + f". Revenue pooled over markets is in months of each market's "
        f"`{settings.reference_offer}` price ({REFERENCE_UNIT}); per market, in local currency.",
        "",
        "## Decision rule",
        "",
        RULE.format(
            metric=settings.success_metric,
            level=settings.level,
            mde=settings.mde,
            srm=settings.srm_alpha,
        ),
        "",
        "## All markets",
        "",
        _arms_table(pooled).to_markdown(index=False),
        "",
        f"Sample-ratio test against the configured split: p = "
        f"{p_value(decision_row.srm_p_value)}"
        + (" (valid)." if decision_row.is_valid else " (**mismatch: results invalid**)."),
        "",
        "### Lifts",
        "",
        _lifts_table(pooled).to_markdown(index=False),
        "",
        "A relative lift is shown only where the base rate is large enough for it to mean "
        f"something ({NEAR_ZERO}: a lift over the holdout's near-zero conversion rate); read "
        "the absolute lift there.",
        "",
        "CUPED adjusts each user's metric by a pre-period covariate (revenue: revenue in the "
        "weeks before; other metrics: behaviour volume); `variance reduction` is how much "
        "narrower the interval's variance became. Same estimand, same unbiasedness.",
        "",
        "### Guardrails (treatment vs control)",
        "",
        _guardrails_table(pooled, adjustment).to_markdown(index=False),
        "",
    ]
    if share:
        lines += [
            "## Share of the oracle's lift",
            "",
            *share,
            "",
            _values_table(values),
            "",
            ESTIMATORS,
            "",
        ]
    ope = _ope_lines(values)
    if ope:
        lines += ["## Off-policy estimate (before the test) against the test", "", *ope, ""]
    lines += [
        "## Per market",
        "",
        _markets_table(results, settings, adjustment).to_markdown(index=False),
        "",
        "Revenue per market is in the market's own currency. `p (BH-adjusted)`: the p-values "
        "are adjusted across markets (Benjamini-Hochberg), so that testing many markets does "
        "not make chance wins look real; a market whose interval lies wholly on one side of "
        "zero still reads KEEP TESTING when its adjusted p is above "
        f"{1 - settings.level:g}.",
        "",
        f"![lift per market]({lift_png.name})",
        "",
        f"![cumulative conversion]({curve_png.name})",
        "",
    ]
    if caveats:
        lines += ["## Caveats", "", *[f"- {c}" for c in caveats], ""]
    path = folder / f"{stem}.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    _lift_chart(results, settings, adjustment, lift_png)
    _curve_chart(curve, curve_png)
    return Written(path=path, files=[path, lift_png, curve_png], headline=headline)


def _one(frame: pd.DataFrame, metric: str, comparison: str, adjustment: str):
    return frame[
        (frame["metric"] == metric)
        & (frame["comparison"] == comparison)
        & (frame["adjustment"] == adjustment)
    ].iloc[0]


def _arms_table(pooled: pd.DataFrame) -> pd.DataFrame:
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
    order = [a for a in ("treatment", "control", "holdout") if a in arms]
    columns = ["arm", "users", "conversions", "conversion rate", "revenue per user"]
    return pd.DataFrame([arms[a] for a in order])[columns]


def _lifts_table(pooled: pd.DataFrame) -> pd.DataFrame:
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
            cuped = _one(pooled, metric, comparison, "cuped")
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


def _guardrails_table(pooled: pd.DataFrame, adjustment: str) -> pd.DataFrame:
    rows = []
    for r in pooled[
        (pooled["role"] == "guardrail")
        & (pooled["comparison"] == HEADLINE)
        & (pooled["adjustment"] == adjustment)
    ].itertuples():
        rows.append(
            {
                "guardrail": r.metric,
                "treatment": pct(r.mean_a),
                "control": pct(r.mean_b),
                "difference (95% CI)": lift_text(r),
                "margin": points(r.margin),
                "verdict": r.verdict.replace("_", " "),
            }
        )
    return pd.DataFrame(rows)


def _markets_table(results: pd.DataFrame, settings: AnalyzeConfig, adjustment: str):
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


def _value(values: pd.DataFrame, policy: str, metric: str, estimator: str):
    found = values[
        (values["policy"] == policy)
        & (values["metric"] == metric)
        & (values["estimator"] == estimator)
    ]
    return None if found.empty else found.iloc[0]


def _oracle_share(values: pd.DataFrame) -> list[str]:
    """The treatment's lift over control as a share of the oracle's, from the simulator's
    expected values (no sampling noise in the outcome draws)."""
    lines = []
    for metric in ("conversion", "revenue"):
        t, c, o = (_value(values, p, metric, "truth") for p in ("treatment", "control", "oracle"))
        if t is None or c is None or o is None or o.value == c.value:
            continue
        share = (t.value - c.value) / (o.value - c.value)
        fmt = pct if metric == "conversion" else amount
        lines.append(
            f"The treatment captured {share:.1%} of the oracle's {metric} lift over control "
            f"(expected {metric}: treatment {fmt(t.value)}, control {fmt(c.value)}, oracle "
            f"{fmt(o.value)} with the users' true probabilities)."
            + (
                " A negative share: the treatment's lists did worse than control's."
                if share < 0
                else ""
            )
        )
    return lines


def _values_table(values: pd.DataFrame) -> str:
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


def _ope_lines(values: pd.DataFrame) -> list[str]:
    measured = _value(values, "treatment_greedy", "conversion", "ab_measured")
    lines = []
    for estimator, name in (("ips", "inverse-propensity"), ("dr", "doubly-robust")):
        v = _value(values, "treatment_greedy", "conversion", estimator)
        if v is None or measured is None:
            continue
        lines.append(
            f"- {name} ({estimator.upper()}) from the exploration slice's {v.users:,} users: "
            f"{pct(v.value)} [{pct(v.low)}, {pct(v.high)}]"
        )
    if lines:
        lines.append(
            f"- measured in the test on the {measured.users:,} treatment users who saw the "
            f"model's own lists: {pct(measured.value)} [{pct(measured.low)}, "
            f"{pct(measured.high)}]"
        )
    return lines


def _lift_chart(results: pd.DataFrame, settings: AnalyzeConfig, adjustment: str, path: Path):
    rows = results[
        (results["metric"] == settings.success_metric)
        & (results["comparison"] == HEADLINE)
        & (results["adjustment"] == adjustment)
    ]
    figure, axes = plt.subplots(figsize=(10, 5))
    x = range(len(rows))
    relative = rows["rel_lift"] * 100
    errors = [relative - rows["rel_low"] * 100, rows["rel_high"] * 100 - relative]
    colours = ["tab:green" if d == "ship" else "tab:grey" for d in rows["decision"]]
    axes.bar(x, relative, yerr=errors, color=colours, capsize=4)
    axes.axhline(0, color="black", linewidth=0.8)
    axes.set_xticks(list(x), rows["market"])
    axes.set_ylabel(f"relative lift of {settings.success_metric}, % (95% CI)")
    axes.set_title(f"Treatment vs control per market ({adjustment}); green: ship")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _curve_chart(curve: pd.DataFrame, path: Path) -> None:
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for arm, frame in curve.groupby("arm"):
        axes.step(frame["day"], frame["cumulative_rate"] * 100, where="post", label=arm)
    axes.set_xlabel("day of the test")
    axes.set_ylabel("users converted so far, %")
    axes.set_title("Cumulative conversion by arm")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
