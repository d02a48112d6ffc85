"""The `train` step (docs/models.md).

For each model family: hyperparameter trials fitted on ``tune`` and scored on
``validation`` (of a hashed sample of users at scale, ``train.search_users``); the best trial
refitted on ``train`` (every user) and scored once on ``holdout``. The family that did best
on validation is the candidate, unless a simpler family's paired interval against it
includes zero (then the simplest such family; ``train.candidate`` may name one instead):
refitted on ``full`` (everything up to the snapshot),
registered, and promoted to ``champion`` only if it beats the champion and every baseline
on the holdout (see :mod:`recsys.training.gate`). While no version is champion, the family
best on the holdout is named ``interim``, so recommend has lists to serve. Everything is an
MLflow run: one parent per `train`, a nested run per family, and one nested in that per trial.

This module holds :func:`run`, which takes those steps in order, and the fit loop of one
family. The steps live beside it: :mod:`~recsys.training.trainer` (the snapshot's rows and
windows, fitting and scoring), :mod:`~recsys.training.checkpoints` (``train.resume``: a
finished family's checkpoint, read back by a run that goes on where an interrupted one
stopped), :mod:`~recsys.training.candidate` (the choice on validation),
:mod:`~recsys.training.gate` (the comparisons on the holdout and the decision),
:mod:`~recsys.training.register` (registration and aliases) and
:mod:`~recsys.training.intervals` (the bootstrap intervals that are logged and reported).
"""

from __future__ import annotations

import datetime as dt
import logging

import mlflow
import pandas as pd
from mlflow import MlflowClient
from pyspark.sql import SparkSession

from recsys import tracking
from recsys.config import Config, TrainConfig
from recsys.errors import RecsysError
from recsys.interactions.build import cutoffs
from recsys.models import BASELINES, FAMILIES
from recsys.models.pyfunc import log_pyfunc
from recsys.progress import step
from recsys.training import evaluate, gate, report
from recsys.training.candidate import choose_candidate
from recsys.training.checkpoints import (
    FINGERPRINT_TAG,
    carried_over,
    interrupted_run,
    run_fingerprint,
    save_checkpoint,
)
from recsys.training.gate import against_families, compare_on_holdout
from recsys.training.intervals import holdout_intervals
from recsys.training.register import name_interim, register_candidate
from recsys.training.trainer import FamilyResult, Search, Trainer
from recsys.vocabulary import ALL, HOLDOUT, TRAIN, TUNE

log = logging.getLogger(__name__)


def run(spark: SparkSession, config: Config) -> None:
    trainer = Trainer(spark, config)
    config, settings = trainer.config, trainer.settings
    counts = trainer.check_inputs()
    split, cutoff = cutoffs(trainer.snapshot, config.interactions.holdout_days)
    families = [f for f in FAMILIES if getattr(settings.models, f).enabled]
    if not families:
        raise RecsysError("train.models: every family is disabled")
    log.info(
        "snapshot %s: search on %s .. %s, holdout %s .. %s; families %s",
        trainer.snapshot,
        (split - dt.timedelta(days=config.interactions.holdout_days)).date(),
        split.date(),
        split.date(),
        cutoff.date(),
        ", ".join(families),
    )
    # Where impressions are logged, each window fits the direct model of its policy values.
    with step("train: evaluation windows"):
        holdout = trainer.window(TRAIN, HOLDOUT)
        search = trainer.search()
    log.info("search: trials fit and score %s", search.describe())
    tracking.setup(config)
    client = MlflowClient()
    fingerprint = run_fingerprint(config, trainer.snapshot, counts)
    interrupted = interrupted_run(client, config, fingerprint) if settings.resume else None
    if settings.resume and interrupted is None:
        log.info("train.resume: no unfinished train run with these settings and rows; starting one")
    resumed = {"run_id": interrupted.info.run_id} if interrupted else {}
    with mlflow.start_run(run_name=f"train {trainer.snapshot}", **resumed) as parent:
        if interrupted:
            carried = carried_over(trainer, client, interrupted)
        else:
            carried = {}
            mlflow.set_tags(
                {
                    "mlflow.source.git.commit": tracking.git_commit(),
                    "recsys.step": "train",
                    FINGERPRINT_TAG: fingerprint,
                }
            )
            tracking.log_params(
                {
                    "snapshot_date": str(trainer.snapshot),
                    "holdout_days": config.interactions.holdout_days,
                    "ks": settings.ks,
                    "gate": settings.gate.model_dump(),
                    "seed": settings.seed,
                    "max_trials": settings.max_trials,
                    "search_users": settings.search_users,
                    "search_share": round(search.share, 4),
                    "families": families,
                }
            )
            _log_matrix_stats(trainer)
            tracking.log_metrics({f"nnz_{k}": float(v) for k, v in counts.items()})
        results = {}
        for family in families:
            if family in carried:
                results[family] = carried[family]
                continue
            with step(f"train: {family}"):
                results[family] = _train_family(trainer, family, search, holdout)
        with step("train: candidate"):
            best, chosen_because = choose_candidate(results, families, settings)
        log.info("candidate: %s (%s)", best.family, chosen_because)
        with step("train: gate"):
            comparisons, by_market, refreshes = compare_on_holdout(
                trainer, client, best, results, holdout
            )
            decision = gate.decide(
                gate.pooled(comparisons) if comparisons is not None else [],
                settings.gate,
                refreshes=refreshes,
            )
            against = against_families(best, results, settings)
        with step("train: register"):
            version = register_candidate(trainer, client, best, decision)
            interim = name_interim(trainer, client, best, results, decision, version)
        if interim:
            decision = gate.Decision(decision.promote, (*decision.reasons, interim))
        for reason in decision.reasons:
            log.info("  %s", reason)
        log.info(
            "%s v%s (%s) is %s",
            settings.registered_model,
            version,
            best.family,
            "promoted to champion" if decision.promote else "challenger, not promoted",
        )
        summary = report.write(
            config,
            parent.info.run_id,
            results,
            best,
            comparisons,
            by_market,
            decision,
            version,
            search.describe(),
            trainer.supervision.describe() if "conversion" in results else "",
            against,
            chosen_because,
            {f: _intervals(r, settings) for f, r in results.items()},
        )
        mlflow.set_tags(
            {
                "recsys.candidate": best.family,
                "recsys.candidate_reason": chosen_because[:5000],
                "recsys.registered_version": version,
                "recsys.promoted": str(decision.promote).lower(),
            }
        )
        log.info("report: %s\n%s", summary.path, summary.headline)
    for result in results.values():
        for evaluated in (result.chosen, result.holdout):
            evaluated.unpersist()
    search.unpersist()
    holdout.unpersist()
    trainer.supervision.unpersist()
    trainer.interactions_df.unpersist()


