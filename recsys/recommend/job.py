"""The `recommend` step (docs/recommendations.md): the served model's top-k offers for every
user of every market, published atomically as a snapshot of ``plan_recommendations``.

1. Eligibility of every (user, offer of the market) from the ``users`` table, with a reason
   for each exclusion, written to ``eligibility_audit``.
2. Arms by salted hash: ``treatment`` gets the registered model's list (``models:/<name>@
   champion``), ``control`` the configured baseline's, ``holdout`` nothing.
3. Scores of eligible offers; an offer the model cannot score (a user it never saw) is scored
   by market popularity instead and labelled ``fallback_popular``.
4. Calibration of each scorer's scores to ``p_convert`` per market on the validation window
   (the model refitted on ``tune`` with its registered parameters; a conversion model's own
   probability is served as it is), ``expected_value =
   p_convert x value`` in local currency (``p_convert`` in a market without prices), ranking
   by the objective, exploration.
5. Localized names and prices, a reason per row, the model's name, version and run.
6. Stage, validate, and only then serve (``plan_recommendations_current``).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import mlflow
import pandas as pd
from mlflow import MlflowClient
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys import tracking
from recsys.columns import unit
from recsys.config import Config, RecommendConfig
from recsys.eligibility import STATE_COLUMNS, with_eligibility
from recsys.errors import RecsysError
from recsys.models import Recommender
from recsys.progress import step
from recsys.recommend import calibrate, lists, publish, scorers, validate
from recsys.recommend.assign import arm_of, epsilon_of, is_exploring
from recsys.recommend.lists import MODEL
from recsys.recommend.offers import offer_terms_df, with_expected_value
from recsys.recommend.rank import exploration_candidates, ranked_lists
from recsys.recommend.served import Served
from recsys.recommend.summary import headline, log_summary, snapshot_summary
from recsys.supervision import Supervision
from recsys.tables import publish_partition, read_table
from recsys.vocabulary import FULL

log = logging.getLogger(__name__)


def run(spark: SparkSession, config: Config) -> None:
    snapshot = config.interactions.snapshot_date
    generated_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    tracking.setup(config)
    served = Served(spark, config, MlflowClient())
    inputs = _read_inputs(spark, config, snapshot=snapshot)
    with mlflow.start_run(run_name=f"recommend {snapshot}") as run:
        _log_run_settings(served=served, settings=config.recommend, snapshot=snapshot)
        verdicts_df = _eligibility(spark, config, inputs=inputs, snapshot=snapshot)
        # Popularity ranks offers by their acceptances before the snapshot (the offer_log's).
        supervision = Supervision(spark, config, inputs.interactions_df)
        fallback, control = scorers.baselines(
            config, full_df=inputs.full_df, supervised=supervision.for_split(FULL)
        )
        coefficients = _calibration(
            spark, config, served=served, inputs=inputs, supervision=supervision
        )
        ranked = _rank(
            spark,
            config,
            served=served,
            inputs=inputs,
            verdicts_df=verdicts_df,
            fallback=fallback,
            control=control,
            coefficients=coefficients,
            snapshot=snapshot,
            generated_at=generated_at,
        )
        published, summary = _publish(
            spark,
            config,
            rows_df=ranked.rows_df,
            users_df=inputs.users_df,
            verdicts_df=verdicts_df,
            snapshot=snapshot,
        )
        log.info(
            "published %s snapshot %s: %s (mlflow run %s)",
            config.table(S.PLAN_RECOMMENDATIONS_CURRENT),
            published.snapshot,
            headline(summary),
            run.info.run_id,
        )
    for df in (ranked.lists_df, ranked.scored_df, verdicts_df, inputs.users_df, inputs.full_df):
        df.unpersist()
    for model in (served.model, fallback, control):
        model.unpersist()
    supervision.unpersist()


@dataclass(frozen=True)
class _Inputs:
    """The tables one run reads: the snapshot's interactions (``full_df``: the ``full``
    split, cached), the catalogue, and every user's state with their arm (cached)."""

    interactions_df: DataFrame
    full_df: DataFrame
    catalog_df: DataFrame
    users_df: DataFrame


@dataclass(frozen=True)
class _Ranked:
    """What `rank` leaves: the contract rows, and the cached frames they derive from."""

    rows_df: DataFrame
    lists_df: DataFrame
    scored_df: DataFrame


