"""The `train` step (docs/models.md).

For each model family: hyperparameter trials fitted on ``tune`` and scored on
``validation`` (of a hashed sample of users at scale, ``train.search_users``); the best trial
refitted on ``train`` (every user) and scored once on ``holdout``. The family that did best
on validation is the candidate: refitted on ``full`` (everything up to the snapshot),
registered, and promoted to ``champion`` only if it beats the champion and every baseline
on the holdout (see :mod:`recsys.training.gate`). While no version is champion, the family
best on the holdout is named ``interim``, so recommend has lists to serve. Everything is an
MLflow run:
one parent per `train`, a nested run per family, and one nested in that per trial.

A family's run ends with a checkpoint: its holdout per-user metrics (Parquet, next to the
model) and its trials' figures (an artifact). With ``train.resume``, a run that did not
finish (killed, failed) and had the same settings and rows goes on where it stopped: its
finished families are read back, the others fitted. At 10M users the families take hours
between them, so one lost executor need not cost them all.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

import mlflow
import pandas as pd
from mlflow import MlflowClient
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys.config import Config, TrainConfig
from recsys.errors import RecsysError
from recsys.evaluation.metrics import MRR, bootstrap_ci
from recsys.interactions.build import FULL, HOLDOUT, TRAIN, TUNE, cutoffs
from recsys.models import BASELINES, FAMILIES
from recsys.models.pyfunc import log_pyfunc
from recsys.progress import step
from recsys.training import evaluate, gate, report, tracking
from recsys.training.candidate import _candidate
from recsys.training.checkpoints import (
    FINGERPRINT_TAG,
    _carried_over,
    _checkpoint,
    _fingerprint,
    _interrupted,
)
from recsys.training.intervals import _interval, _intervals
from recsys.training.trainer import Evaluated, FamilyResult, Search, Trainer

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
    fingerprint = _fingerprint(config, trainer.snapshot, counts)
    interrupted = _interrupted(client, config, fingerprint) if settings.resume else None
    if settings.resume and interrupted is None:
        log.info("train.resume: no unfinished train run with these settings and rows; starting one")
    resumed = {"run_id": interrupted.info.run_id} if interrupted else {}
    with mlflow.start_run(run_name=f"train {trainer.snapshot}", **resumed) as parent:
        if interrupted:
            carried = _carried_over(trainer, client, interrupted)
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
            best, chosen_because = _candidate(results, families, settings)
        log.info("candidate: %s (%s)", best.family, chosen_because)
        with step("train: gate"):
            comparisons, by_market, refreshes = _compare(trainer, client, best, results, holdout)
            decision = gate.decide(
                [gate.pooled(c) for c in comparisons], settings.gate, refreshes=refreshes
            )
            against = _against_families(best, results, settings)
        with step("train: register"):
            version = _register(trainer, client, best, decision)
            interim = _interim(trainer, client, best, results, decision, version)
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
            {f: _intervals(r.holdout, settings) for f, r in results.items()},
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
                    tracking.log_metrics(tracking.metrics_from(result.table, prefix="val_"))
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
        mean, low, high = _interval(final, settings)
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
                **tracking.metrics_from(final.table),
                **tracking.metrics_from(chosen.table, prefix="val_"),
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
        result = FamilyResult(family, tried, chosen, final, (mean, low, high), run.info.run_id)
        _checkpoint(trainer, result)
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


def _compare(
    trainer: Trainer,
    client: MlflowClient,
    best: FamilyResult,
    results: dict[str, FamilyResult],
    holdout: evaluate.Window,
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


def _against_families(
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
        gate.paired_differences(best.holdout.per_user_df, other.holdout.per_user_df, metric)
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
    return gate.compare(
        best.holdout.per_user(column),
        opponent.per_user(column),
        label,
        settings.gate,
        seed=settings.seed,
        by=by,
    )


def _register(
    trainer: Trainer, client: MlflowClient, best: FamilyResult, decision: gate.Decision
) -> str:
    """Refit the candidate on everything before the snapshot, log it in the family's run,
    register it, and point ``champion`` or ``challenger`` at it."""
    version = _register_fit(trainer, best, decision.promote, " | ".join(decision.reasons))
    tracking.set_aliases(client, trainer.settings.registered_model, version, decision.promote)
    return version


def _register_fit(trainer: Trainer, result: FamilyResult, promoted: bool, verdict: str) -> str:
    """Refit ``result``'s family on everything before the snapshot, log it in its run and
    register it; returns the version."""
    settings = trainer.settings
    family, params = result.family, result.chosen.params
    supervised = trainer.supervision.for_split(FULL) if FAMILIES[family].supervised else None
    model = trainer.new_model(family, params).fit(trainer.rows(FULL), supervised)
    saved = trainer.save(model, result.run_id, "serving_model")  # Spark fits it here, lazily
    with mlflow.start_run(run_id=result.run_id, nested=True):
        info = log_pyfunc("serving_model", saved)
    model.unpersist()
    mean, low, high = result.interval
    return tracking.register(
        settings.registered_model,
        info.model_uri,
        tags={
            "recsys.family": family,
            "recsys.params": json.dumps(params, sort_keys=True),
            "recsys.market_params": json.dumps(
                getattr(getattr(settings.models, family), "markets", {}), sort_keys=True
            ),
            "recsys.snapshot_date": str(trainer.snapshot),
            "recsys.fitted_on": FULL,
            "recsys.train_run_id": result.run_id,
            f"recsys.holdout_{settings.gate.column}": f"{mean:.4f} [{low:.4f}, {high:.4f}]",
            "recsys.promoted": str(promoted).lower(),
            "recsys.gate": verdict[:5000],
        },
    )


def _interim(
    trainer: Trainer,
    client: MlflowClient,
    best: FamilyResult,
    results: dict[str, FamilyResult],
    decision: gate.Decision,
    version: str,
) -> str | None:
    """While no version is champion, name the one recommend serves instead: the family best
    on the holdout by the gate's metric among the candidate and the baselines it was compared
    with (a tie goes to the baseline), so lists are published whatever the gate decides.
    Returns what was done, for the log and the report; None once a champion exists."""
    name = trainer.settings.registered_model
    if decision.promote or tracking.champion(client, name) is not None:
        return None
    column = trainer.settings.gate.column
    compared = [best, *(results[f] for f in BASELINES if f in results and f != best.family)]
    chosen = max(compared, key=lambda r: (r.holdout.pooled(column), r.family in BASELINES))
    figures = ", ".join(f"{r.family} {r.holdout.pooled(column):.4f}" for r in compared)
    why = (
        f"no champion yet: {chosen.family} is served as interim, the best on the holdout by "
        f"{column} ({figures})"
    )
    interim = version if chosen is best else _register_fit(trainer, chosen, False, why)
    client.set_registered_model_alias(name, tracking.INTERIM, interim)
    return f"{why}: {name} v{interim}"