def _log_matrix_stats(trainer: Trainer) -> None:
    stats = trainer.stats_df.toPandas().sort_values(["split", "market"])  # splits x markets
    mlflow.log_table(stats.drop(columns=["snapshot_date"]), "matrix_stats.json")
    for row in stats[stats["split"] == TRAIN].itertuples():
        mlflow.log_metrics(
            {
                f"train_users/{row.market}": float(row.users),
                f"train_nnz/{row.market}": float(row.nnz),
                f"train_density/{row.market}": float(row.density),
            }
        )


def _train_family(
    trainer: Trainer, family: str, search: Search, holdout: evaluate.Window
) -> FamilyResult:
    settings = trainer.settings
    column = settings.gate.column
    with mlflow.start_run(run_name=family, nested=True) as run:
        mlflow.set_tags(
            {"recsys.family": family, "recsys.baseline": str(family in BASELINES).lower()}
        )
        tried = []
        search_in = (search.rows_df, search.window)
        for number, params in enumerate(trainer.candidates_of(family), start=1):
            if family in BASELINES:
                model, result = trainer.fit_and_score(family, params, *search_in, split=TUNE)
            else:
                with mlflow.start_run(run_name=f"{family} trial {number}", nested=True):
                    model, result = trainer.fit_and_score(family, params, *search_in, split=TUNE)
                    mlflow.set_tags({"recsys.family": family, "recsys.trial": str(number)})
                    tracking.log_params(params)
                    tracking.log_metrics(
                        tracking.metrics_from(result.table, pooled=ALL, prefix="val_")
                    )
                    mlflow.log_metric("fit_seconds", result.fit_seconds)
            model.unpersist()
            log.info(
                "  %s trial %d: validation %s %.4f  %s",
                family,
                number,
                column,
                result.pooled(column),
                params if family not in BASELINES else "",
            )
            tried.append(result)
        chosen = max(tried, key=lambda r: r.pooled(column))  # first wins a tie
        for result in tried:
            if result is not chosen:
                result.unpersist()
        model, final = trainer.fit_and_score(
            family, chosen.params, trainer.rows(TRAIN), holdout, split=TRAIN
        )
        intervals = holdout_intervals(final, settings)
        mean, low, high = (float(intervals.loc[column, k]) for k in ("mean", "low", "high"))
        tracking.log_params(
            {
                **{f"param_{k}": v for k, v in chosen.params.items()},
                "family": family,
                "trials": len(tried),
                "market_params": getattr(getattr(settings.models, family), "markets", {}),
            }
        )
        tracking.log_metrics(
            {
                **tracking.metrics_from(final.table, pooled=ALL),
                **tracking.metrics_from(chosen.table, pooled=ALL, prefix="val_"),
                f"{column}_ci_low": low,
                f"{column}_ci_high": high,
                "fit_seconds": final.fit_seconds,
            }
        )
        mlflow.log_table(final.table.reset_index(), "metrics_by_market.json")
        if final.reliability is not None:
            tracking.log_metrics(
                {"log_loss": final.reliability.log_loss, "brier": final.reliability.brier}
            )
            mlflow.log_table(final.reliability.by_decile, "reliability_by_decile.json")
            mlflow.log_table(final.reliability.by_market, "reliability_by_market.json")
        saved = trainer.save(model, run.info.run_id, "model")
        log_pyfunc("model", saved)
        model.unpersist()
        result = FamilyResult(
            family, tried, chosen, final, (mean, low, high), run.info.run_id, intervals
        )
        save_checkpoint(trainer, result)
        log.info(
            "  %s on holdout: %s %.4f (95%% CI %.4f .. %.4f), fit + score %.1fs",
            family,
            column,
            mean,
            low,
            high,
            final.fit_seconds,
        )
    return result


def _intervals(result: FamilyResult, settings: TrainConfig) -> pd.DataFrame:
    """The family's holdout intervals: computed when it was trained, or now for a family
    carried over from an interrupted run."""
    if result.intervals is not None:
        return result.intervals
    return holdout_intervals(result.holdout, settings)
