"""Labelled (user, offer) examples from logs: what a supervised family's label is.

Examples come from logged impressions where the ``offer_log`` has them (the legacy policy
showed the offer with a logged propensity; the label is whether the user took it within
``interactions.attribution_days``, before the window's end), and from plan-page views
(``is_organic``: the user opened the offer unprompted), which reach offers the logging policy
never showed to some users. Without impressions (own data such as the Telco example) every
offer a user was eligible for at the window's start is an example, labelled by whether the
user converted to it in the window (:data:`CANDIDATES`).

An experiment's logs label the offers its users looked at by what they took. Search trials
cross-fit: users are split into :data:`FOLDS` folds by hash, each scored by the model fitted
on the others. :mod:`recsys.supervision` decides which windows a fit learns from.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.errors import RecsysError

IMPRESSIONS, CANDIDATES = "impressions", "candidates"
FOLDS = 2  # cross-fitting of the search trials


def fold_of(user_id: Column) -> Column:
    """The cross-fitting fold of a user, by hash.

    Parameters
    ----------
    user_id : Column
        The user id.

    Returns
    -------
    Column
        An int in 0 .. ``FOLDS - 1``, the same for a user in every run.
    """
    return F.abs(F.xxhash64(F.lit("conversion/fold"), user_id) % FOLDS).cast("int")


def rows_source(wanted: str, *, has_impressions: bool, snapshot: dt.date) -> str:
    """What the examples are: ``train.models.conversion.rows`` resolved against the log.

    Parameters
    ----------
    wanted : str
        ``train.models.conversion.rows``: ``auto``, ``impressions`` or ``candidates``.
    has_impressions : bool
        Whether the ``offer_log`` of the snapshot has ``offer_impression`` rows.
    snapshot : datetime.date
        The snapshot, named by the error.

    Returns
    -------
    str
        :data:`IMPRESSIONS` or :data:`CANDIDATES`; ``auto`` is impressions where the log
        has them.

    Raises
    ------
    RecsysError
        Impressions are asked for and the log has none.
    """
    if wanted == IMPRESSIONS and not has_impressions:
        raise RecsysError(
            "train.models.conversion.rows: impressions, but offer_log has no "
            f"offer_impression rows for snapshot {snapshot}; set it to auto or candidates"
        )
    if wanted == "auto":
        return IMPRESSIONS if has_impressions else CANDIDATES
    return wanted


def labelled_log(log_df: DataFrame, begin: dt.datetime, end: dt.datetime) -> DataFrame:
    """The ``offer_log``'s impressions and plan-page views in ``[begin, end)``, labelled.

    Parameters
    ----------
    log_df : DataFrame
        Rows of ``offer_log`` (:data:`recsys.schemas.OFFER_LOG_SCHEMA`) of one snapshot.
    begin, end : datetime.datetime
        The window.

    Returns
    -------
    DataFrame
        (market, user_id, offer_id, label, propensity, is_organic): ``label`` is 1.0 when
        the user took the offer within the attribution days and before ``end`` (no label reads
        past the window), ``is_organic`` marks a page view. An impression whose propensity is
        missing or not above 0 cannot have been logged by the policy that showed the offer: it
        carries no weight a model could use, is never divided by, and is left out.
    """
    is_view = F.col("event_type") == S.PLAN_PAGE_VIEW
    shown = (F.col("event_type") == S.OFFER_IMPRESSION) & (F.col("propensity") > 0)
    inside = (F.col("event_ts") >= F.lit(begin)) & (F.col("event_ts") < F.lit(end))
    label = F.col("accepted_ts").isNotNull() & (F.col("accepted_ts") < F.lit(end))
    return log_df.where((shown | is_view) & inside).select(
        "market",
        "user_id",
        "offer_id",
        label.cast("double").alias("label"),
        "propensity",
        is_view.alias("is_organic"),
    )


def experiment_log(exposures_df: DataFrame, outcomes_df: DataFrame) -> DataFrame:
    """An experiment's looked-at offers, labelled by its outcomes.

    Parameters
    ----------
    exposures_df, outcomes_df
        Rows of ``experiment_exposures`` and ``experiment_outcomes``
        (:data:`recsys.schemas.EXPERIMENT_EXPOSURES_SCHEMA`, ``..._OUTCOMES_SCHEMA``).

    Returns
    -------
    DataFrame
        (experiment_id, snapshot_date, market, user_id, offer_id, label, propensity): one row
        per offer a user looked at (``is_examined``) with a logged propensity above 0;
        ``label`` is 1.0 when the user converted to that offer in the window. Users without
        an outcome row are left out: nothing says what they did.
    """
    looked = F.col("offer_id").isNotNull() & F.col("is_examined") & (F.col("propensity") > 0)
    taken_df = outcomes_df.select("experiment_id", "user_id", "converted_offer")
    return (
        exposures_df.where(looked)
        .join(taken_df, on=["experiment_id", "user_id"], how="inner")
        .select(
            "experiment_id",
            "snapshot_date",
            "market",
            "user_id",
            "offer_id",
            F.coalesce(F.col("converted_offer") == F.col("offer_id"), F.lit(False))
            .cast("double")
            .alias("label"),
            "propensity",
        )
    )
