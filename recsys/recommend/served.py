"""The registered model version that `recommend` serves: found by alias, its copy staged
where the executors can read it, loaded into Spark."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from mlflow import MlflowClient
from py4j.protocol import Py4JJavaError
from pyspark.sql import DataFrame, SparkSession

from recsys import tracking
from recsys.config import Config
from recsys.errors import RecsysError
from recsys.models import FAMILIES, Recommender, load_model
from recsys.tables import filesystem

log = logging.getLogger(__name__)


class Served:
    """The registered version being served, loaded into Spark.

    Parameters
    ----------
    spark : SparkSession
    config : Config
        ``train.registered_model`` names the model, ``recommend.alias`` the version to serve
        (falling back to ``interim`` while no version is champion), ``train.model_dir`` where
        its copy is kept for the executors.
    client : MlflowClient
        A client of the tracking server the model is registered on.

    Attributes
    ----------
    name, version, alias, family, run_id : str
        What is served, stamped on every published row.
    model : Recommender
        The loaded model.
    """

    def __init__(self, spark: SparkSession, config: Config, client: MlflowClient) -> None:
        name = config.train.registered_model
        version, alias = tracking.version_by_alias(client, name, config.recommend.alias)
        self.name, self.version, self.alias = name, str(version.version), alias
        tags = version.tags
        self.family = tags.get("recsys.family")
        if self.family not in FAMILIES:
            raise RecsysError(
                f"{name} v{self.version}: no recsys.family tag; was it registered by train?"
            )
        self.params = json.loads(tags.get("recsys.params", "{}"))
        self.market_params = json.loads(tags.get("recsys.market_params", "{}"))
        self.run_id = tags.get("recsys.train_run_id") or version.run_id
        self.trained_on = tags.get("recsys.snapshot_date")
        base = config.train.model_dir.rstrip("/")
        if "://" in base:
            # Executors cannot read the driver's disk: they load a copy on the shared storage.
            uri = f"{base}/registry/{name}/v{self.version}"
            with tempfile.TemporaryDirectory(prefix="recsys-model-") as folder:
                _stage(spark, tracking.download_recsys_model(name, self.version, Path(folder)), uri)
        else:
            destination = Path(base) / "registry" / name / f"v{self.version}"
            saved = tracking.download_recsys_model(name, self.version, destination)
            uri = saved.resolve().as_uri()
        self.model = load_model(spark, uri)
        if alias == tracking.INTERIM:
            log.warning(
                "no version of %s has passed the gate yet: serving the interim v%s (%s), the "
                "best family on train's holdout (%s)",
                name,
                self.version,
                self.family,
                tags.get("recsys.gate", ""),
            )
        log.info(
            "serving %s v%s (%s, alias %s, trained on snapshot %s)",
            name,
            self.version,
            self.family,
            alias,
            self.trained_on,
        )

    @property
    def serves_probability(self) -> bool:
        """Whether the served family's score is already the logit of P(accept): its
        probability is served as it is, not calibrated."""
        return FAMILIES[self.family].serves_probability

    def refit(self, rows_df: DataFrame, seed: int) -> Recommender:
        """The same family and parameters fitted on other rows (for calibration)."""
        model = FAMILIES[self.family](self.params, seed=seed, market_params=self.market_params)
        return model.fit(rows_df)


def _stage(spark: SparkSession, local: Path, uri: str) -> None:
    """Copy the folder ``local`` to ``uri`` on any filesystem Hadoop reaches (``s3a://``,
    ``hdfs://``, ``abfss://``, ``gs://``, ``file://``), replacing what is there."""
    try:
        fs, target = filesystem(spark, uri)
        _, source = filesystem(spark, local.resolve().as_uri())
        # Onto an existing folder, copyFromLocalFile copies into it (v1/<artifact>): start clean.
        fs.delete(target, True)
        fs.copyFromLocalFile(False, True, source, target)
    except Py4JJavaError as exc:
        raise RecsysError(
            f"cannot stage the served model at {uri}: {exc.java_exception.toString()}"
        ) from None
