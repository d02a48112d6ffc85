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

import functools
import json
import logging
from collections.abc import Mapping
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

    from recsys.training.trainer import FamilyResult, Trainer

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
    opponents: Mapping[str, DataFrame],
    gate: GateConfig,
    *,
    seed: int,
    by: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Paired bootstrap of the candidate minus each opponent, in one pass over all of them.

    Parameters
    ----------
    candidate_df, opponents
        Per-user frames holding ``gate.column``; ``opponents`` by the label each comparison
        is reported under.
    gate
        The column, the number of replicates and the interval's level.
    seed
        Seeds the bootstrap weights. They are hashed from (seed, user, replicate), so a user
        weighs the same in every comparison and each opponent's interval is the one a
        bootstrap of that opponent alone would give.
    by
        Groups to compare within (``("market",)``); pooled over all users when empty.

    Returns
    -------
    pandas.DataFrame
        One row per opponent (and ``by`` group), in the order of ``opponents``: ``opponent``,
        the ``by`` columns, ``mean``, ``low``, ``high``, ``n`` and ``base``, the opponent's
        own mean, which a relative gain is of.
    """
    diffs_df = _stacked(
        {
            label: paired_differences(candidate_df, opponent_df, gate.column)
            for label, opponent_df in opponents.items()
        }
    )
    table = bootstrap_ci(
        diffs_df,
        "diff",
        by=("opponent", *by),
        replicates=gate.replicates,
        seed=seed,
        level=gate.level,
    )
    base_df = _stacked(
        {label: opponent_df.select(*by, gate.column) for label, opponent_df in opponents.items()}
    )
    base = base_df.groupBy("opponent", *by).agg(F.avg(gate.column).alias("base")).toPandas()
    table = table.merge(base, on=["opponent", *by])
    labels = list(opponents)
    if not by:
        # An opponent without users keeps its row, with no interval: it fails the gate
        # instead of dropping out of it.
        return table.set_index("opponent").reindex(labels).fillna({"n": 0}).reset_index()
    return table.sort_values(
        ["opponent", *by], key=lambda c: c.map(labels.index) if c.name == "opponent" else c
    ).reset_index(drop=True)


def _stacked(frames: Mapping[str, DataFrame]) -> DataFrame:
    """The frames one under another, each row labelled with its frame's key as ``opponent``."""
    labelled = [df.withColumn("opponent", F.lit(label)) for label, df in frames.items()]
    return functools.reduce(DataFrame.unionByName, labelled)


def pooled(table: pd.DataFrame) -> list[Comparison]:
    """The comparisons of a :func:`compare` table without groups, one per opponent."""
    return [
        Comparison(
            str(row.opponent),
            float(row.mean),
            float(row.low),
            float(row.high),
            int(row.n),
            float(row.base) if pd.notna(row.base) else 0.0,
        )
        for row in table.itertuples()
    ]


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
) -> tuple[pd.DataFrame | None, pd.DataFrame | None, str | None]:
    """Paired comparisons of the candidate on the holdout: against every other baseline and
    the current champion (pooled, one :func:`compare` table, None when there is nothing to
    compare against), and against popularity per market (for the report); and the champion
    the candidate refreshes, if it has the champion's family and parameters."""
    settings = trainer.settings
    column = settings.gate.column
    opponents, refreshes, refitted = {}, None, None
    for family in BASELINES:
        if family in results and family != best.family:
            opponents[family] = results[family].holdout.per_user(column)
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
            opponents[label] = same.holdout.per_user(column)
        else:
            log.info("refitting %s with its parameters on this snapshot's train split", label)
            model, refitted = trainer.fit_and_score(
                family, params, trainer.rows(TRAIN), holdout, split=TRAIN
            )
            model.unpersist()
            opponents[label] = refitted.per_user(column)
    candidate_df = best.holdout.per_user(column)
    comparisons = (
        compare(candidate_df, opponents, settings.gate, seed=settings.seed) if opponents else None
    )
    if refitted is not None:
        refitted.unpersist()
    by_market = None
    if "popularity" in results and best.family != "popularity":
        by_market = compare(
            candidate_df,
            {"popularity": results["popularity"].holdout.per_user(column)},
            settings.gate,
            seed=settings.seed,
            by=("market",),
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
    return bootstrap_ci(
        functools.reduce(DataFrame.unionByName, parts),
        "diff",
        by=("opponent", "metric"),
        replicates=settings.gate.replicates,
        seed=settings.seed,
        level=settings.gate.level,
    )
