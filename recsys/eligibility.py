"""Which offers a user may be shown, with a reason for every exclusion (DESIGN.md section 8).

Eligibility runs before ranking, for serving and for offline evaluation alike, so a model is
never credited for an offer the user could not have been shown. Every (user, offer of the
user's market) pair gets ``eligible`` and, when excluded, the first ``reason_code`` that
applies:

- ``current_plan``: the offer is the plan the user holds (an annual-billing switch of the
  same plan stays eligible);
- ``downgrade``: a plan or promotion below the user's tier (offers here are upsells);
- ``student_unverified``: a student offer for a user without verification;
- ``trial_used``: a free trial for a user who has had one, or who pays for more than a
  short plan (Premium Mini users may still start a trial);
- ``addon_needs_plan``: an add-on the user's plan cannot carry;
- ``addon_held``: an add-on the user already has;

and, from ``recommend.eligibility`` in config (:class:`~recsys.config.EligibilityRules`):

- ``household_too_small``: a Duo/Family offer for an account whose household hint is below
  the offer's minimum (an unknown hint keeps the offer);
- ``market_excluded``: an offer the market's config withholds (e.g. a paused promotion).

Offers a market does not sell never appear: candidates come from that market's catalogue.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.columns import literal_map
from recsys.config import EligibilityRules

CURRENT_PLAN = "current_plan"
DOWNGRADE = "downgrade"
STUDENT_UNVERIFIED = "student_unverified"
TRIAL_USED = "trial_used"
ADDON_NEEDS_PLAN = "addon_needs_plan"
ADDON_HELD = "addon_held"
HOUSEHOLD_TOO_SMALL = "household_too_small"
MARKET_EXCLUDED = "market_excluded"

FREE = S.FREE_PLAN
STATE_COLUMNS = (
    "market",
    "user_id",
    "current_plan",
    "active_addons",
    "is_student_verified",
    "has_used_trial",
)


def _exclusion(rules: EligibilityRules) -> Column:
    """The first rule an offer breaks for a user, or null. Needs the user's state, the
    offer's catalogue row, ``current_tier`` and ``household_size_hint``."""
    kind, plan = F.col("kind"), F.col("current_plan")
    is_trial = F.col("trial_days").isNotNull()
    annual_switch = (F.col("period_days") >= 300) & (F.col("plan_id") == plan)
    return (
        F.when(
            (kind != "addon") & (F.col("plan_id") == plan) & ~annual_switch,
            F.lit(CURRENT_PLAN),
        )
        .when((kind != "addon") & (F.col("tier") < F.col("current_tier")), F.lit(DOWNGRADE))
        .when(
            F.col("requires_verification") & ~F.col("is_student_verified"),
            F.lit(STUDENT_UNVERIFIED),
        )
        .when(is_trial & (F.col("has_used_trial") | (F.col("current_tier") > 1)), F.lit(TRIAL_USED))
        .when(
            (kind == "addon") & ~F.array_contains(F.col("requires_plans"), plan),
            F.lit(ADDON_NEEDS_PLAN),
        )
        .when(
            (kind == "addon") & F.array_contains(F.col("active_addons"), F.col("offer_id")),
            F.lit(ADDON_HELD),
        )
        .when(_below(rules.household_min), F.lit(HOUSEHOLD_TOO_SMALL))
        .when(_excluded(rules.exclude), F.lit(MARKET_EXCLUDED))
    )


def _below(household_min: dict[str, int]) -> Column:
    if not household_min:
        return F.lit(False)
    least = literal_map(household_min)[F.col("offer_id")]
    return F.coalesce(F.col("household_size_hint") < least, F.lit(False))


def _excluded(exclude: dict[str, list[str]]) -> Column:
    pairs = [f"{market}|{offer}" for market, offers in exclude.items() for offer in offers]
    if not pairs:
        return F.lit(False)
    return F.concat_ws("|", "market", "offer_id").isin(pairs)


