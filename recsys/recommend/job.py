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
import json
import logging
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from py4j.protocol import Py4JJavaError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys import tracking
from recsys.columns import unit
from recsys.config import Config
from recsys.eligibility import STATE_COLUMNS, with_eligibility
from recsys.errors import RecsysError
from recsys.interactions.build import FULL, TUNE, VALIDATION
from recsys.models import FAMILIES, Recommender, load_model
from recsys.models.baselines import Popularity, baseline_params
from recsys.progress import step
from recsys.recommend import calibrate, lists, publish, validate
from recsys.recommend.assign import arm_of, epsilon_of, is_exploring
from recsys.recommend.lists import EXPLORATION_REASON, FALLBACK, FALLBACK_REASON, MODEL
from recsys.recommend.offers import offer_terms_df, with_expected_value
from recsys.recommend.rank import exploration_candidates, ranked_lists
from recsys.supervision import Supervision
from recsys.tables import filesystem, publish_partition, read_table

log = logging.getLogger(__name__)


class Served:
    """The registered version being served, loaded into Spark."""

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


def run(spark: SparkSession, config: Config) -> None:
    settings = config.recommend
    snapshot = config.interactions.snapshot()
    generated_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    tracking.setup(config)
    client = MlflowClient()
    served = Served(spark, config, client)
    on_snapshot = F.col("snapshot_date") == F.lit(snapshot)
    interactions_df = read_table(spark, config, S.INTERACTIONS).where(on_snapshot)
    catalog_df = read_table(spark, config, S.CATALOG)
    users_df = (
        read_table(spark, config, S.USERS)
        .select(*STATE_COLUMNS, "household_size_hint")
        .withColumn("arm", arm_of(settings.experiment))
        .persist()
    )
    full_df = interactions_df.where(F.col("split") == FULL).persist()
    if full_df.isEmpty():
        raise RecsysError(
            f"interactions has no {FULL!r} rows for snapshot {snapshot}: run build-interactions"
        )

    with mlflow.start_run(run_name=f"recommend {snapshot}") as run:
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
        with step("recommend: eligibility"):
            verdicts_df = with_eligibility(users_df, catalog_df, settings.eligibility).persist()
            audit_df = verdicts_df.where(
                unit(f"{settings.experiment.id}/audit", "user_id") < F.lit(settings.audit_share)
            ).select(
                *S.ELIGIBILITY_AUDIT_SCHEMA.fieldNames()[:-1],
                F.lit(snapshot).alias("snapshot_date"),
            )
            publish_partition(
                spark,
                config,
                audit_df,
                S.ELIGIBILITY_AUDIT,
                partition_column="snapshot_date",
                value=snapshot,
            )
            reasons = _reason_counts(verdicts_df)
            mlflow.log_table(reasons, "eligibility_reasons.json")
        control_family = settings.experiment.control
        # Popularity ranks offers by their acceptances before the snapshot (the offer_log's).
        supervision = Supervision(spark, config, interactions_df)
        supervised = supervision.for_split(FULL)
        fallback = Popularity().fit(full_df, supervised)
        control = (
            _baseline(config, control_family).fit(full_df, supervised)
            if control_family != FALLBACK
            else fallback
        )
        with step("recommend: calibration"):
            coefficients = _calibration(
                spark, config, served, interactions_df, catalog_df, control_family, supervision
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
        with step("recommend: rank"):
            terms_df = offer_terms_df(spark, catalog_df, settings.value)
            candidates_df = lists.scored_candidates(
                users_df, verdicts_df, served.model, fallback, control, control_family
            )
            scored_df = (
                candidates_df.withColumn("epsilon", epsilon_of(settings.experiment))
                .withColumn("is_exploring", is_exploring(settings.experiment, F.col("epsilon")))
                .transform(calibrate.with_p_convert, coefficients)
                .transform(with_expected_value, terms_df)
            )
            _log_unpriced(config.markets.unpriced_markets(), settings.objective)
            scored_df = scored_df.persist()
            lists_df = ranked_lists(
                scored_df, settings.k, settings.objective, settings.experiment.id
            ).persist()
            publish_partition(
                spark,
                config,
                exploration_candidates(scored_df, settings.objective).select(
                    *S.EXPLORATION_CANDIDATES_SCHEMA.fieldNames()[:-3],
                    F.lit(settings.experiment.id).alias("experiment_id"),
                    F.lit(served.version).alias("model_version"),
                    F.lit(snapshot).alias("snapshot_date"),
                ),
                S.EXPLORATION_CANDIDATES,
                partition_column="snapshot_date",
                value=snapshot,
            )
            rows_df = lists.contract_rows(
                lists_df,
                users_df,
                terms_df,
                lists.reasons(
                    lists_df, served.model, control, full_df, config.recommend.reason_tokens
                ),
                config,
                {
                    "model_name": served.name,
                    "model_version": served.version,
                    "mlflow_run_id": served.run_id,
                },
                snapshot,
                generated_at,
            )
        with step("recommend: publish"):
            previous = publish.current(spark, config)
            folder = publish.stage(spark, config, rows_df, snapshot)
            staged_df = publish.read_folder(spark, folder)
            found = validate.problems(
                staged_df,
                users_df.select("market", "user_id", "arm"),
                verdicts_df,
                publish.read_folder(spark, previous.folder) if previous else None,
                k=settings.k,
                max_mix_shift=settings.publish.max_mix_shift,
            )
            summary = _summary(staged_df)
            mlflow.log_table(summary, "snapshot_summary.json")
            _log_figures(summary)
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
        log.info(
            "published %s snapshot %s: %s (mlflow run %s)",
            config.table(S.PLAN_RECOMMENDATIONS_CURRENT),
            published.snapshot,
            _headline(summary),
            run.info.run_id,
        )
    for df in (lists_df, scored_df, verdicts_df, users_df, full_df):
        df.unpersist()
    for model in (served.model, fallback, control):
        model.unpersist()
    supervision.unpersist()


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


def _baseline(config: Config, family: str) -> Recommender:
    return FAMILIES[family](baseline_params(config, family), seed=config.train.seed)


def _reason_counts(verdicts_df: DataFrame) -> pd.DataFrame:
    """Verdicts per market and reason (config-sized)."""
    return (
        verdicts_df.groupBy("market", F.coalesce("reason_code", F.lit("eligible")).alias("verdict"))
        .count()
        .orderBy("market", "verdict")
        .toPandas()
    )


def _calibration(
    spark: SparkSession,
    config: Config,
    served: Served,
    interactions_df: DataFrame,
    catalog_df: DataFrame,
    control_family: str,
    supervision: Supervision,
) -> pd.DataFrame:
    """Per (scorer, market) Platt coefficients, fitted on the validation window: each scorer
    fitted on the ``tune`` rows of a hashed sample of users (``calibration_users``), its
    scores of what they were eligible for at the window's start, labelled by whether they
    converted to it in the window. Only sampled users are scored, so only they are fitted:
    the cost stays that of the sample at any scale."""
    settings = config.recommend
    snapshot = config.interactions.snapshot()
    state_df = read_table(spark, config, S.USER_STATE).where(
        (F.col("snapshot_date") == F.lit(snapshot)) & (F.col("split") == TUNE)
    )
    users = state_df.count()
    share = min(1.0, settings.calibration_users / max(users, 1))
    sampled = unit(f"{settings.experiment.id}/calibration", "user_id") < F.lit(share)
    sample_df = state_df.where(sampled)
    candidates_df = (
        with_eligibility(sample_df, catalog_df, settings.eligibility)
        .where(F.col("eligible"))
        .join(
            sample_df.select("market", "user_id", "current_plan"),
            on=["market", "user_id"],
            how="inner",
        )
        .select("market", "user_id", "offer_id", "current_plan")
        .persist()
    )
    labels_df = (
        interactions_df.where(F.col("split") == VALIDATION)
        .select("market", "user_id", F.col("item_id").alias("offer_id"), F.lit(1).alias("label"))
        .distinct()
    )
    tune_df = interactions_df.where((F.col("split") == TUNE) & sampled).persist()
    supervised = supervision.for_split(TUNE)
    scorers = {FALLBACK: Popularity().fit(tune_df, supervised)}
    if not served.serves_probability:
        scorers[MODEL] = served.refit(tune_df, config.train.seed)
    if control_family != FALLBACK:
        scorers[control_family] = _baseline(config, control_family).fit(tune_df, supervised)
    labelled = None
    for name, model in scorers.items():
        scored_df = (
            model.score(candidates_df)
            .where(F.col("score").isNotNull())
            .join(labels_df, on=["market", "user_id", "offer_id"], how="left")
            .select(
                F.lit(name).alias("scorer"),
                "market",
                "score",
                F.coalesce("label", F.lit(0)).alias("label"),
            )
        )
        labelled = scored_df if labelled is None else labelled.unionByName(scored_df)
    log.info(
        "calibrating %s on a hashed sample of about %d of the %d users of the validation window",
        ", ".join(scorers),
        min(users, settings.calibration_users),
        users,
    )
    coefficients = calibrate.fit(labelled)
    if served.serves_probability:
        markets = sorted(config.markets.markets)
        coefficients = pd.concat([coefficients, calibrate.identity(MODEL, markets)])
    for model in scorers.values():
        model.unpersist()
    tune_df.unpersist()
    candidates_df.unpersist()
    return coefficients


def _summary(snapshot_df: DataFrame) -> pd.DataFrame:
    """Per (market, arm): users, rows, fallback and exploration shares, mean p_convert of the
    first slot (config-sized)."""
    first = F.col("rank") <= 1
    return (
        snapshot_df.groupBy("market", "arm")
        .agg(
            F.countDistinct("user_id").alias("users"),
            F.count(F.lit(1)).alias("rows"),
            F.avg((F.col("reason_code") == FALLBACK_REASON).cast("double")).alias("fallback_share"),
            F.avg((F.col("reason_code") == EXPLORATION_REASON).cast("double")).alias(
                "exploration_share"
            ),
            F.avg(F.when(first, F.col("p_convert"))).alias("top_p_convert"),
        )
        .orderBy("market", "arm")
        .toPandas()
    )


def _log_figures(summary: pd.DataFrame) -> None:
    by_arm = summary.groupby("arm")[["users", "rows"]].sum()
    metrics = {f"{arm}_users": float(r.users) for arm, r in by_arm.iterrows()}
    metrics["rows"] = float(summary["rows"].sum())
    for r in summary.itertuples():
        metrics[f"users_{r.arm}/{r.market}"] = float(r.users)
    tracking.log_metrics(metrics)


def _headline(summary: pd.DataFrame) -> str:
    by_arm = summary.groupby("arm")["users"].sum()
    arms = ", ".join(f"{arm} {int(n):,}" for arm, n in by_arm.items())
    return f"{int(summary['rows'].sum()):,} rows, users by arm: {arms}"
