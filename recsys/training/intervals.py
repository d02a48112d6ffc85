"""Bootstrap intervals of a fitted model's per-user figures on its window: every figure the
training report shows on the holdout, and the gate metric's, which a family's run logs and
registration tags. One pass over the users gives them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from recsys.config import TrainConfig
from recsys.evaluation.metrics import bootstrap_cis
from recsys.evaluation.policy_value import POLICY_VALUE
from recsys.training import report

if TYPE_CHECKING:
    from recsys.training.trainer import Evaluated


def holdout_intervals(result: Evaluated, settings: TrainConfig) -> pd.DataFrame:
    """Mean and bootstrap interval of the gate metric and of every per-user figure the report
    shows on ``result``'s window.

    Returns
    -------
    pandas.DataFrame
        Indexed by the report's column names (the gate's ``settings.gate.column`` among
        them): ``mean``, ``low``, ``high``, ``n``.
    """
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
    wanted = dict.fromkeys([settings.gate.column, *report.interval_columns(settings)])
    columns = [c for c in wanted if c in result.per_user_df.columns]
    tables.append(bootstrap_cis(result.per_user_df, columns, **options))
    return pd.concat(tables)