def with_eligibility(
    state_df: DataFrame, catalog_df: DataFrame, rules: EligibilityRules | None = None
) -> DataFrame:
    """One row per (user, offer of the user's market): eligible and the reason if not.

    ``state_df``: one row per user with :data:`STATE_COLUMNS`, and ``household_size_hint``
    when it has one (the ``users`` table has them all; :func:`state_at` derives the state
    from events). ``catalog_df``: the ``catalog`` table. ``rules``: the configured rules
    (none by default). Grain of the result: (market, user_id, offer_id).
    """
    rules = rules or EligibilityRules()
    hint = (
        F.col("household_size_hint").cast("int")
        if "household_size_hint" in state_df.columns
        else F.lit(None).cast("int")
    )
    tiers_df = catalog_df.where(F.col("kind") == "plan").select(
        "market", F.col("plan_id").alias("current_plan"), F.col("tier").alias("current_tier")
    )
    offers_df = catalog_df.select(
        "market",
        "offer_id",
        "plan_id",
        "kind",
        "tier",
        "period_days",
        "trial_days",
        "requires_verification",
        "requires_plans",
    )
    return (
        state_df.select(*STATE_COLUMNS, hint.alias("household_size_hint"))
        .join(F.broadcast(tiers_df), on=["market", "current_plan"], how="left")
        .withColumn("current_tier", F.coalesce("current_tier", F.lit(0)))
        .join(F.broadcast(offers_df), on="market", how="inner")
        .withColumn("reason_code", _exclusion(rules))
        .select(
            "market",
            "user_id",
            "offer_id",
            F.col("reason_code").isNull().alias("eligible"),
            "reason_code",
        )
    )


def state_at(events_df: DataFrame, catalog_df: DataFrame, moment: dt.datetime) -> DataFrame:
    """Each user's subscription state just before ``moment``, from events alone.

    The plan is the plan of the latest renewal, conversion or trial start of a plan or
    promotion before ``moment`` (free after a later cancellation, or with none); add-ons are
    those taken or renewed before it while the user pays for a plan; a trial is used once a
    trial started; verification once a ``student_verified`` event was seen. Nothing at or
    after ``moment`` is read, so the state at a split point cannot leak the holdout.
    Grain: user, with :data:`STATE_COLUMNS`.
    """
    before_df = events_df.where(F.col("event_ts") < F.lit(moment))
    offers_df = catalog_df.select(
        "market", F.col("offer_id").alias("item_id"), "plan_id", "kind", "trial_days"
    )
    subscription_df = before_df.where(
        F.col("event_type").isin(S.RENEWAL, S.CONVERSION, S.TRIAL_START, S.CANCELLATION)
    ).join(F.broadcast(offers_df), on=["market", "item_id"], how="inner")
    plan_events = subscription_df.where(F.col("kind") != "addon")
    latest = Window.partitionBy("market", "user_id").orderBy(
        F.col("event_ts").desc(), F.col("event_type")
    )
    plan_df = (
        plan_events.withColumn("_n", F.row_number().over(latest))
        .where(F.col("_n") == 1)
        .select(
            "market",
            "user_id",
            F.when(F.col("event_type") == S.CANCELLATION, F.lit(FREE))
            .otherwise(F.col("plan_id"))
            .alias("current_plan"),
        )
    )
    flags_df = before_df.groupBy("market", "user_id").agg(
        F.max((F.col("event_type") == S.STUDENT_VERIFIED).cast("int")).alias("_verified"),
        F.max((F.col("event_type") == S.TRIAL_START).cast("int")).alias("_trial"),
    )
    addons_df = (
        subscription_df.where((F.col("kind") == "addon") & (F.col("event_type") != S.CANCELLATION))
        .groupBy("market", "user_id")
        .agg(F.array_sort(F.collect_set("item_id")).alias("active_addons"))
    )
    return (
        flags_df.join(plan_df, on=["market", "user_id"], how="left")
        .join(addons_df, on=["market", "user_id"], how="left")
        .select(
            "market",
            "user_id",
            F.coalesce("current_plan", F.lit(FREE)).alias("current_plan"),
            # Add-ons ride on a paid plan: a cancellation back to free ends them too.
            F.when(
                F.col("current_plan").isNull() | (F.col("current_plan") == FREE),
                F.array().cast("array<string>"),
            )
            .otherwise(F.coalesce("active_addons", F.array().cast("array<string>")))
            .alias("active_addons"),
            (F.col("_verified") == 1).alias("is_student_verified"),
            (F.col("_trial") == 1).alias("has_used_trial"),
        )
    )
