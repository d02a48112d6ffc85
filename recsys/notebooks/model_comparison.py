"""The models of a `train` run side by side, market by market, and the registry's aliases.

A `train` run (see :mod:`recsys.training.job`) is a parent run tagged ``recsys.step=train``
with one nested run per model family (tag ``recsys.family``), whose metrics are named
``ndcg_at_3`` (pooled over markets) and ``ndcg_at_3/SE`` (one market) on the holdout, with
``val_`` for the validation window and ``<gate column>_ci_low``/``_ci_high`` for the gate
metric's interval. The registered versions carry the family and train run that made them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from recsys.config import GateConfig
from recsys.errors import RecsysError
from recsys.evaluation.metrics import metric_column
from recsys.models import BASELINES, FAMILIES
from recsys.vocabulary import ALL

TRAIN_STEP = "train"


def latest_train_run(client: MlflowClient, experiment: str) -> Run:
    """The newest finished `train` parent run of MLflow experiment ``experiment``."""
    found = client.get_experiment_by_name(experiment)
    runs = (
        client.search_runs(
            [found.experiment_id],
            filter_string=f"tags.`recsys.step` = '{TRAIN_STEP}' AND attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if found is not None
        else []
    )
    if not runs:
        raise RecsysError(f"no finished train run in MLflow experiment {experiment!r}: run train")
    return runs[0]


def gate_of(run: Run) -> GateConfig:
    """The gate a `train` run decided with (its ``metric: auto`` resolved), from its params."""
    return GateConfig.model_validate(json.loads(run.data.params["gate"]))


def family_runs(client: MlflowClient, parent: Run) -> dict[str, Run]:
    """family -> its nested run under ``parent`` (trial runs nest one level further down)."""
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
    )
    by_family = {r.data.tags["recsys.family"]: r for r in runs if "recsys.family" in r.data.tags}
    return {f: by_family[f] for f in ordered(by_family)}


def describe(run: Run) -> pd.Series:
    """What a `train` run decided: its snapshot, candidate, registered version, promotion."""
    tags, params = run.data.tags, run.data.params
    return pd.Series(
        {
            "run": run.info.run_name,
            "run_id": run.info.run_id,
            "started": pd.Timestamp(run.info.start_time, unit="ms", tz="UTC"),
            "snapshot_date": params.get("snapshot_date"),
            "candidate": tags.get("recsys.candidate"),
            "registered_version": tags.get("recsys.registered_version"),
            "promoted": tags.get("recsys.promoted"),
            "git_commit": tags.get("mlflow.source.git.commit"),
        }
    )


def family_metrics(runs: Mapping[str, Run]) -> dict[str, dict[str, float]]:
    """family -> the metrics its run logged (see the module docstring for their names)."""
    return {family: dict(run.data.metrics) for family, run in runs.items()}


def ordered(families: Sequence[str] | Mapping[str, Any]) -> list[str]:
    """Families in the order of :data:`recsys.models.FAMILIES` (baselines first)."""
    known = list(FAMILIES)
    return sorted(families, key=lambda f: (known.index(f) if f in known else len(known), f))


def metrics_by_market(
    metrics: Mapping[str, Mapping[str, float]], names: Sequence[str]
) -> pd.DataFrame:
    """Long table (family, market, metric, value) of the metrics ``names`` of each family.

    ``metrics``: family -> its run's metrics as MLflow returns them (``ndcg_at_3`` pooled,
    ``ndcg_at_3/SE`` per market). The pooled figure's market is ``all``.
    """
    rows = []
    for family, logged in metrics.items():
        for key, value in logged.items():
            name, _, market = key.partition("/")
            if name in names:
                rows.append((family, market or ALL, name, float(value)))
    frame = pd.DataFrame(rows, columns=["family", "market", "metric", "value"])
    return frame.sort_values(["metric", "market", "family"], ignore_index=True)


def by_market_table(long: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Markets (``all`` first) x families of one metric of :func:`metrics_by_market`."""
    table = long[long["metric"] == metric].pivot(index="market", columns="family", values="value")
    markets = [ALL, *sorted(m for m in table.index if m != ALL)]
    return table.reindex(index=[m for m in markets if m in table.index], columns=ordered(table))


