"""Bootstrap intervals of a fitted model's per-user figures on its window.

The gate metric's mean and interval that a family's run logs and registration tags, and the
interval of every figure the training report shows on the holdout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from recsys.config import TrainConfig
from recsys.evaluation.metrics import bootstrap_ci, bootstrap_cis
from recsys.evaluation.policy_value import POLICY_VALUE
from recsys.training import report

if TYPE_CHECKING:
    from recsys.training.trainer import Evaluated


def holdout_intervals(result: Evaluated, settings: TrainConfig) -> pd.DataFrame:
    """Mean and bootstrap interval of every per-user figure the report shows on ``result``'s
    window, indexed by the report's column names: mean, low, high, n."""
    options = {
        "replicates": settings.gate.replicates,
        "seed": settings.seed,
        "level": settings.gate.level,
    }
    tables = []
    if result.policy_df is not None:
        # The report's policy columns are the doubly-robust (policy_value) and IPS estimates.
        policy = bootstrap_cis(result.policy_df, [POLICY_VALUE, "ips"], **options)
        tables.append(policy.rename(index={"ips": f"{POLICY_VALUE}_ips"}))
    columns = [c for c in report.interval_columns(settings) if c in result.per_user_df.columns]
    tables.append(bootstrap_cis(result.per_user_df, columns, **options))
    return pd.concat(tables)


def gate_interval(result: Evaluated, settings: TrainConfig) -> tuple[float, float, float]:
    table = bootstrap_ci(
        result.per_user(settings.gate.column),
        settings.gate.column,
        replicates=settings.gate.replicates,
        seed=settings.seed,
        level=settings.gate.level,
    )
    row = table.iloc[0]
    return float(row["mean"]), float(row["low"]), float(row["high"])
