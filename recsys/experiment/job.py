"""The `analyze` step: read any experiment's logs, write its results and decision report
(docs/experiments.md)."""

from __future__ import annotations

import datetime as dt
import logging
import math
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys import tracking
from recsys.config import Config
from recsys.errors import RecsysError
from recsys.experiment import analysis, report
from recsys.experiment.policy_values import policy_values
from recsys.progress import step
from recsys.tables import publish_partition, read_table

log = logging.getLogger(__name__)


def analyze_run(spark: SparkSession, config: Config) -> None:
    """Read the experiment's logs, write experiment_results and the decision report."""
    settings, experiment = config.analyze, config.recommend.experiment.id
    analyzed_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    mine = F.col("experiment_id") == F.lit(experiment)
    exposures_df = read_table(spark, config, S.EXPERIMENT_EXPOSURES).where(mine)
    outcomes_df = read_table(spark, config, S.EXPERIMENT_OUTCOMES).where(mine)
    analysis.check_columns(
        exposures_df, S.EXPERIMENT_EXPOSURES_SCHEMA, config.table(S.EXPERIMENT_EXPOSURES)
    )
    analysis.check_columns(
        outcomes_df,
        S.EXPERIMENT_OUTCOMES_SCHEMA,
        config.table(S.EXPERIMENT_OUTCOMES),
        optional=analysis.TRUTH_COLUMNS,
    )
    stamp = exposures_df.select("model_version", "snapshot_date").first()
    if stamp is None:
        raise RecsysError(
            f"{config.table(S.EXPERIMENT_EXPOSURES)} has no rows for experiment {experiment!r}"
        )
    model_name, model_version = config.train.registered_model, stamp["model_version"]
    markets = config.markets.markets
    unpriced = [m for m in markets if markets[m].offers.get(settings.reference_offer) is None]
    if unpriced:
        # Pooled revenue is counted in months of the reference offer's price.
        raise RecsysError(
            f"analyze.reference_offer: {settings.reference_offer!r} has no price in "
            f"{', '.join(unpriced)} (not sold there, or the market has no prices): analyze "
            "needs a price of it in every market to pool revenue across currencies"
        )
    reference = {m: float(markets[m].offers[settings.reference_offer]) for m in markets}

    with step("analyze: metrics per user"):
        logged_df = analysis.with_reference_revenue(
            analysis.population(exposures_df, outcomes_df), reference
        ).persist(StorageLevel.MEMORY_AND_DISK)
        conflicting, without_outcomes = analysis.check_population(logged_df)
        if conflicting:
            log.warning("%d users are logged in more than one arm: left out", conflicting)
        if without_outcomes:
            log.info("%d users have no outcome row: counted with zero outcomes", without_outcomes)
        users_df = logged_df.where(F.col("arms") == 1)
    with step("analyze: comparisons"):
        table = analysis.moments_table(users_df)
        unknown = sorted(set(table["market"]) - set(markets))
        if unknown:
            raise RecsysError(
                f"the experiment's logs name markets {unknown} that {config.markets_file} does "
                "not define: their currency and reference price are unknown"
            )
        moments = analysis.arm_moments(table)
        results = analysis.results(
            moments,
            settings,
            config.recommend.experiment.shares,
            {m: markets[m].currency for m in markets},
        )
        values = policy_values(
            users_df,
            moments,
            exposures_df=exposures_df,
            outcomes_df=outcomes_df,
            candidates_df=_exploration_candidates(spark, config, stamp["snapshot_date"]),
            level=settings.level,
        )
        sizes = {
            arm: m.n
            for (scope, arm, metric), m in moments.items()
            if scope == S.POOLED and metric == "conversion"
        }
        curve = analysis.cumulative_conversion(users_df, stamp["snapshot_date"], sizes)
    stamps = {
        "model_name": model_name,
        "model_version": str(model_version),
        "analyzed_at": analyzed_at,
        "experiment_id": experiment,
    }
    with step("analyze: experiment_results"):
        _write(
            spark,
            config,
            results.assign(**stamps),
            S.EXPERIMENT_RESULTS_SCHEMA,
            S.EXPERIMENT_RESULTS,
            experiment,
        )
        _write(
            spark,
            config,
            values.assign(analyzed_at=analyzed_at, experiment_id=experiment),
            S.EXPERIMENT_POLICY_VALUES_SCHEMA,
            S.EXPERIMENT_POLICY_VALUES,
            experiment,
        )
    logged_df.unpersist()
    tracking.setup(config)
    with mlflow.start_run(run_name=f"analyze {experiment}") as run:
        mlflow.set_tags(
            {
                "recsys.step": "analyze",
                "mlflow.source.git.commit": tracking.git_commit(),
                "recsys.experiment_id": experiment,
                "recsys.model_name": model_name,
                "recsys.model_version": str(model_version),
                "recsys.model_uri": f"models:/{model_name}/{model_version}",
            }
        )
        tracking.log_params(
            {"analyze": settings.model_dump(), "simulate": config.simulate.model_dump()}
        )
        tracking.log_metrics(_key_figures(results, values, settings))
        written = report.write(
            Path(settings.report_dir),
            experiment=experiment,
            model=f"{model_name} v{model_version}",
            family=_family(model_name, model_version),
            baseline=config.recommend.experiment.control,
            snapshot=stamp["snapshot_date"],
            results=results,
            values=values,
            curve=curve,
            settings=settings,
            shares=config.recommend.experiment.shares,
            caveats=_caveats(conflicting, without_outcomes),
        )
        for path in written.files:
            mlflow.log_artifact(str(path), artifact_path="report")
        mlflow.log_table(results, "experiment_results.json")
    log.info("decision report: %s (mlflow run %s)", written.path, run.info.run_id)
    for line in written.headline:
        log.info("  %s", line)


