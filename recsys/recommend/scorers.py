"""The scorers of a `recommend` run beside the served model: the popularity fallback and the
control arm's baseline, and the calibration that turns every scorer's scores into
``p_convert`` on the validation window."""

from __future__ import annotations

import logging

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.columns import unit
from recsys.config import Config
from recsys.eligibility import with_eligibility
from recsys.models import FAMILIES, Recommender
from recsys.models.baselines import Popularity, baseline_params
from recsys.recommend import calibrate
from recsys.recommend.lists import FALLBACK, MODEL
from recsys.recommend.served import Served
from recsys.supervision import Supervised, Supervision
from recsys.tables import read_table
from recsys.vocabulary import TUNE, VALIDATION

log = logging.getLogger(__name__)


def baselines(
    config: Config, *, full_df: DataFrame, supervised: Supervised
) -> tuple[Recommender, Recommender]:
    """The baselines a run serves beside the model, fitted on the snapshot's rows.

    Parameters
    ----------
    config : Config
        ``recommend.experiment.control`` names the control arm's baseline family.
    full_df : DataFrame
        The snapshot's ``full`` split of ``interactions``.
    supervised : Supervised
        The labelled examples of that split (popularity ranks offers by their acceptances).

    Returns
    -------
    tuple of Recommender
        (fallback, control): popularity, which scores what the model cannot, and the control
        arm's baseline (the same popularity model when the control is popularity).
    """
    fallback = Popularity().fit(full_df, supervised)
    family = config.recommend.experiment.control
    control = baseline(config, family).fit(full_df, supervised) if family != FALLBACK else fallback
    return fallback, control


def baseline(config: Config, family: str) -> Recommender:
    """An unfitted baseline of ``family``, with the parameters the config gives it.

    Parameters
    ----------
    config : Config
        The run's config (``train.models.ladder``, ``train.seed``).
    family : str
        A family of :data:`recsys.models.BASELINES`.

    Returns
    -------
    Recommender
    """
    return FAMILIES[family](baseline_params(config, family), seed=config.train.seed)


def fit_calibration(
    spark: SparkSession,
    config: Config,
    *,
    served: Served,
    interactions_df: DataFrame,
    catalog_df: DataFrame,
    supervision: Supervision,
) -> pd.DataFrame:
    """Per (scorer, market) Platt coefficients, fitted on the validation window.

    Each scorer is fitted on the ``tune`` rows of a hashed sample of users
    (``recommend.calibration_users``); its scores of what they were eligible for at the
    window's start are labelled by whether they converted to it in the window. Only sampled
    users are scored, so only they are fitted: the cost stays that of the sample at any scale.

    Parameters
    ----------
    spark : SparkSession
    config : Config
        The run's config; ``user_state`` of its snapshot is read.
    served : Served
        The served version; refitted on the sample unless it serves its own probability.
    interactions_df : DataFrame
        The snapshot's ``interactions`` rows, every split.
    catalog_df : DataFrame
        The ``catalog`` table.
    supervision : Supervision
        The snapshot's labelled examples.

    Returns
    -------
    pandas.DataFrame
        One row per (scorer, market) with ``intercept`` and ``slope`` (see
        :func:`recsys.recommend.calibrate.fit`); a model that serves its own probability gets
        the identity.
    """
    settings = config.recommend
    control_family = settings.experiment.control
    snapshot = config.interactions.snapshot_date
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
        scorers[control_family] = baseline(config, control_family).fit(tune_df, supervised)
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
