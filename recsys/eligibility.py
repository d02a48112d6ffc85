"""Which offers a user may be shown, with a reason for every exclusion (docs/recommendations.md).

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

from pyspark.sql import Column, DataFrame
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
    """Whether each offer of the user's market may be shown to the user, and why not.

    Parameters
    ----------
    state_df : DataFrame
        One row per user with :data:`STATE_COLUMNS`, and ``household_size_hint`` when it has
        one (the ``users`` table has them all; :func:`state_at` derives the state from
        events).
    catalog_df : DataFrame
        The ``catalog`` table.
    rules : EligibilityRules, optional
        The configured rules (``recommend.eligibility``); none by default.

    Returns
    -------
    DataFrame
        One row per (market, user_id, offer_id) of the user's market: ``eligible`` and
        ``reason_code`` (null when eligible, else the first rule that excludes the offer).
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


def state_at(
    events_df: DataFrame,
    catalog_df: DataFrame,
    moment: dt.datetime,
    users_df: DataFrame | None = None,
) -> DataFrame:
    """Each user's subscription state just before ``moment``, from events.

    The plan is the plan of the latest renewal, conversion or trial start of a plan or
    promotion before ``moment`` (free after a later cancellation, or with none); add-ons are
    those taken or renewed before it that the plan held can carry (``requires_plans``); a
    cancellation back to free thus ends those that need a paid plan; a trial is used once a
    trial started, or from the start when ``users_df`` says the user used one and the events
    hold no trial start (the trial is older than the history); verification once a
    ``student_verified`` event was seen. No event at or after ``moment`` is read, so the
    state at a split point cannot leak the holdout. Grain: user, with :data:`STATE_COLUMNS`.
    """
    return states_at(events_df, catalog_df, {"at": moment}, users_df).drop("split")


_PLAN_EVENTS = (S.RENEWAL, S.CONVERSION, S.TRIAL_START, S.CANCELLATION)


def states_at(
    events_df: DataFrame,
    catalog_df: DataFrame,
    moments: dict[str, dt.datetime],
    users_df: DataFrame | None = None,
) -> DataFrame:
    """:func:`state_at` at several moments in one pass over the events: one aggregation per
    user computes every moment's state from the events before it. Grain: (user, ``split``),
    ``split`` being the name of the moment; a user appears at a moment only with an event
    before it.

    ``users_df`` (``user_id``, ``has_used_trial``: the ``users`` table, the state at the
    snapshot) says who used a trial before the events begin: a user it marks with no trial
    start in the events took theirs earlier, so the trial counts as used at every moment. The
    events cannot show it, and without it a user who may never take a trial again is
    eligible for one at every split: evaluation would rank offers the user cannot take.
    """
    offers_df = catalog_df.select(
        "market", F.col("offer_id").alias("item_id"), "plan_id", "kind", "requires_plans"
    )
    ts, event_type, kind = F.col("event_ts"), F.col("event_type"), F.col("kind")
    is_plan_event = event_type.isin(*_PLAN_EVENTS) & kind.isNotNull() & (kind != "addon")
    is_addon = event_type.isin(*_PLAN_EVENTS) & (event_type != S.CANCELLATION) & (kind == "addon")
    plan = F.when(event_type == S.CANCELLATION, F.lit(FREE)).otherwise(F.col("plan_id"))
    # Latest first, and at equal times the event type first in alphabetical order: the
    # type's rank counts down the alphabet, so the largest (time, rank) wins.
    rank = literal_map({t: len(_PLAN_EVENTS) - i for i, t in enumerate(sorted(_PLAN_EVENTS))})
    aggregates = []
    for name, moment in moments.items():
        before = ts < F.lit(moment)
        aggregates += [
            F.max(before).alias(f"{name}__seen"),
            F.max(before & (event_type == S.STUDENT_VERIFIED)).alias(f"{name}__verified"),
            F.max(before & (event_type == S.TRIAL_START)).alias(f"{name}__trial"),
            F.max_by(plan, F.when(before & is_plan_event, F.struct(ts, rank[event_type]))).alias(
                f"{name}__plan"
            ),
            F.collect_set(
                F.when(before & is_addon, F.struct("item_id", F.col("requires_plans")))
            ).alias(f"{name}__addons"),
        ]
    last = max(moments.values())
    aggregates.append(F.max(event_type == S.TRIAL_START).alias("_any_trial"))
    per_user_df = (
        events_df.where(ts < F.lit(last))
        .join(F.broadcast(offers_df), on=["market", "item_id"], how="left")
        .groupBy("market", "user_id")
        .agg(*aggregates)
    )
    trial_before_events = F.lit(False)
    if users_df is not None:
        per_user_df = per_user_df.join(
            users_df.select("user_id", F.col("has_used_trial").alias("_trial_at_snapshot")),
            on="user_id",
            how="left",
        )
        trial_before_events = F.coalesce(F.col("_trial_at_snapshot"), F.lit(False)) & ~F.col(
            "_any_trial"
        )
    states = []
    for name in moments:
        current_plan = F.coalesce(F.col(f"{name}__plan"), F.lit(FREE))
        carried = _carried_by(F.col(f"{name}__addons"), current_plan)
        states.append(
            F.when(
                F.col(f"{name}__seen"),
                F.struct(
                    current_plan.alias("current_plan"),
                    F.array_sort(F.transform(carried, lambda addon: addon["item_id"])).alias(
                        "active_addons"
                    ),
                    F.col(f"{name}__verified").alias("is_student_verified"),
                    (F.col(f"{name}__trial") | trial_before_events).alias("has_used_trial"),
                    F.lit(name).alias("split"),
                ),
            )
        )
    return (
        per_user_df.select("market", "user_id", F.explode(F.array(*states)).alias("s"))
        .where(F.col("s").isNotNull())
        .select("market", "user_id", "s.*")  # STATE_COLUMNS, then split
    )


def _carried_by(addons: Column, plan: Column) -> Column:
    """The (item_id, requires_plans) structs of ``addons`` that ``plan`` can carry."""
    return F.filter(addons, lambda addon: F.array_contains(addon["requires_plans"], plan))
