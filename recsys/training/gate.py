"""The promotion gate: a candidate becomes ``champion`` only if it beats the current champion
and every baseline on the gate metric, on the same users, with the lower end of the paired
bootstrap interval above the margin and above ``min_relative_gain`` of the opponent's figure.
A candidate of the champion's own family and parameters is a refresh: it replaces the champion
when it beats every baseline.

The candidate's paired comparisons on the holdout live here too: against every other
baseline and the champion (refitted on this snapshot's train split when its family or
parameters differ), the ones the gate decides on; against popularity per market; and against
every family on the report's metrics."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys import tracking
from recsys.config import GateConfig, TrainConfig
from recsys.errors import RecsysError
from recsys.evaluation.metrics import MRR, bootstrap_ci
from recsys.models import BASELINES, FAMILIES
from recsys.training.evaluate import Window
from recsys.vocabulary import KEYS, TRAIN

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from recsys.training.trainer import Evaluated, FamilyResult, Trainer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Comparison:
    """candidate - opponent on the gate metric, averaged over the same evaluated users."""

    opponent: str
    mean: float
    low: float
    high: float
    users: int
    base: float = 0.0  # the opponent's own mean, which a relative gain is of

    def beats(self, least: float) -> bool:
        """Whether the interval's lower end is above ``least`` (:func:`least_gain`)."""
        return self.low > least

    def describe(self, metric: str) -> str:
        return (
            f"{metric} {self.mean:+.4f} vs {self.opponent} "
            f"(95% CI {self.low:+.4f} .. {self.high:+.4f}, {self.users:,} users)"
        )


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: tuple[str, ...]


def paired_differences(candidate_df: DataFrame, opponent_df: DataFrame, column: str) -> DataFrame:
    """(market, user_id, diff): the candidate's per-user metric minus the opponent's.

    Both frames come from the same evaluation window, so they hold the same users; an inner
    join would hide a mismatch, hence the full join and the nulls counted as zero.
    """
    return (
        candidate_df.select(*KEYS, F.col(column).alias("_a"))
        .join(opponent_df.select(*KEYS, F.col(column).alias("_b")), on=list(KEYS), how="full")
        .select(*KEYS, (F.coalesce("_a", F.lit(0.0)) - F.coalesce("_b", F.lit(0.0))).alias("diff"))
    )