def _write(
    spark: SparkSession, config: Config, frame: pd.DataFrame, schema, name: str, experiment: str
) -> None:
    columns = schema.fieldNames()
    rows = [tuple(_plain(r[c]) for c in columns) for r in frame.to_dict("records")]
    df = spark.createDataFrame(rows, schema)
    publish_partition(spark, config, df, name, partition_column="experiment_id", value=experiment)


def _plain(value):
    """A pandas or numpy scalar as the Python value Spark's schema check accepts."""
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _exploration_candidates(
    spark: SparkSession, config: Config, snapshot: dt.date
) -> DataFrame | None:
    """The experiment's ``exploration_candidates`` of the served snapshot; None without the
    table (no off-policy estimate then)."""
    if not spark.catalog.tableExists(config.table(S.EXPLORATION_CANDIDATES)):
        log.info("no %s: no off-policy estimate", config.table(S.EXPLORATION_CANDIDATES))
        return None
    return read_table(spark, config, S.EXPLORATION_CANDIDATES).where(
        (F.col("snapshot_date") == F.lit(snapshot))
        & (F.col("experiment_id") == F.lit(config.recommend.experiment.id))
    )


def _key_figures(results: pd.DataFrame, values: pd.DataFrame, settings) -> dict[str, float]:
    adjustment = "cuped" if settings.cuped else "raw"
    pooled = results[(results["market"] == S.POOLED) & (results["adjustment"] == adjustment)]
    figures = {}
    for r in pooled.itertuples():
        prefix = f"{r.comparison}/{r.metric}"
        figures.update(
            {
                f"{prefix}/lift": r.lift,
                f"{prefix}/lift_low": r.lift_low,
                f"{prefix}/lift_high": r.lift_high,
                f"{prefix}/rel_lift": r.rel_lift,
                f"{prefix}/p_value": r.p_value,
            }
        )
    for r in values.itertuples():
        figures[f"value/{r.policy}/{r.metric}/{r.estimator}"] = r.value
    srm = results.loc[results["market"] == S.POOLED, "srm_p_value"].iloc[0]
    figures["srm_p_value"] = srm
    return {k: float(v) for k, v in figures.items() if pd.notna(v)}


def _caveats(conflicting: int, without_outcomes: int) -> list[str]:
    found = []
    if conflicting:
        found.append(f"{conflicting:,} users were logged in more than one arm and are left out.")
    if without_outcomes:
        found.append(f"{without_outcomes:,} users had no outcome row and count as zeros.")
    return found


def _family(model_name: str, model_version: object) -> str | None:
    """The family of the registered version under test, or None for logs of a model this
    tracking store does not hold (analyze reads any experiment's logs)."""
    try:
        version = MlflowClient().get_model_version(model_name, str(model_version))
    except MlflowException:
        return None
    return version.tags.get("recsys.family")
