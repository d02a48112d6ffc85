"""The decision report: what a product manager reads to decide whether the model's lists
should replace the baseline. Markdown with two charts, written under ``analyze.report_dir``
and logged to the analyze run. Every figure in it comes from the ``experiment_results`` and
``experiment_policy_values`` rows written by the same run.
"""

from __future__ import annotations

import datetime as dt
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
from recsys.experiment.policy_values import ORACLE
from recsys.experiment.report_tables import (
    DECISIONS,
    NEAR_ZERO,
    amount,
    arms_table,
    comparison_row,
    guardrails_table,
    lift_text,
    lifts_table,
    markets_table,
    p_value,
    pct,
    rel,
    value_row,
    values_table,
)
from recsys.vocabulary import CONTROL, TREATMENT

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


ESTIMATORS = (
    "Policies: `treatment` and `control` are the arms as served; `oracle` is every user's best "
    "list by their true probabilities (the simulator only); `treatment_greedy` is the model's "
    "own lists without the exploration slice. Estimators: `ab_measured` is what the test "
    "measured; `truth` the simulator's expected value of the lists shown (no sampling noise, "
    "the simulator only); `ips` and `dr` estimate the greedy lists' value from the "
    "exploration slice's logged propensities (inverse propensity, doubly robust)."
)


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
    success = comparison_row(pooled, settings.success_metric, HEADLINE, adjustment)
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
        arms_table(pooled).to_markdown(index=False),
        "",
        f"Sample-ratio test against the configured split: p = "
        f"{p_value(decision_row.srm_p_value)}"
        + (" (valid)." if decision_row.is_valid else " (**mismatch: results invalid**)."),
        "",
        "### Lifts",
        "",
        lifts_table(pooled).to_markdown(index=False),
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
        guardrails_table(pooled, adjustment).to_markdown(index=False),
        "",
    ]
    if share:
        lines += [
            "## Share of the oracle's lift",
            "",
            *share,
            "",
            values_table(values),
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
        markets_table(results, settings, adjustment).to_markdown(index=False),
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


def _oracle_share(values: pd.DataFrame) -> list[str]:
    """The treatment's lift over control as a share of the oracle's, from the simulator's
    expected values (no sampling noise in the outcome draws)."""
    lines = []
    for metric in ("conversion", "revenue"):
        t, c, o = (value_row(values, p, metric, "truth") for p in (TREATMENT, CONTROL, ORACLE))
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


def _ope_lines(values: pd.DataFrame) -> list[str]:
    measured = value_row(values, "treatment_greedy", "conversion", "ab_measured")
    lines = []
    for estimator, name in (("ips", "inverse-propensity"), ("dr", "doubly-robust")):
        v = value_row(values, "treatment_greedy", "conversion", estimator)
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
