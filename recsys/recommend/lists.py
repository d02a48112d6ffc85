"""The lists of one `recommend` run, as pure DataFrame functions: candidates scored by each
arm's model, their reasons, and the rows of the ``plan_recommendations`` contract."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.columns import literal_map
from recsys.config import Config
from recsys.models import Recommender
from recsys.models.base import EXPLAIN_KEYS
from recsys.vocabulary import (
    CONTROL,
    EXPLORATION_REASON,
    FALLBACK_REASON,
    HOLDOUT_ARM,
    HOLDOUT_REASON,
    NO_ELIGIBLE_OFFER,
    TREATMENT,
)

MODEL = "model"  # the scorer name of the served model; baselines go by their family
FALLBACK = "popularity"


def scored_candidates(
    users_df: DataFrame,
    verdicts_df: DataFrame,
    model: Recommender,
    fallback: Recommender,
    control: Recommender,
    control_family: str,
) -> DataFrame:
    """(market, user_id, offer_id, arm, scorer, score) of every eligible offer of every user
    in the treatment and control arms."""
    keys = ["market", "user_id", "offer_id"]
    eligible_df = (
        verdicts_df.where(F.col("eligible"))
        .join(
            users_df.where(F.col("arm") != HOLDOUT_ARM).select(
                "market", "user_id", "current_plan", "arm"
            ),
            on=["market", "user_id"],
            how="inner",
        )
        .select(*keys, "current_plan", "arm")
    )
    treatment_df = eligible_df.where(F.col("arm") == TREATMENT)
    control_df = eligible_df.where(F.col("arm") == CONTROL)
    model_scores = model.score(treatment_df).withColumnRenamed("score", "_model")
    fallback_scores = fallback.score(treatment_df).withColumnRenamed("score", "_fallback")
    treated_df = (
        treatment_df.join(model_scores, on=keys, how="left")
        .join(fallback_scores, on=keys, how="left")
        .select(
            *keys,
            "arm",
            F.when(F.col("_model").isNull(), F.lit(FALLBACK))
            .otherwise(F.lit(MODEL))
            .alias("scorer"),
            F.coalesce("_model", "_fallback").alias("score"),
        )
    )
    controlled_df = control_df.join(control.score(control_df), on=keys, how="left").select(
        *keys, "arm", F.lit(control_family).alias("scorer"), "score"
    )
    return treated_df.unionByName(controlled_df)


def reasons(
    lists_df: DataFrame,
    model: Recommender,
    control: Recommender,
    full_df: DataFrame,
    reason_tokens: Collection[str] | None = None,
) -> DataFrame:
    """(market, user_id, offer_id, reason_code) of every listed offer; only the
    ``reason_tokens`` (``recommend.reason_tokens``; None: any) may be a reason."""
    greedy_df = lists_df.where(~F.col("is_exploring"))
    by_model = model.explain(
        greedy_df.where((F.col("arm") == TREATMENT) & (F.col("scorer") == MODEL)).select(
            *EXPLAIN_KEYS
        ),
        full_df,
        reason_tokens=reason_tokens,
    )
    by_control = control.explain(
        greedy_df.where(F.col("arm") == CONTROL).select(*EXPLAIN_KEYS),
        full_df,
        reason_tokens=reason_tokens,
    )
    return by_model.unionByName(by_control)


def contract_rows(
    lists_df: DataFrame,
    *,
    users_df: DataFrame,
    terms_df: DataFrame,
    reasons_df: DataFrame,
    config: Config,
    stamp: dict[str, str],
    snapshot: dt.date,
    generated_at: dt.datetime,
) -> DataFrame:
    """The contract rows: lists with their offer's terms and reasons, plus one rank-0 row per
    user without a list (holdout, or nothing eligible). ``stamp``: model_name, model_version
    and mlflow_run_id of the served model."""
    keys = list(EXPLAIN_KEYS)
    reason = (
        F.when(F.col("is_exploring"), F.lit(EXPLORATION_REASON))
        .when((F.col("arm") == TREATMENT) & (F.col("scorer") == FALLBACK), F.lit(FALLBACK_REASON))
        .otherwise(F.col("reason_code"))
    )
    offers_df = (
        lists_df.join(reasons_df, on=keys, how="left")
        .join(F.broadcast(terms_df.drop("value")), on=["market", "offer_id"], how="inner")
        .select(
            "user_id",
            "market",
            "rank",
            "offer_id",
            "plan_id",
            "display_name",
            "locale",
            "price_amount",
            "currency",
            "price_display",
            "score",
            "p_convert",
            "expected_value",
            reason.alias("reason_code"),
            "arm",
            "propensity",
        )
    )
    locales = {code: m.locale for code, m in config.markets.markets.items()}
    currencies = {code: m.currency for code, m in config.markets.markets.items()}
    no_offer_df = users_df.join(
        lists_df.select("market", "user_id").distinct(), on=["market", "user_id"], how="left_anti"
    ).select(
        "user_id",
        "market",
        F.lit(S.NO_OFFER_RANK).alias("rank"),
        literal_map(locales)[F.col("market")].alias("locale"),
        literal_map(currencies)[F.col("market")].alias("currency"),
        F.when(F.col("arm") == HOLDOUT_ARM, F.lit(HOLDOUT_REASON))
        .otherwise(F.lit(NO_ELIGIBLE_OFFER))
        .alias("reason_code"),
        "arm",
        F.lit(1.0).alias("propensity"),
    )
    return (
        offers_df.unionByName(no_offer_df, allowMissingColumns=True)
        .withColumn("experiment_id", F.lit(config.recommend.experiment.id))
        .withColumns({column: F.lit(value) for column, value in stamp.items()})
        .withColumn("generated_at", F.lit(generated_at).cast("timestamp"))
        .withColumn("snapshot_date", F.lit(snapshot))
        .select(*(F.col(f.name).cast(f.dataType) for f in S.PLAN_RECOMMENDATIONS_SCHEMA))
    )