def _read_inputs(spark: SparkSession, config: Config, *, snapshot: dt.date) -> _Inputs:
    interactions_df = read_table(spark, config, S.INTERACTIONS).where(
        F.col("snapshot_date") == F.lit(snapshot)
    )
    catalog_df = read_table(spark, config, S.CATALOG)
    users_df = (
        read_table(spark, config, S.USERS)
        .select(*STATE_COLUMNS, "household_size_hint")
        .withColumn("arm", arm_of(config.recommend.experiment))
        .persist()
    )
    full_df = interactions_df.where(F.col("split") == FULL).persist()
    if full_df.isEmpty():
        raise RecsysError(
            f"interactions has no {FULL!r} rows for snapshot {snapshot}: run build-interactions"
        )
    return _Inputs(
        interactions_df=interactions_df,
        full_df=full_df,
        catalog_df=catalog_df,
        users_df=users_df,
    )


def _log_run_settings(*, served: Served, settings: RecommendConfig, snapshot: dt.date) -> None:
    mlflow.set_tags(
        {
            "recsys.step": "recommend",
            "mlflow.source.git.commit": tracking.git_commit(),
            "recsys.model_name": served.name,
            "recsys.model_version": served.version,
            "recsys.model_alias": served.alias,
            "recsys.model_family": served.family,
            "recsys.model_run_id": served.run_id,
        }
    )
    tracking.log_params(
        {
            "snapshot_date": str(snapshot),
            "k": settings.k,
            "objective": settings.objective,
            "experiment": settings.experiment.model_dump(),
            "eligibility": settings.eligibility.model_dump(),
            "value": settings.value.model_dump(),
        }
    )


def _eligibility(
    spark: SparkSession, config: Config, *, inputs: _Inputs, snapshot: dt.date
) -> DataFrame:
    """Every (user, offer) verdict (cached); a hashed share of them to ``eligibility_audit``."""
    settings = config.recommend
    with step("recommend: eligibility"):
        verdicts_df = with_eligibility(
            inputs.users_df, inputs.catalog_df, settings.eligibility
        ).persist()
        audit_df = (
            verdicts_df.where(
                unit(f"{settings.experiment.id}/audit", "user_id") < F.lit(settings.audit_share)
            )
            .withColumn("snapshot_date", F.lit(snapshot))
            .select(*S.ELIGIBILITY_AUDIT_SCHEMA.fieldNames())
        )
        publish_partition(
            spark,
            config,
            audit_df,
            S.ELIGIBILITY_AUDIT,
            partition_column="snapshot_date",
            value=snapshot,
        )
        mlflow.log_table(_reason_counts(verdicts_df), "eligibility_reasons.json")
    return verdicts_df


def _calibration(
    spark: SparkSession,
    config: Config,
    *,
    served: Served,
    inputs: _Inputs,
    supervision: Supervision,
) -> pd.DataFrame:
    """Per (scorer, market) calibration coefficients
    (:func:`~recsys.recommend.scorers.fit_calibration`), logged."""
    with step("recommend: calibration"):
        coefficients = scorers.fit_calibration(
            spark,
            config,
            served=served,
            interactions_df=inputs.interactions_df,
            catalog_df=inputs.catalog_df,
            supervision=supervision,
        )
        mlflow.log_table(coefficients, "calibration.json")
        if served.serves_probability:
            log.info("  %s (%s) serves its own probabilities", MODEL, served.family)
        for r in coefficients.dropna(subset=["rate"]).itertuples():
            log.info(
                "  %-10s %s: p = sigmoid(%.3f + %.4f x score); observed %.4f, fitted %.4f",
                r.scorer,
                r.market,
                r.intercept,
                r.slope,
                r.rate,
                r.predicted,
            )
    return coefficients


