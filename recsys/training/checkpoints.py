"""Resuming an interrupted `train` run.

A family's run ends with a checkpoint: its holdout per-user metrics (Parquet, next to the
model), the chosen trial's per-user metrics on validation beside them, and its trials'
figures (an artifact). With ``train.resume``, a run that did not finish (killed, failed) and
had the same settings and rows (its fingerprint) goes on where it stopped: its finished
families are read back from their checkpoints, the family runs it left open are marked
killed, and the others are fitted. The families of a large snapshot take long between them,
so one lost executor need not cost those already fitted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame

from recsys import tracking
from recsys.config import Config
from recsys.errors import RecsysError
from recsys.labelling import IMPRESSIONS
from recsys.training.trainer import Evaluated, FamilyResult, Trainer, as_uri

log = logging.getLogger(__name__)

FINGERPRINT_TAG = "recsys.fingerprint"  # on a train run: what a resumed run must match
CHECKPOINT_TAG = "recsys.checkpoint"  # on a family run: where its holdout per-user rows are
CHECKPOINT = "family_result.json"  # a family run's artifact: its trials and holdout figures
POLICY_SUFFIX = "_policy"  # beside the holdout per-user rows: the per-user policy values
VALIDATION_SUFFIX = "_validation"  # beside them: the chosen trial's on validation


def run_fingerprint(config: Config, snapshot: dt.date, counts: dict[str, int]) -> str:
    """What a train run's results depend on: the snapshot, the interaction, eligibility and
    train settings (not where reports go, nor ``resume`` itself) and the rows per split."""
    basis = {
        "snapshot": str(snapshot),
        "interactions": config.interactions.model_dump(mode="json"),
        "eligibility": config.recommend.eligibility.model_dump(mode="json"),
        "train": config.train.model_dump(mode="json", exclude={"resume", "report_dir"}),
        "rows": counts,
    }
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]


def interrupted_run(client: MlflowClient, config: Config, fingerprint: str) -> Any | None:
    """The latest train run with ``fingerprint`` that did not finish, if any."""
    experiment = client.get_experiment_by_name(config.mlflow.experiment)
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{FINGERPRINT_TAG}` = '{fingerprint}' "
        "and attributes.status != 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def save_checkpoint(trainer: Trainer, result: FamilyResult) -> None:
    """Write what a resumed run needs of a finished family (in the family's active run)."""
    location = trainer.location(result.run_id, "holdout_per_user")
    # The chosen trial's validation rows too: the candidate is chosen on them (candidate.py).
    validation = location + VALIDATION_SUFFIX
    for evaluated, at in ((result.holdout, location), (result.chosen, validation)):
        evaluated.per_user_df.write.mode("overwrite").parquet(as_uri(at))
        if evaluated.policy_df is not None:
            evaluated.policy_df.write.mode("overwrite").parquet(as_uri(at + POLICY_SUFFIX))

    def evaluated(e: Evaluated) -> dict[str, Any]:
        table = json.loads(e.table.to_json(orient="split", double_precision=15))
        return {"params": e.params, "table": table, "fit_seconds": e.fit_seconds}

    mlflow.log_dict(
        {
            "trials": [evaluated(t) for t in result.trials],
            "chosen": result.trials.index(result.chosen),
            "holdout": evaluated(result.holdout),
            "interval": list(result.interval),
        },
        CHECKPOINT,
    )
    mlflow.set_tag(CHECKPOINT_TAG, location)


def carried_over(trainer: Trainer, client: MlflowClient, parent: Any) -> dict[str, FamilyResult]:
    """The families the interrupted run ``parent`` finished, read back from their
    checkpoints; the family runs it left open without a checkpoint are marked killed."""
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
        order_by=["attributes.start_time DESC"],
    )
    results: dict[str, FamilyResult] = {}
    for run in children:
        family, tags = run.data.tags.get("recsys.family"), run.data.tags
        if CHECKPOINT_TAG not in tags:
            if run.info.status == "RUNNING":
                _kill(client, run)
            continue
        # A checkpoint is the family's last act, so a run that has one is done whatever its
        # status: the candidate's run is reopened by register to log the serving model, so an
        # interruption there leaves it RUNNING (or KILLED, by an earlier resume). Register
        # reopens it and finishes it.
        if run.info.status != "FINISHED":
            client.set_terminated(run.info.run_id, "FINISHED")
        if family not in results:
            results[family] = _restore(trainer, family, run.info.run_id, tags[CHECKPOINT_TAG])
    started = dt.datetime.fromtimestamp(parent.info.start_time / 1000, dt.UTC)
    log.info(
        "train.resume: going on with run %s (started %s UTC); carried over: %s",
        parent.info.run_id,
        started.strftime("%Y-%m-%d %H:%M"),
        ", ".join(sorted(results)) or "no family",
    )
    began_on, now_on = parent.data.tags.get("mlflow.source.git.commit"), tracking.git_commit()
    if began_on != now_on:
        log.warning(
            "train.resume: the run began on commit %s and goes on with %s; the families "
            "carried over were fitted by the first",
            began_on,
            now_on,
        )
        mlflow.set_tag("recsys.resumed_on_commit", now_on)
    return results


def _kill(client: MlflowClient, run: Any) -> None:
    """Mark ``run``, and the runs under it an interruption left running, as killed."""
    client.set_terminated(run.info.run_id, "KILLED")
    for child in client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}' "
        "and attributes.status = 'RUNNING'",
    ):
        _kill(client, child)


def _restore(trainer: Trainer, family: str, run_id: str, location: str) -> FamilyResult:
    saved = mlflow.artifacts.load_dict(f"runs:/{run_id}/{CHECKPOINT}")

    def evaluated(part: dict[str, Any], per_user_df: DataFrame | None = None) -> Evaluated:
        table = pd.DataFrame(**part["table"]).rename_axis("market")
        return Evaluated(family, part["params"], per_user_df, table, part["fit_seconds"])

    trials = [evaluated(t) for t in saved["trials"]]
    holdout = _read_back(trainer, evaluated(saved["holdout"]), family, run_id, location)
    chosen, validation = saved["chosen"], location + VALIDATION_SUFFIX
    trials[chosen] = _read_back(trainer, trials[chosen], family, run_id, validation)
    interval = tuple(saved["interval"])
    log.info("  %s: carried over from its run %s", family, run_id)
    return FamilyResult(family, trials, trials[chosen], holdout, interval, run_id)


def _read_back(
    trainer: Trainer, evaluated: Evaluated, family: str, run_id: str, location: str
) -> Evaluated:
    """``evaluated`` with its per-user rows (and policy values) read back from ``location``."""

    def read(at: str, what: str) -> DataFrame:
        try:
            return trainer.spark.read.parquet(as_uri(at)).persist()
        except AnalysisException as exc:  # train.model_dir moved or cleaned since the run began
            raise RecsysError(
                f"train.resume: cannot carry {family} over from its run {run_id}: its {what} "
                f"{at} cannot be read ({str(exc).splitlines()[0]}); restore it, or run "
                "without train.resume to start over"
            ) from None

    per_user_df = read(location, "checkpoint")
    policy_df = None
    if trainer.supervision.source == IMPRESSIONS:
        policy_df = read(location + POLICY_SUFFIX, "policy values")
    return dataclasses.replace(evaluated, per_user_df=per_user_df, policy_df=policy_df)