def compare(
    candidate_df: DataFrame,
    opponent_df: DataFrame,
    opponent: str,
    gate: GateConfig,
    *,
    seed: int,
    by: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Paired bootstrap of candidate - opponent, pooled or per ``by`` group."""
    diffs_df = paired_differences(candidate_df, opponent_df, gate.column)
    table = bootstrap_ci(
        diffs_df, "diff", by=by, replicates=gate.replicates, seed=seed, level=gate.level
    )
    base = opponent_df.groupBy(*by).agg(F.avg(gate.column).alias("base")).toPandas()
    table = table.merge(base, on=list(by)) if by else table.assign(base=base["base"].iloc[0])
    return table.assign(opponent=opponent)


def pooled(table: pd.DataFrame) -> Comparison:
    row = table.iloc[0]
    return Comparison(
        str(row["opponent"]),
        float(row["mean"]),
        float(row["low"]),
        float(row["high"]),
        int(row["n"]),
        float(row["base"]) if pd.notna(row["base"]) else 0.0,
    )


def decide(
    comparisons: list[Comparison], gate: GateConfig, *, refreshes: str | None = None
) -> Decision:
    """Promote only when every comparison clears the margin; say why either way. With
    nothing to compare against (no other baseline enabled, no champion yet) nothing is
    promoted: a model never becomes champion by default.

    Parameters
    ----------
    comparisons
        The candidate against every baseline and, unless it ``refreshes`` it, the champion.
    gate
        The metric, its ``k`` and the margin to clear.
    refreshes
        The champion the candidate refreshes (same family and parameters, fitted on this
        snapshot), or None. A refresh is not compared with the champion, whose holdout
        figures it shares; it replaces it when it still beats every baseline, so a champion
        keeps learning from newer data instead of staying at the snapshot it first won on.

    Returns
    -------
    Decision
        Whether to promote, and one reason per comparison.
    """
    metric = f"{gate.metric}@{gate.k}"
    refresh = (
        (f"refreshes {refreshes}: same family and parameters, fitted on this snapshot",)
        if refreshes
        else ()
    )
    if not comparisons:
        if refreshes:
            return Decision(True, refresh)
        return Decision(
            False, ("nothing to compare against: enable a baseline (train.models.popularity)",)
        )
    failed = [c for c in comparisons if not c.beats(least_gain(c, gate))]
    if failed:
        return Decision(
            False,
            refresh
            + tuple(
                f"not better than {c.opponent} by more than {_needed(c, gate)}: "
                f"{c.describe(metric)}"
                for c in failed
            ),
        )
    return Decision(True, refresh + tuple(c.describe(metric) for c in comparisons))


def least_gain(comparison: Comparison, gate: GateConfig) -> float:
    """The gain the interval's lower end must clear: the margin, or ``min_relative_gain`` of
    the opponent's figure where that is larger."""
    return max(gate.margin, gate.min_relative_gain * abs(comparison.base))


def _needed(comparison: Comparison, gate: GateConfig) -> str:
    """:func:`least_gain`, as the reason states it."""
    least = least_gain(comparison, gate)
    if least > gate.margin:
        return f"{least:.4f} ({gate.min_relative_gain:.0%} of its {comparison.base:.4f})"
    return f"{gate.margin}"


def compare_on_holdout(
    trainer: Trainer,
    client: MlflowClient,
    best: FamilyResult,
    results: dict[str, FamilyResult],
    holdout: Window,
) -> tuple[list[pd.DataFrame], pd.DataFrame | None, str | None]:
    """Paired comparisons of the candidate on the holdout: against every other baseline and
    the current champion (pooled), and against popularity per market (for the report); and
    the champion the candidate refreshes, if it has the champion's family and parameters."""
    settings = trainer.settings
    comparisons, refreshes = [], None
    for family in BASELINES:
        if family in results and family != best.family:
            comparisons.append(_paired(best, results[family].holdout, family, settings))
    current = tracking.champion(client, settings.registered_model)
    if current is not None:
        family = current.tags.get("recsys.family")
        params = json.loads(current.tags.get("recsys.params", "{}"))
        label = f"champion v{current.version} ({family})"
        if family not in FAMILIES:
            raise RecsysError(
                f"{settings.registered_model} v{current.version}: champion has no recsys.family tag"
            )
        same = results.get(family)
        if family == best.family and same.chosen.params == params:
            # Its holdout figures are the candidate's own: nothing to compare.
            refreshes = label
        elif same is not None and same.chosen.params == params:
            comparisons.append(_paired(best, same.holdout, label, settings))
        else:
            log.info("refitting %s with its parameters on this snapshot's train split", label)
            model, champion = trainer.fit_and_score(
                family, params, trainer.rows(TRAIN), holdout, split=TRAIN
            )
            model.unpersist()
            comparisons.append(_paired(best, champion, label, settings))
            champion.unpersist()
    by_market = None
    if "popularity" in results and best.family != "popularity":
        by_market = _paired(
            best, results["popularity"].holdout, "popularity", settings, by=("market",)
        )
    return comparisons, by_market, refreshes


def against_families(
    best: FamilyResult, results: dict[str, FamilyResult], settings: TrainConfig
) -> pd.DataFrame | None:
    """The candidate minus every other family on the holdout, paired per user, on hit rate
    at the smallest k, plain MRR and NDCG at the gate's k: for the report, so
    that a reader sees by how much the candidate leads or trails each family, not only the
    baselines the gate compares. One bootstrap for all (a user's weights are the same in
    every comparison). Columns: opponent, metric, mean, low, high, n."""
    others = [r for r in results.values() if r.family != best.family]
    if not others:
        return None
    ks = settings.ks
    metrics = list(dict.fromkeys([f"hit_rate_at_{min(ks)}", MRR, f"ndcg_at_{settings.gate.k}"]))
    parts = [
        paired_differences(best.holdout.per_user_df, other.holdout.per_user_df, metric)
        .withColumn("opponent", F.lit(other.family))
        .withColumn("metric", F.lit(metric))
        for other in others
        for metric in metrics
    ]
    diffs_df = parts[0]
    for part in parts[1:]:
        diffs_df = diffs_df.unionByName(part)
    return bootstrap_ci(
        diffs_df,
        "diff",
        by=("opponent", "metric"),
        replicates=settings.gate.replicates,
        seed=settings.seed,
        level=settings.gate.level,
    )


def _paired(
    best: FamilyResult,
    opponent: Evaluated,
    label: str,
    settings: TrainConfig,
    by: tuple[str, ...] = (),
) -> pd.DataFrame:
    """The candidate's paired bootstrap against ``opponent`` on the holdout (per ``by``)."""
    column = settings.gate.column
    return compare(
        best.holdout.per_user(column),
        opponent.per_user(column),
        label,
        settings.gate,
        seed=settings.seed,
        by=by,
    )