def _rank(
    spark: SparkSession,
    config: Config,
    *,
    served: Served,
    inputs: _Inputs,
    verdicts_df: DataFrame,
    fallback: Recommender,
    control: Recommender,
    coefficients: pd.DataFrame,
    snapshot: dt.date,
    generated_at: dt.datetime,
) -> _Ranked:
    """Score, calibrate and rank every arm's eligible offers; write the exploration slice's
    candidates; build the contract rows."""
    settings = config.recommend
    experiment = settings.experiment
    with step("recommend: rank"):
        terms_df = offer_terms_df(spark, inputs.catalog_df, settings.value)
        candidates_df = lists.scored_candidates(
            users_df=inputs.users_df,
            verdicts_df=verdicts_df,
            model=served.model,
            fallback=fallback,
            control=control,
            control_family=experiment.control,
        )
        scored_df = (
            candidates_df.withColumn("epsilon", epsilon_of(experiment))
            .withColumn("is_exploring", is_exploring(experiment, F.col("epsilon")))
            .transform(calibrate.with_p_convert, coefficients)
            .transform(with_expected_value, terms_df)
        )
        _log_unpriced(config.markets.unpriced_markets(), settings.objective)
        scored_df = scored_df.persist()
        lists_df = ranked_lists(scored_df, settings.k, settings.objective, experiment.id).persist()
        publish_partition(
            spark,
            config,
            exploration_candidates(scored_df, settings.objective)
            .withColumns(
                {
                    "experiment_id": F.lit(experiment.id),
                    "model_version": F.lit(served.version),
                    "snapshot_date": F.lit(snapshot),
                }
            )
            .select(*S.EXPLORATION_CANDIDATES_SCHEMA.fieldNames()),
            S.EXPLORATION_CANDIDATES,
            partition_column="snapshot_date",
            value=snapshot,
        )
        rows_df = lists.contract_rows(
            lists_df,
            users_df=inputs.users_df,
            terms_df=terms_df,
            reasons_df=lists.reasons(
                lists_df,
                model=served.model,
                control=control,
                full_df=inputs.full_df,
                reason_tokens=settings.reason_tokens,
            ),
            config=config,
            stamp={
                "model_name": served.name,
                "model_version": served.version,
                "mlflow_run_id": served.run_id,
            },
            snapshot=snapshot,
            generated_at=generated_at,
        )
    return _Ranked(rows_df=rows_df, lists_df=lists_df, scored_df=scored_df)


def _publish(
    spark: SparkSession,
    config: Config,
    *,
    rows_df: DataFrame,
    users_df: DataFrame,
    verdicts_df: DataFrame,
    snapshot: dt.date,
) -> tuple[publish.Published, pd.DataFrame]:
    """Stage the rows, validate them, and serve them only if valid; (published, summary)."""
    settings = config.recommend
    with step("recommend: publish"):
        previous = publish.current(spark, config)
        folder = publish.stage(spark, config, rows_df, snapshot)
        staged_df = publish.read_folder(spark, folder)
        found = validate.problems(
            staged_df,
            users_df=users_df.select("market", "user_id", "arm"),
            verdicts_df=verdicts_df,
            previous_df=publish.read_folder(spark, previous.folder) if previous else None,
            k=settings.k,
            max_mix_shift=settings.publish.max_mix_shift,
        )
        summary = snapshot_summary(staged_df)
        mlflow.log_table(summary, "snapshot_summary.json")
        log_summary(summary)
        if found:
            mlflow.set_tag("recsys.published", "false")
            mlflow.log_text("\n".join(found), "validation_problems.txt")
            serving = f"snapshot {previous.snapshot}" if previous else "nothing yet"
            raise publish.PublishError(
                f"snapshot {snapshot} failed validation and was not published; "
                f"{S.PLAN_RECOMMENDATIONS_CURRENT} still serves {serving}. Problems:\n  "
                + "\n  ".join(found)
                + f"\nThe rejected rows are kept for inspection in {folder}"
            )
        published = publish.commit(spark, config, folder)
        mlflow.set_tags({"recsys.published": "true", "recsys.snapshot_folder": folder})
    return published, summary


def _log_unpriced(markets: list[str], objective: str) -> None:
    """Say once which markets rank without money: their expected_value is p_convert."""
    if not markets:
        return
    if objective == "expected_value":
        consequence = "objective expected_value ranks by p_convert there"
    else:
        consequence = "expected_value is p_convert there"
    named = f"markets {', '.join(markets)} have" if len(markets) > 1 else f"market {markets[0]} has"
    log.info("%s no prices: %s", named, consequence)


def _reason_counts(verdicts_df: DataFrame) -> pd.DataFrame:
    """Verdicts per market and reason (config-sized)."""
    return (
        verdicts_df.groupBy("market", F.coalesce("reason_code", F.lit("eligible")).alias("verdict"))
        .count()
        .orderBy("market", "verdict")
        .toPandas()
    )
