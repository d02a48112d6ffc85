"""MLflow I/O for every stage: runs, metrics named for side-by-side charts, the registry.

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
import socket
import subprocess
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from recsys.config import Config
from recsys.errors import RecsysError

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
# While no version is champion, the version recommend serves instead: the family best on the
# holdout among the candidate and the baselines it was compared with (training/register.py).
INTERIM = "interim"
# Every run this process starts carries its owner, ``host:pid:start``, so that a later run
# can tell a run left RUNNING by a killed process from one still going elsewhere.
OWNER_TAG = "recsys.owner"


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
    experiment = mlflow.set_experiment(settings.experiment)
    _own_new_runs()
    end_abandoned_runs(MlflowClient(), experiment.experiment_id)


def owner(pid: int | None = None) -> str:
    """``host:pid:start`` of a process of this host (default: this one); ``start`` is its
    start time in clock ticks since boot where the system tells it (Linux), so that a
    reused pid is not taken for the process that had it before."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_started(pid)}"


def _started(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # Field 22 (starttime); the command name before it, in parentheses, may hold spaces.
    return stat.rsplit(")", 1)[1].split()[19]


def _own_new_runs() -> None:
    """Tag every run that this process starts from now on with :func:`owner`, through
    MLflow's run context (the ``MLFLOW_RUN_CONTEXT`` tags that ``mlflow.start_run`` adds)."""
    context = json.loads(os.environ.get("MLFLOW_RUN_CONTEXT") or "{}")
    context[OWNER_TAG] = owner()
    os.environ["MLFLOW_RUN_CONTEXT"] = json.dumps(context)


def _is_alive(run_owner: str) -> bool:
    host, pid, started = [*run_owner.rsplit(":", 2), "", ""][:3]
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's process: nothing here can tell
    return owner(int(pid)) == run_owner if started else Path(f"/proc/{pid}").exists()


def end_abandoned_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark KILLED the runs of ``experiment_id`` left RUNNING by a process of this host that
    has ended (killed by a signal, the OOM killer, or a lost JVM before MLflow could close
    them); returns their ids.

    Runs started on other hosts, or before runs carried an owner, are left as they are: no
    process here can tell whether they still run.
    """
    host = socket.gethostname().replace("'", "''")
    abandoned = [
        run
        for run in client.search_runs(
            [experiment_id],
            filter_string=f"attributes.status = 'RUNNING' and tags.`{OWNER_TAG}` LIKE '{host}:%'",
            max_results=1000,
        )
        if not _is_alive(run.data.tags[OWNER_TAG])
    ]
    for run in abandoned:
        client.set_terminated(run.info.run_id, "KILLED")
    if abandoned:
        log.info(
            "marked %d run(s) KILLED that a process which has ended left RUNNING: %s",
            len(abandoned),
            ", ".join(f"{r.info.run_name} ({r.info.run_id})" for r in abandoned),
        )
    return [run.info.run_id for run in abandoned]


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


def metrics_from(table: pd.DataFrame, *, pooled: str, prefix: str = "") -> dict[str, float]:
    """A markets x figures table as MLflow metrics (NaN figures left out).

    Parameters
    ----------
    table : pandas.DataFrame
        One row per market, indexed by market, one column per figure.
    pooled : str
        The index label of the row pooled over all markets; its figures keep the bare name.
    prefix : str
        Put before every metric name, e.g. ``"val_"`` for validation figures.

    Returns
    -------
    dict of str to float
        ``{figure}`` for the pooled row, ``{figure}/{market}`` for each market's row.
    """
    metrics = {}
    for market, row in table.iterrows():
        for column, value in row.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            name = f"{prefix}{column}" if market == pooled else f"{prefix}{column}/{market}"
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
