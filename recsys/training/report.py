"""The training report: what a person reads to decide whether to trust the candidate.

Written as Markdown under ``train.report_dir`` and logged, with a per-market chart, to the
parent MLflow run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only; no display on a batch machine
import matplotlib.pyplot as plt
import mlflow
import pandas as pd

from recsys.config import Config, TrainConfig
from recsys.evaluation.metrics import MRR, metric_column
from recsys.evaluation.policy_value import POLICY_VALUE
from recsys.training.gate import Decision
from recsys.vocabulary import ALL

if TYPE_CHECKING:
    from recsys.training.trainer import FamilyResult


NO_INTERVALS = pd.DataFrame(columns=["mean", "low", "high", "n"])


@dataclass(frozen=True)
class Summary:
    path: Path
    headline: str


def interval_columns(settings: TrainConfig) -> list[str]:
    """The per-user ranking figures the holdout table shows with an interval, in its order."""
    k, ks = settings.gate.k, settings.ks
    return list(
        dict.fromkeys(
            [
                metric_column("ndcg", k),
                *(metric_column("hit_rate", n) for n in ks),
                MRR,
                *(metric_column(m, k) for m in ("precision", "recall", "map")),
            ]
        )
    )


def _holdout_table(
    results: dict[str, FamilyResult], config: Config, intervals: dict[str, pd.DataFrame]
) -> pd.DataFrame:
    settings = config.train
    gate = settings.gate.column
    rows = []
    for family, result in results.items():
        table, found = result.holdout.table, intervals.get(family, NO_INTERVALS)
        shown = [gate, *(c for c in found.index if c != gate)]
        rows.append(
            {
                "model": family,
                **{
                    f"{column} (95% CI)": _cell(found.loc[column])
                    for column in shown
                    if column in found.index
                },
                f"validation {gate}": round(result.chosen.pooled(gate), 4),
                f"{POLICY_VALUE}_snips": table.loc[ALL].get(f"{POLICY_VALUE}_snips"),
                f"{POLICY_VALUE}_served": table.loc[ALL].get(f"{POLICY_VALUE}_served"),
                metric_column("coverage", settings.gate.k): table.loc[ALL].get(
                    metric_column("coverage", settings.gate.k)
                ),
                "users": int(table.loc[ALL, "users"]),
                "trials": len(result.trials),
                "params": ", ".join(f"{p}={v}" for p, v in result.chosen.params.items())
                if family not in ("popularity", "ladder")
                else "",
            }
        )
    return pd.DataFrame(rows).dropna(axis="columns", how="all").round(4)


def _cell(row: pd.Series) -> str:
    return f"{row['mean']:.4f} [{row['low']:.4f}, {row['high']:.4f}]"


def _policy_note(results: dict[str, FamilyResult], config: Config) -> list[str]:
    """What the policy-value columns are, in words, when the holdout has logged impressions."""
    table = next(iter(results.values())).holdout.table
    if POLICY_VALUE not in table.columns:
        return []
    k, bias = config.train.gate.k, config.train.gate.position_bias
    return [
        f"`{POLICY_VALUE}` is the off-policy value of each model's top-{k} lists: conversions "
        f"per surface view if the list were shown (a user looks at rank r with probability "
        f"{', '.join(map(str, bias))} and takes at most one offer), replayed on the holdout's "
        f"{int(table.loc[ALL, 'policy_impressions']):,} logged impressions of "
        f"{int(table.loc[ALL, 'policy_users']):,} users. `{POLICY_VALUE}` is the doubly-robust "
        "estimate (the probabilities of a conversion model fitted on the window before, "
        "corrected by the logged outcomes), which also credits offers the logging policy "
        "never showed to such users, as far as that model generalises; `_ips` weights each "
        "logged acceptance by the list's chance of showing that offer over the logged "
        "propensity (no credit for unshown offers, and every look counted as if a user could "
        "take several offers); "
        "`_snips` is IPS normalised by its weights. The logging policy showed offers to some "
        "users more than others, so the logged users are not the users a list serves: "
        f"`_served` re-weights the DR values to the plans held by all users at the snapshot, per "
        "market (the rate a test that serves everyone measures; strata with no logged user, "
        f"{1 - table.loc[ALL].get('policy_served_coverage', 1.0):.1%} of users, are left out). "
        "The ranking metrics count the users who converted in the holdout.",
        "",
    ]


def _reliability(results: dict[str, FamilyResult]) -> list[str]:
    """Predicted against observed acceptance on the holdout's impressions, for the families
    whose probabilities are served as they are."""
    lines = []
    for family, result in results.items():
        found = result.holdout.reliability
        if found is None:
            continue
        deciles = found.by_decile.round(4).to_markdown(index=False)
        markets = found.by_market.round(4).to_markdown(index=False)
        lines += [
            f"## {family}: predicted against observed on the holdout",
            "",
            f"Its probability of acceptance for each of the holdout's {found.impressions:,} "
            f"logged impressions against whether the user took the offer: log loss "
            f"{found.log_loss:.4f}, Brier score {found.brier:.4f}. By decile of the prediction, "
            "then by market:",
            "",
            deciles,
            "",
            markets,
            "",
        ]
    return lines


def _chart(results: dict[str, FamilyResult], column: str, path: Path) -> None:
    frame = pd.DataFrame({f: r.holdout.table[column] for f, r in results.items()}).drop(
        index=ALL, errors="ignore"
    )
    axes = frame.plot.bar(figsize=(12, 5), width=0.8)
    axes.set_ylabel(f"{column} on the holdout")
    axes.set_xlabel("market")
    axes.set_title(f"{column} per market and model")
    axes.legend(loc="lower right", fontsize="small")
    plt.tight_layout()
    plt.savefig(path, dpi=100)
    plt.close()


def write(
    config: Config,
    run_id: str,
    results: dict[str, FamilyResult],
    best: FamilyResult,
    comparisons: pd.DataFrame | None,
    by_market: pd.DataFrame | None,
    decision: Decision,
    version: str,
    searched_on: str,
    examples: str = "",
    against: pd.DataFrame | None = None,
    chosen_because: str = "best on the validation window",
    intervals: dict[str, pd.DataFrame] | None = None,
) -> Summary:
    settings = config.train
    column = settings.gate.column
    snapshot = config.interactions.snapshot_date
    folder = Path(settings.report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"train-{snapshot}.md"
    chart = folder / f"train-{snapshot}-{column}.png"
    _chart(results, column, chart)

    holdout = _holdout_table(results, config, intervals or {})
    verdict = "promoted to `champion`" if decision.promote else "kept as `challenger`"
    lines = [
        f"# Training report, snapshot {snapshot}",
        "",
        f"MLflow run `{run_id}`. Candidate: **{best.family}** ({chosen_because}), "
        f"registered as `{settings.registered_model}` v{version} and {verdict}.",
        "",
        "Hyperparameters and the candidate were chosen on the validation window; the holdout "
        f"({config.interactions.holdout_days} days before the snapshot) was used only for "
        "the figures below and the gate. Users are those who converted in the holdout to an "
        "offer they were eligible for; every model ranks the same eligible offers.",
        "",
        *([f"The conversion model learned from {examples}.", ""] if examples else []),
        "## Models on the holdout (all markets pooled)",
        "",
        holdout.to_markdown(index=False),
        "",
        *_policy_note(results, config),
        *_reliability(results),
        "## Gate",
        "",
    ]
    lines += [
        f"Paired over the same users, 95% bootstrap intervals; promotion needs every lower "
        f"bound above the margin ({settings.gate.margin}) and above "
        f"{settings.gate.min_relative_gain:.0%} of the opponent's figure. Decision: {verdict}.",
        "",
    ]
    lines += [f"- {reason}" for reason in decision.reasons]
    if by_market is not None:
        frame = by_market.sort_values("market")
        losing = frame[frame["low"] <= 0]["market"].tolist()
        lines += [
            "",
            f"## {best.family} against popularity, market by market",
            "",
            f"Difference in {column}, paired over the market's users, with a 95% bootstrap "
            "interval. Markets where the interval does not exclude zero (or is below it): "
            + (", ".join(losing) if losing else "none")
            + ".",
            "",
            frame.assign(
                better=frame["low"] > 0,
                mean=frame["mean"].round(4),
                low=frame["low"].round(4),
                high=frame["high"].round(4),
            )[["market", "mean", "low", "high", "n", "better"]]
            .rename(columns={"n": "users"})
            .to_markdown(index=False),
        ]
    lines += _against(best.family, against, results)
    lines += [
        "",
        "## Search (validation window)",
        "",
        f"Every family's trials were fitted and scored on {searched_on}; the chosen "
        "parameters were refitted on every user for the holdout.",
        "",
    ]
    trial_rows = [
        {
            "model": family,
            "trial": number,
            f"validation {column}": round(trial.pooled(column), 4),
            "chosen": trial is result.chosen,
            "params": ", ".join(f"{p}={v}" for p, v in trial.params.items()),
        }
        for family, result in results.items()
        for number, trial in enumerate(result.trials, start=1)
        if family not in ("popularity", "ladder")
    ]
    lines.append(pd.DataFrame(trial_rows).to_markdown(index=False) if trial_rows else "none")
    lines += ["", f"![{column} per market]({chart.name})", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    mlflow.log_artifact(str(path))
    mlflow.log_artifact(str(chart))
    if comparisons is not None:
        mlflow.log_table(comparisons, "gate_comparisons.json")
    if intervals:
        table = pd.concat(intervals, names=["family", "figure"]).reset_index()
        mlflow.log_table(table, "holdout_intervals.json")
    headline = holdout[["model", f"{column} (95% CI)", f"validation {column}", "users"]].to_string(
        index=False
    )
    return Summary(path, headline)


def _against(
    family: str, against: pd.DataFrame | None, results: dict[str, FamilyResult]
) -> list[str]:
    """The candidate against every other family: paired differences with intervals."""
    if against is None or against.empty:
        return []
    cell = against.assign(
        text=[
            f"{m:+.4f} [{lo:+.4f}, {hi:+.4f}]"
            for m, lo, hi in zip(against["mean"], against["low"], against["high"], strict=True)
        ]
    )
    table = cell.pivot(index="opponent", columns="metric", values="text")
    order = [f for f in results if f in table.index]
    metrics = list(dict.fromkeys(against["metric"]))
    return [
        "",
        f"## {family} against every family",
        "",
        f"{family}'s figure minus the family's on the holdout, paired over the same "
        f"{int(against['n'].max()):,} users, with 95% bootstrap intervals. Only the gate's "
        "comparisons decide promotion; these say by how much it leads or trails each family.",
        "",
        table.loc[order, metrics]
        .rename_axis(f"{family} minus")
        .reset_index()
        .to_markdown(index=False),
    ]