def summary_table(metrics: Mapping[str, Mapping[str, float]], gate: GateConfig) -> pd.DataFrame:
    """One row per family: the gate metric on the holdout with its 95% interval, on
    validation, and the other @k figures of the gate's k, pooled over markets."""
    gate_column, k = gate.column, gate.k
    rows = []
    for family in ordered(metrics):
        logged = metrics[family]
        rows.append(
            {
                "family": family,
                "baseline": family in BASELINES,
                gate_column: logged.get(gate_column),
                "ci_low": logged.get(f"{gate_column}_ci_low"),
                "ci_high": logged.get(f"{gate_column}_ci_high"),
                f"validation {gate_column}": logged.get(f"val_{gate_column}"),
                **{
                    metric_column(m, k): logged.get(metric_column(m, k))
                    for m in ("ndcg", "hit_rate", "precision", "recall", "map", "coverage")
                    if metric_column(m, k) != gate_column
                },
                "users": logged.get("users"),
                "fit_seconds": logged.get("fit_seconds"),
            }
        )
    return pd.DataFrame(rows)


def aliases(client: MlflowClient, name: str) -> dict[str, Any]:
    """alias -> model version of registered model ``name`` (``champion``, ``challenger``,
    ``interim``)."""
    try:
        model = client.get_registered_model(name)
    except MlflowException:
        raise RecsysError(f"no registered model {name!r}: run train") from None
    return {
        alias: client.get_model_version(name, str(version))
        for alias, version in sorted(model.aliases.items())
    }


def registry_table(versions: Mapping[str, Any], gate_column: str) -> pd.DataFrame:
    """One row per alias: the version behind it, its family, snapshot, holdout gate figure,
    whether the gate promoted it, the gate's reasons, and the train run that made it.

    ``versions``: alias -> an MLflow ``ModelVersion`` (``version``, ``tags``)."""
    rows = []
    for alias, version in versions.items():
        tags = version.tags
        rows.append(
            {
                "alias": alias,
                "version": str(version.version),
                "family": tags.get("recsys.family"),
                "snapshot_date": tags.get("recsys.snapshot_date"),
                f"holdout {gate_column}": tags.get(f"recsys.holdout_{gate_column}"),
                "promoted": tags.get("recsys.promoted"),
                "gate": tags.get("recsys.gate"),
                "train_run_id": tags.get("recsys.train_run_id"),
            }
        )
    columns = ["alias", "version", "family", "snapshot_date", f"holdout {gate_column}"]
    return pd.DataFrame(rows, columns=[*columns, "promoted", "gate", "train_run_id"])


def roles(registry: pd.DataFrame, runs: Mapping[str, Run]) -> dict[str, str]:
    """family -> e.g. ``champion v3`` for the families whose run in ``runs`` (family -> its
    run of one `train`, :func:`family_runs`) made a version that holds an alias."""
    found: dict[str, list[str]] = {}
    for row in registry.itertuples():
        for family, run in runs.items():
            if row.train_run_id == run.info.run_id:
                found.setdefault(family, []).append(f"{row.alias} v{row.version}")
    return {family: ", ".join(labels) for family, labels in found.items()}


def plot_by_market(
    long: pd.DataFrame, metrics: Sequence[str], roles: Mapping[str, str] | None = None
) -> Figure:
    """One panel per metric: a bar per family for each market (pooled ``all`` first).
    Baselines are hatched; a family whose version holds an alias says so in the legend."""
    roles = roles or {}
    figure = Figure(figsize=(13, 3.6 * len(metrics)), layout="constrained")
    panels = figure.subplots(len(metrics), 1, squeeze=False)[:, 0]
    for axes, metric in zip(panels, metrics, strict=True):
        table = by_market_table(long, metric)
        width = 0.8 / max(len(table.columns), 1)
        for i, family in enumerate(table.columns):
            label = f"{family} ({roles[family]})" if family in roles else family
            axes.bar(
                [x + (i - (len(table.columns) - 1) / 2) * width for x in range(len(table))],
                table[family],
                width=width,
                label=label,
                color=f"C{i}",
                hatch="//" if family in BASELINES else None,
                edgecolor="white" if family in BASELINES else None,
            )
        axes.set_xticks(range(len(table)), table.index)
        axes.set_ylabel(f"{metric} on the holdout")
        axes.set_title(f"{metric} per market (all: pooled); hatched: baselines")
    panels[-1].set_xlabel("market")
    figure.legend(*panels[0].get_legend_handles_labels(), loc="outside right upper")
    return figure
