"""The experiment's results as `analyze` wrote them: ``experiment_results`` (per market and
pooled, per metric, comparison and adjustment), ``experiment_policy_values`` (each policy's
conversion and revenue by estimator) and the decision report. Both tables are a few hundred
rows per experiment, so they are read whole into pandas.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.config import Config
from recsys.errors import RecsysError
from recsys.experiment.analysis import HEADLINE
from recsys.experiment.report_tables import DECISIONS
from recsys.notebooks.workspace import Markdown
from recsys.tables import read_table

DECISION_COLOURS = {
    "ship": "tab:green",
    "keep_baseline": "tab:red",
    "keep_testing": "tab:grey",
    "invalid": "black",
}


def adjustment(config: Config) -> str:
    """The estimate the decision rests on: ``cuped`` when analyze uses CUPED, else ``raw``."""
    return "cuped" if config.analyze.cuped else "raw"


def read_results(spark: SparkSession, config: Config) -> pd.DataFrame:
    """The ``experiment_results`` rows of the configured experiment."""
    return _read(spark, config, S.EXPERIMENT_RESULTS)


def read_policy_values(spark: SparkSession, config: Config) -> pd.DataFrame:
    """The ``experiment_policy_values`` rows of the configured experiment."""
    return _read(spark, config, S.EXPERIMENT_POLICY_VALUES)


def _read(spark: SparkSession, config: Config, name: str) -> pd.DataFrame:
    experiment = config.recommend.experiment.id
    frame = (
        read_table(spark, config, name)
        .where(F.col("experiment_id") == F.lit(experiment))
        .toPandas()
    )
    if frame.empty:
        raise RecsysError(
            f"{config.table(name)} has no rows for experiment {experiment!r}: run analyze"
        )
    return frame


def decision_report(config: Config) -> Markdown:
    """The decision report `analyze` wrote for the configured experiment."""
    path = Path(config.analyze.report_dir) / f"experiment-{config.recommend.experiment.id}.md"
    if not path.is_file():
        raise RecsysError(f"no decision report at {path.resolve()}: run analyze")
    return Markdown(path.read_text(encoding="utf-8"))


def _markets_first_pooled(frame: pd.DataFrame) -> pd.DataFrame:
    order = {S.POOLED: ""}  # sorts before every market code
    return frame.sort_values("market", key=lambda m: m.map(lambda x: order.get(x, x)))


def decisions(results: pd.DataFrame, success_metric: str, adjustment: str) -> pd.DataFrame:
    """One row per market (pooled ``ALL`` first): the decision and its reason, with the
    success metric's users per arm, sample-ratio test and the users per arm still needed."""
    rows = results[
        (results["metric"] == success_metric)
        & (results["comparison"] == HEADLINE)
        & (results["adjustment"] == adjustment)
    ]
    table = _markets_first_pooled(rows).assign(
        decision=lambda f: f["decision"].map(lambda d: DECISIONS.get(d, d))
    )
    columns = ["market", "decision", "decision_reason", "users_a", "users_b", "srm_p_value"]
    return table[[*columns, "is_valid", "required_users_per_arm"]].reset_index(drop=True)


def lifts(
    results: pd.DataFrame, metric: str, adjustment: str, comparison: str = HEADLINE
) -> pd.DataFrame:
    """Per market (pooled ``ALL`` first): the absolute and relative lift of ``metric`` in
    ``comparison`` with their intervals, p-values and the market's decision."""
    rows = results[
        (results["metric"] == metric)
        & (results["comparison"] == comparison)
        & (results["adjustment"] == adjustment)
    ]
    columns = ["market", "unit", "users_a", "users_b", "mean_a", "mean_b", "lift", "lift_low"]
    columns += ["lift_high", "rel_lift", "rel_low", "rel_high", "p_value", "p_adjusted"]
    return _markets_first_pooled(rows)[[*columns, "decision"]].reset_index(drop=True)


def guardrails(results: pd.DataFrame, adjustment: str) -> pd.DataFrame:
    """The pooled guardrails, treatment vs control: means, difference with its interval,
    the non-inferiority margin and the verdict."""
    rows = results[
        (results["market"] == S.POOLED)
        & (results["role"] == "guardrail")
        & (results["comparison"] == HEADLINE)
        & (results["adjustment"] == adjustment)
    ]
    columns = ["metric", "mean_a", "mean_b", "lift", "lift_low", "lift_high", "margin"]
    return rows[[*columns, "verdict"]].sort_values("metric").reset_index(drop=True)


def plot_lifts(results: pd.DataFrame, metrics: Sequence[str], adjustment: str) -> Figure:
    """One panel per metric: treatment vs control relative lift per market with its 95%
    interval (pooled ``ALL`` on top), coloured by the market's decision."""
    markets = list(_markets_first_pooled(results[["market"]].drop_duplicates())["market"])
    row_of = {market: len(markets) - 1 - i for i, market in enumerate(markets)}  # ALL on top
    figure = Figure(figsize=(6 * len(metrics), 1.5 + 0.4 * len(markets)), layout="constrained")
    panels = figure.subplots(1, len(metrics), squeeze=False, sharey=True)[0]
    for axes, metric in zip(panels, metrics, strict=True):
        table = lifts(results, metric, adjustment)
        for decision, colour in DECISION_COLOURS.items():
            mine = table[table["decision"] == decision]
            if mine.empty:
                continue
            relative = 100 * mine["rel_lift"].to_numpy()
            axes.errorbar(
                relative,
                mine["market"].map(row_of).to_numpy(),
                xerr=[
                    relative - 100 * mine["rel_low"].to_numpy(),
                    100 * mine["rel_high"].to_numpy() - relative,
                ],
                fmt="o",
                color=colour,
                capsize=3,
                label=DECISIONS[decision].lower(),
            )
        axes.axvline(0, color="black", linewidth=0.8)
        axes.set_xlabel(f"relative lift of {metric}, % (95% CI, {adjustment})")
        axes.set_title(f"{metric}: treatment vs control")
        axes.legend(loc="lower right", fontsize="small")
    panels[0].set_yticks(list(row_of.values()), list(row_of))
    return figure


def plot_policy_values(values: pd.DataFrame, metrics: Sequence[str]) -> Figure:
    """One panel per metric: each policy's value by estimator (measured in the test,
    off-policy from the exploration slice, the simulator's truth) with its interval."""
    pooled = values[values["market"] == S.POOLED]
    height = 1.5 + 0.35 * len(pooled) / max(len(metrics), 1)
    figure = Figure(figsize=(6 * len(metrics), height), layout="constrained")
    panels = figure.subplots(1, len(metrics), squeeze=False)[0]
    for axes, metric in zip(panels, metrics, strict=True):
        table = pooled[pooled["metric"] == metric].sort_values(["policy", "estimator"])
        scale = 100 if metric == "conversion" else 1
        y = list(range(len(table)))[::-1]
        value = table["value"].to_numpy()
        axes.errorbar(
            scale * value,
            y,
            xerr=[
                scale * (value - table["low"].to_numpy()),
                scale * (table["high"].to_numpy() - value),
            ],
            fmt="o",
            capsize=3,
        )
        axes.set_yticks(
            y, [f"{p} · {e}" for p, e in zip(table["policy"], table["estimator"], strict=True)]
        )
        unit = "% of users" if metric == "conversion" else "reference months per user"
        axes.set_xlabel(f"{metric}, {unit} (95% CI)")
        axes.set_title(f"{metric}, all markets")
    return figure
