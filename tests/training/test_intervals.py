"""The holdout intervals: one bootstrap pass gives the report's figures and the gate's."""

from __future__ import annotations

import pandas as pd
import pytest

from recsys.config import GateConfig, TrainConfig
from recsys.evaluation.metrics import bootstrap_ci
from recsys.training.intervals import holdout_intervals
from recsys.training.trainer import Evaluated
from recsys.vocabulary import ALL


def test_the_gate_interval_is_among_the_holdout_intervals_as_its_own_bootstrap_gives_it(spark):
    """``mrr_at_3`` is a gate metric the report's table does not list: it is still there, and
    its interval is the one a bootstrap of that column alone gives (same weights per user)."""
    settings = TrainConfig(gate=GateConfig(metric="mrr", k=3), ks=[1, 3], seed=11)
    rows = [
        ("SE", f"u{u}", (u * 37 % 101) / 100, (u * 53 % 97) / 96, float(u % 3 == 0))
        for u in range(500)
    ]
    per_user_df = spark.createDataFrame(
        rows,
        "market string, user_id string, mrr_at_3 double, ndcg_at_3 double, hit_rate_at_1 double",
    )
    table = pd.DataFrame({"mrr_at_3": [0.0]}, index=pd.Index([ALL], name="market"))
    intervals = holdout_intervals(Evaluated("popularity", {}, per_user_df, table), settings)
    assert intervals.index.tolist() == ["mrr_at_3", "ndcg_at_3", "hit_rate_at_1"]
    gate = settings.gate
    for column in intervals.index:
        alone = bootstrap_ci(
            per_user_df, column, replicates=gate.replicates, seed=settings.seed, level=gate.level
        ).iloc[0]
        got = intervals.loc[column]
        assert got["n"] == alone["n"] == 500
        for figure in ("mean", "low", "high"):
            assert got[figure] == pytest.approx(alone[figure], rel=1e-12, abs=1e-15)
