"""Registering the candidate and naming the version recommend serves.

The candidate is refitted on ``full`` (everything up to the snapshot), logged in its family's
run, registered with the tags that describe it, and pointed at by ``champion`` when the gate
promotes it, ``challenger`` when it does not. While no version is champion, the family best
on the holdout among the candidate and its baselines is named ``interim``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import mlflow

from recsys import tracking
from recsys.models import BASELINES, FAMILIES
from recsys.models.pyfunc import log_pyfunc
from recsys.training import gate
from recsys.vocabulary import FULL

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from recsys.training.trainer import FamilyResult, Trainer


def register_candidate(
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


def name_interim(
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
