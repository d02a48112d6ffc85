"""MLflow I/O for `train`: runs, metrics named for side-by-side charts, the registry.

Metric names: ``ndcg_at_3`` is pooled over all markets, ``ndcg_at_3/SE`` one market. The
MLflow UI groups charts by the part before the slash, so each metric's section shows every
market, and selecting several runs compares the models market by market. Trial runs log the
same names with a ``val_`` prefix: they are scored on the validation window, not the holdout.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from recsys.config import Config
from recsys.errors import RecsysError
from recsys.training.evaluate import ALL

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
# While no version is champion, the version recommend serves instead: the family best on the
# holdout among the candidate and the baselines it was compared with (training/job.py).
INTERIM = "interim"


def setup(config: Config) -> None:
    # Artifact uploads draw progress bars meant for a terminal; these are batch logs.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(config.mlflow.tracking_uri)
    settings = config.mlflow
    # A tracking server decides where artifacts go (and serves them); the local folder is
    # for a file store such as SQLite, where MLflow's default would be ./mlruns of the cwd.
    is_server = settings.tracking_uri.split(":", 1)[0] in ("http", "https", "databricks")
    if (
        settings.artifact_location
        and not is_server
        and mlflow.get_experiment_by_name(settings.experiment) is None
    ):
        mlflow.create_experiment(settings.experiment, artifact_location=settings.artifact_location)
    mlflow.set_experiment(settings.experiment)


def git_commit() -> str:
    """The commit of the checkout this code runs from, or "unknown" outside one."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def metrics_from(table: pd.DataFrame, prefix: str = "") -> dict[str, float]:
    """A markets x figures table as MLflow metrics (NaN figures left out)."""
    metrics = {}
    for market, row in table.iterrows():
        for column, value in row.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            name = f"{prefix}{column}" if market == ALL else f"{prefix}{column}/{market}"
            metrics[name] = float(value)
    return metrics


def log_metrics(metrics: dict[str, float]) -> None:
    items = list(metrics.items())
    for start in range(0, len(items), 900):  # log_batch takes at most 1000 per call
        mlflow.log_metrics(dict(items[start : start + 900]))


def log_params(params: dict[str, Any]) -> None:
    mlflow.log_params(
        {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in params.items()}
    )


def register(name: str, model_uri: str, tags: dict[str, str]) -> str:
    """Register ``model_uri`` as a new version of ``name``; returns the version."""
    version = mlflow.register_model(model_uri, name, tags=tags)
    return str(version.version)


def champion(client: MlflowClient, name: str) -> Any | None:
    """The version behind alias ``champion``, or None when there is none yet."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def version_by_alias(client: MlflowClient, name: str, alias: str) -> tuple[Any, str]:
    """The version to serve for ``alias`` and the alias it was found under.

    Asked for ``champion`` before any version has passed the gate, it is the ``interim``
    version train chose; otherwise a missing alias is a clear error saying how one gets there.
    """
    try:
        return client.get_model_version_by_alias(name, alias), alias
    except MlflowException:
        pass
    if alias == CHAMPION:
        try:
            return client.get_model_version_by_alias(name, INTERIM), INTERIM
        except MlflowException:
            pass
    raise RecsysError(
        f"no version of registered model {name!r} has alias {alias!r}: run train (a version "
        "becomes champion only when it passes the gate, and train names an interim one to "
        "serve until then; the train report says why)"
    )


def download_recsys_model(name: str, version: str, destination: Path) -> Path:
    """Download registered ``name`` v``version`` and return the folder of the saved recsys
    model inside it (the pyfunc's artifact), ready for :func:`recsys.models.load_model`.
    Needs :func:`setup` first: MLflow resolves ``models:/`` URIs with the global tracking URI.
    """
    from mlflow.models import Model

    from recsys.models.pyfunc import ARTIFACT

    destination.mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{name}/{version}", dst_path=str(destination)
    )
    flavor = Model.load(local).flavors.get("python_function", {})
    artifact = flavor.get("artifacts", {}).get(ARTIFACT)
    if artifact is None:
        raise RecsysError(f"{name} v{version} is not a recsys model (no {ARTIFACT!r} artifact)")
    return Path(local) / artifact["path"]


def set_aliases(client: MlflowClient, name: str, version: str, promote: bool) -> None:
    """A promoted version becomes ``champion`` (and nothing is ``interim`` any more);
    otherwise it becomes ``challenger``."""
    if promote:
        client.set_registered_model_alias(name, CHAMPION, version)
        for alias in (CHALLENGER, INTERIM):
            with contextlib.suppress(MlflowException):  # there may be none
                client.delete_registered_model_alias(name, alias)
    else:
        client.set_registered_model_alias(name, CHALLENGER, version)
