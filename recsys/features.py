"""Features of (user, offer) pairs for the conversion model, read at one moment.

Everything about a user is read at a split point and from nothing after it: behaviour from
the ``interactions`` rows of that split (events before it, decayed to it), the mean value
of the events whose value measures the user (``train.models.conversion.value_events``, from
the events before it), the subscription state from ``user_state`` at that split, and the
profile (household hint, signup date) from ``users``. An offer is described by its
attributes (kind, tier, period, trial, discount, price relative to its market), not only by
its id, so a model can score (segment, offer) pairs the logging policy never showed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.interactions.validate import max_value_of
from recsys.vocabulary import KEYS

USER_FEATURE_COLUMNS = (
    "market",
    "user_id",
    "current_plan",
    "n_addons",
    "active_addons",
    "has_used_trial",
    "is_student_verified",
    "household_size_hint",
    "tenure_days",
    "behaviour",
    "offer_interest",
    "event_values",
)
OFFER_FEATURE_COLUMNS = (
    "market",
    "offer_id",
    "kind",
    "tier",
    "period_days",
    "trial_days",
    "discount_months",
    "relative_price",
)


def user_features(
    rows_df: DataFrame,
    state_df: DataFrame,
    profile_df: DataFrame,
    *,
    at: dt.date,
    values_df: DataFrame | None = None,
) -> DataFrame:
    """One row per user of ``state_df`` or ``rows_df``: :data:`USER_FEATURE_COLUMNS`.

    Parameters
    ----------
    rows_df : DataFrame
        One split of ``interactions`` (``market``, ``user_id``, ``item_id``, ``is_offer``,
        ``confidence``): the user's decayed behaviour before the moment.
    state_df : DataFrame
        ``user_state`` at the same split: ``current_plan``, ``active_addons``,
        ``has_used_trial``, ``is_student_verified`` per (market, user_id).
    profile_df : DataFrame
        ``users``: ``signup_date`` and ``household_size_hint`` per (market, user_id).
    at : datetime.date
        The moment (the split's day), from which tenure is counted.
    values_df : DataFrame, optional
        :func:`event_values` at the same moment; without it ``event_values`` is empty.

    Returns
    -------
    DataFrame
        ``behaviour`` maps each behaviour token to its confidence, ``offer_interest`` each
        offer to the user's confidence in it (page views, renewals, past conversions) and
        ``event_values`` each value event type to its mean value; a user with no state at the
        moment is on the free plan with nothing held.
    """
    entry = F.struct(F.col("item_id"), F.col("confidence").cast("double"))
    behaviour_df = rows_df.groupBy(*KEYS).agg(
        F.map_from_entries(F.collect_list(F.when(~F.col("is_offer"), entry))).alias("behaviour"),
        F.map_from_entries(F.collect_list(F.when(F.col("is_offer"), entry))).alias(
            "offer_interest"
        ),
    )
    profile = profile_df.select(*KEYS, "signup_date", "household_size_hint")
    no_addons = F.array().cast("array<string>")
    addons = F.coalesce("active_addons", no_addons)
    empty = F.create_map().cast("map<string,double>")
    if values_df is None:
        values_df = rows_df.sparkSession.createDataFrame(
            [], "market string, user_id string, event_values map<string,double>"
        )
    return (
        state_df.select(
            *KEYS, "current_plan", "active_addons", "has_used_trial", "is_student_verified"
        )
        .join(behaviour_df, on=list(KEYS), how="full")
        .join(profile, on=list(KEYS), how="left")
        .join(values_df, on=list(KEYS), how="left")
        .select(
            *KEYS,
            F.coalesce("current_plan", F.lit(S.FREE_PLAN)).alias("current_plan"),
            F.size(addons).alias("n_addons"),
            addons.alias("active_addons"),
            F.coalesce("has_used_trial", F.lit(False)).alias("has_used_trial"),
            F.coalesce("is_student_verified", F.lit(False)).alias("is_student_verified"),
            F.col("household_size_hint").cast("int").alias("household_size_hint"),
            F.datediff(F.lit(at), F.col("signup_date")).alias("tenure_days"),
            F.coalesce("behaviour", empty).alias("behaviour"),
            F.coalesce("offer_interest", empty).alias("offer_interest"),
            F.coalesce("event_values", empty).alias("event_values"),
        )
    )


def event_values(
    events_df: DataFrame,
    event_types: Sequence[str],
    max_values: Mapping[str, float],
    *,
    before: dt.datetime,
) -> DataFrame:
    """(market, user_id, event_values): the mean value of each user's events of each of
    ``event_types`` before the moment, where the value measures the user (how many listened
    together) rather than how often.

    Parameters
    ----------
    events_df : DataFrame
        Events with ``market``, ``user_id``, ``event_type``, ``event_ts`` and ``value``.
    event_types : sequence of str
        ``train.models.conversion.value_events``.
    max_values : mapping of str to float
        ``interactions.max_values``: a value above its type's limit (or ``default``), below 0
        or not a number is left out, as build-interactions quarantines it.
    before : datetime.datetime
        The moment; only events strictly before it count.
    """
    value = F.col("value").cast("double")
    plausible = (
        value.isNotNull() & ~F.isnan(value) & (value >= 0) & (value <= max_value_of(max_values))
    )
    return (
        events_df.where(
            F.col("event_type").isin(*event_types)
            & (F.col("event_ts").cast("timestamp") < F.lit(before))
            & plausible
        )
        .groupBy(*KEYS, "event_type")
        .agg(F.avg(value).alias("mean"))
        .groupBy(*KEYS)
        .agg(
            F.map_from_entries(F.collect_list(F.struct("event_type", "mean"))).alias("event_values")
        )
    )


def offer_features(catalog_df: DataFrame, reference_offer: str | None = None) -> DataFrame:
    """One row per (market, offer): :data:`OFFER_FEATURE_COLUMNS`.

    ``relative_price`` is the offer's monthly-equivalent price over that of the market's
    ``reference_offer`` (its most expensive plan's where the market does not sell it), so
    price reads the same in every currency; 0 in a market without prices.

    Parameters
    ----------
    catalog_df : DataFrame
        The ``catalog`` table.
    reference_offer : str, optional
        The offer whose monthly price is 1.0 in every market (``analyze.reference_offer``).
    """
    monthly = F.col("price").cast("double") * 30.0 / F.col("period_days")
    # Every feature but the relative price, which needs the market's reference price first.
    offers_df = catalog_df.select(*OFFER_FEATURE_COLUMNS[:-1], monthly.alias("_monthly"))
    reference_df = offers_df.groupBy("market").agg(
        F.max(F.when(F.col("offer_id") == F.lit(reference_offer), F.col("_monthly"))).alias(
            "_reference"
        ),
        F.max(F.when(F.col("kind") == "plan", F.col("_monthly"))).alias("_top_plan"),
    )
    reference = F.coalesce("_reference", "_top_plan")
    return offers_df.join(F.broadcast(reference_df), on="market", how="inner").select(
        "market",
        "offer_id",
        "kind",
        "tier",
        "period_days",
        F.coalesce("trial_days", F.lit(0)).alias("trial_days"),
        F.coalesce("discount_months", F.lit(0)).alias("discount_months"),
        F.when(reference > 0, F.col("_monthly") / reference)
        .otherwise(F.lit(0.0))
        .alias("relative_price"),
    )


def plan_tiers(catalog_df: DataFrame) -> DataFrame:
    """(market, current_plan, current_tier) of every plan in the catalogue."""
    return catalog_df.where(F.col("kind") == "plan").select(
        "market", F.col("plan_id").alias("current_plan"), F.col("tier").alias("current_tier")
    )


def with_pair_features(
    pairs_df: DataFrame, users_df: DataFrame, offers_df: DataFrame, tiers_df: DataFrame
) -> DataFrame:
    """``pairs_df`` (market, user_id, offer_id, ...) with the user's and the offer's features.

    Adds :data:`USER_FEATURE_COLUMNS`, :data:`OFFER_FEATURE_COLUMNS`, ``current_tier`` and the
    pair's own: ``tier_gap`` (offer tier above the plan held), ``interest`` (the user's
    confidence in this offer) and ``holds_addon``. A user missing from ``users_df`` gets the
    features of a user with no history.
    """
    user_columns = [c for c in USER_FEATURE_COLUMNS if c not in KEYS]
    joined = (
        pairs_df.drop(*[c for c in user_columns if c in pairs_df.columns])
        .join(users_df, on=list(KEYS), how="left")
        .join(F.broadcast(offers_df), on=["market", "offer_id"], how="inner")
    )
    defaults = user_features_defaults()
    filled = joined.select(
        *[c for c in joined.columns if c not in defaults],
        # A model saved before a feature existed holds users without its column.
        *(
            (F.coalesce(F.col(c), value) if c in joined.columns else value).alias(c)
            for c, value in defaults.items()
        ),
    )
    current_tier = F.coalesce(F.col("current_tier"), F.lit(0))
    return (
        filled.join(F.broadcast(tiers_df), on=["market", "current_plan"], how="left")
        .withColumn("current_tier", current_tier)
        .withColumn("tier_gap", F.col("tier") - F.col("current_tier"))
        .withColumn("interest", F.coalesce(F.col("offer_interest")[F.col("offer_id")], F.lit(0.0)))
        .withColumn("holds_addon", F.array_contains("active_addons", F.col("offer_id")))
    )


def user_features_defaults() -> dict[str, Column]:
    """What a user with no history has: the free plan and nothing else."""
    empty = F.create_map().cast("map<string,double>")
    return {
        "current_plan": F.lit(S.FREE_PLAN),
        "n_addons": F.lit(0),
        "active_addons": F.array().cast("array<string>"),
        "has_used_trial": F.lit(False),
        "is_student_verified": F.lit(False),
        "behaviour": empty,
        "offer_interest": empty,
        "event_values": empty,
    }
