"""The trainer of one snapshot and the records of what it fits.

:class:`Trainer` holds the snapshot's interaction rows, the evaluation windows cut from them
and the supervision of the conversion model; it fits a model family on one split and scores
it on one window. :class:`Evaluated` is one such fit scored on one window, :class:`Search` the
rows and window every family's trials use, and :class:`FamilyResult` what a family's run
yields: its trials, the best of them on validation, and that trial's refit on the holdout.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.columns import unit
from recsys.config import Config
from recsys.errors import RecsysError
from recsys.evaluation.policy_value import POLICY_VALUE
from recsys.evaluation.reliability import Reliability
from recsys.labelling import IMPRESSIONS
from recsys.models import BASELINES, FAMILIES, Recommender
from recsys.models.baselines import baseline_params
from recsys.models.conversion import Conversion
from recsys.supervision import Supervision
from recsys.tables import read_table
from recsys.training import evaluate
from recsys.training.search import trials
from recsys.vocabulary import ALL, FULL, HOLDOUT, TRAIN, TUNE, VALIDATION

log = logging.getLogger(__name__)


@dataclass
class Evaluated:
    """One fitted model scored on one window."""

    family: str
    params: dict[str, Any]
    per_user_df: DataFrame | None  # None: a trial read back from a checkpoint
    table: pd.DataFrame
    fit_seconds: float = 0.0
    # Per user with logged impressions: the off-policy value of the model's lists.
    policy_df: DataFrame | None = None
    # A probability model's predictions against the window's logged outcomes.
    reliability: Reliability | None = None

    def pooled(self, column: str) -> float:
        return float(self.table.loc[ALL, column])

    def per_user(self, column: str) -> DataFrame | None:
        """The per-user frame that holds ``column``."""
        return self.policy_df if column == POLICY_VALUE else self.per_user_df

    def unpersist(self) -> None:
        for df in (self.per_user_df, self.policy_df):
            if df is not None:
                df.unpersist()


@dataclass(frozen=True)
class Search:
    """Where every family's trials are fitted (``rows_df``, tune rows) and scored
    (``window``, validation): all users, or a hashed sample of them at scale, so the search
    costs the same at 10M users as at ``train.search_users``."""

    rows_df: DataFrame
    window: evaluate.Window
    users: int  # users of the tune split
    share: float  # of them in the search; 1.0: all

    @property
    def sampled(self) -> bool:
        return self.share < 1.0

    def describe(self) -> str:
        if not self.sampled:
            return f"all {self.users:,} users of the tune split"
        return (
            f"a hashed sample of about {round(self.users * self.share):,} of the "
            f"{self.users:,} users of the tune split (train.search_users)"
        )

    def unpersist(self) -> None:
        if self.sampled:
            self.rows_df.unpersist()
        self.window.unpersist()


@dataclass
class FamilyResult:
    family: str
    trials: list[Evaluated]
    chosen: Evaluated  # the best trial, on validation
    holdout: Evaluated  # its refit on train, on the holdout
    interval: tuple[float, float, float] = (0.0, 0.0, 0.0)
    run_id: str = ""
    intervals: pd.DataFrame | None = None  # holdout_intervals of ``holdout``, once computed


class Trainer:
    def __init__(self, spark: SparkSession, config: Config) -> None:
        self.spark, self.config, self.settings = spark, config, config.train
        self.snapshot = config.interactions.snapshot_date
        on_snapshot = F.col("snapshot_date") == F.lit(self.snapshot)
        self.interactions_df = (
            read_table(spark, config, S.INTERACTIONS).where(on_snapshot).persist()
        )
        self.state_df = read_table(spark, config, S.USER_STATE).where(on_snapshot)
        self.catalog_df = read_table(spark, config, S.CATALOG)
        self.stats_df = read_table(spark, config, S.INTERACTION_STATS).where(on_snapshot)
        self.supervision = Supervision(
            spark,
            config,
            self.interactions_df,
            experiments=config.train.models.conversion.experiments,
        )
        self.config = with_gate_metric(config, self.supervision.source)
        self.settings = self.config.train
        self._fits: dict[tuple[str, str, str], Recommender] = {}  # see fitted

    # -- data --------------------------------------------------------------------------
    def rows(self, split: str) -> DataFrame:
        return self.interactions_df.where(F.col("split") == split)

    def window(
        self, state_split: str, label_split: str, users: Column | None = None
    ) -> evaluate.Window:
        """The evaluation window of ``label_split``; of the users ``users`` keeps, if given."""
        state_df = self.state_df.where(F.col("split") == state_split)
        labels_df = self.rows(label_split)
        if users is not None:
            state_df, labels_df = state_df.where(users), labels_df.where(users)
        rules = self.config.recommend.eligibility
        win = evaluate.window(state_df, labels_df, self.catalog_df, rules)
        if self.supervision.source == IMPRESSIONS:
            impressions_df = self.supervision.logged(state_split)
            if users is not None:
                impressions_df = impressions_df.where(users)
            logged = evaluate.logged(
                state_df,
                impressions_df,
                self.catalog_df,
                self.reward_model(state_split),
                self.state_df.where(F.col("split") == FULL),
                rules,
            )
            win = dataclasses.replace(win, logged=logged)
        return win.persist()

    def reward_model(self, split: str) -> Recommender:
        """The direct model of the doubly-robust policy value on the window that starts at
        ``split``: a conversion model with the configured default parameters, fitted on the
        window before (cross-fitted on the first window, which has none before it), so that
        it never learns from the outcomes it helps to judge."""
        params = self.settings.models.conversion.params.model_dump()
        return self.fitted(Conversion.family, params, self.rows(split), split=split)

    def check_inputs(self) -> dict[str, int]:
        counts = self.totals("nnz")
        missing = [s for s in (TUNE, VALIDATION, TRAIN, HOLDOUT, FULL) if not counts.get(s)]
        if missing:
            raise RecsysError(
                f"interactions for snapshot {self.snapshot} have no rows in {missing}: run "
                "build-interactions for this snapshot, with enough history for "
                f"2 x interactions.holdout_days={self.config.interactions.holdout_days} days "
                "before it"
            )
        return counts

    def totals(self, column: str) -> dict[str, int]:
        """Split -> ``column`` of interaction_stats summed over markets."""
        summed = self.stats_df.groupBy("split").agg(F.sum(column).alias("total")).collect()
        return {r["split"]: r["total"] for r in summed}

    def search(self) -> Search:
        """The tune rows and validation window the trials use: every user, or a hashed
        sample of ``train.search_users`` of them when the tune split has more."""
        users = self.totals("users")[TUNE]
        limit = self.settings.search_users
        share = 1.0 if limit is None else min(1.0, limit / users)
        if share == 1.0:
            return Search(self.rows(TUNE), self.window(TUNE, VALIDATION), users, share)
        sampled = unit(f"train/{self.settings.seed}/search", "user_id") < F.lit(share)
        return Search(
            self.rows(TUNE).where(sampled).persist(),
            self.window(TUNE, VALIDATION, users=sampled),
            users,
            share,
        )

    # -- models ------------------------------------------------------------------------
    def new_model(self, family: str, params: dict[str, Any]) -> Recommender:
        spec = getattr(self.settings.models, family)
        market_params = getattr(spec, "markets", {})
        return FAMILIES[family](params, seed=self.settings.seed, market_params=market_params)

    def fitted(
        self, family: str, params: dict[str, Any], rows_df: DataFrame, *, split: str
    ) -> Recommender:
        """``family`` with ``params`` fitted on ``rows_df`` (rows of ``split``).

        A supervised family learns from its split's labelled examples alone, so a fit with
        the same parameters on the same split is made once and reused: the direct model of
        a window's doubly-robust value is the conversion family's default trial there, and
        its holdout refit when the defaults win the search.
        """
        if not FAMILIES[family].supervised:
            return self.new_model(family, params).fit(rows_df)
        key = (family, json.dumps(params, sort_keys=True), split)
        if key not in self._fits:
            model = self.new_model(family, params)
            self._fits[key] = model.fit(rows_df, self.supervision.for_split(split))
        return self._fits[key]

    def fit_and_score(
        self,
        family: str,
        params: dict[str, Any],
        rows_df: DataFrame,
        win: evaluate.Window,
        *,
        split: str,
    ) -> tuple[Recommender, Evaluated]:
        """Fit ``family`` on ``rows_df`` (rows of ``split``) and score it on ``win``."""
        started = time.perf_counter()
        model = self.fitted(family, params, rows_df, split=split)
        per_user_df, lists_df = evaluate.per_user(model, win, self.settings.ks)
        per_user_df = per_user_df.persist()
        table = evaluate.summary(per_user_df, lists_df, win, self.settings.ks)
        lists_df.unpersist()
        policy_df = None
        if win.logged is not None:
            gate = self.settings.gate
            policy_df = evaluate.policy_values(
                model, win.logged, gate.k, gate.position_bias
            ).persist()
            summary = evaluate.policy_summary(policy_df, win.logged.population_df)
            table = table.join(summary, how="left")
        reliability = None
        if win.logged is not None and model.serves_probability and split != TUNE:
            reliability = evaluate.reliability_of(model, win.logged)
        seconds = time.perf_counter() - started
        return model, Evaluated(
            family,
            params,
            per_user_df,
            table,
            fit_seconds=seconds,
            policy_df=policy_df,
            reliability=reliability,
        )

    def candidates_of(self, family: str) -> list[dict[str, Any]]:
        if family in BASELINES:
            return [baseline_params(self.config, family)]
        spec = getattr(self.settings.models, family)
        return trials(spec, self.settings.max_trials, self.settings.seed)

    def location(self, run_id: str, name: str) -> str:
        """``name`` of run ``run_id`` under ``train.model_dir``: a local path, or the URI of
        shared storage such as ``s3://...`` on a cluster."""
        base = self.settings.model_dir.rstrip("/")
        return f"{base}/{run_id}/{name}" if "://" in base else str(Path(base) / run_id / name)

    def save(self, model: Recommender, run_id: str, name: str) -> str:
        """Save under ``train.model_dir``; returns what MLflow copies the artifact from."""
        location = self.location(run_id, name)
        model.save(as_uri(location))
        return location


def as_uri(location: str) -> str:
    """A URI Spark reads on any filesystem: ``location`` as it is, or a local path as
    ``file:``."""
    return location if "://" in location else Path(location).as_uri()


def with_gate_metric(config: Config, source: str) -> Config:
    """``config`` with ``train.gate.metric: auto`` resolved: the off-policy value of the
    lists where impressions are logged, NDCG where they are not."""
    gate = config.train.gate
    if gate.metric == POLICY_VALUE and source != IMPRESSIONS:
        raise RecsysError(
            "train.gate.metric: policy_value replays logged impressions, and the offer_log "
            "has none for this snapshot; use auto or a ranking metric such as ndcg"
        )
    if gate.metric != "auto":
        return config
    metric = POLICY_VALUE if source == IMPRESSIONS else "ndcg"
    log.info(
        "train.gate.metric: auto is %s (the offer_log %s impressions)",
        metric,
        "has" if source == IMPRESSIONS else "has no",
    )
    train = config.train.model_copy(update={"gate": gate.model_copy(update={"metric": metric})})
    return config.model_copy(update={"train": train})
