"""Assemble the synthetic world: users, events and the hidden ground truth."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys.config import WorldConfig
from recsys.markets import MarketCatalog
from recsys.world import response
from recsys.world.history import History
from recsys.world.population import users_with_traits, with_initial_state, with_utilities


@dataclass(frozen=True)
class World:
    """The three tables of a world. ``state_df`` is the per-user frame they all derive from:
    persist it before computing more than one of them."""

    state_df: DataFrame
    users_df: DataFrame
    events_df: DataFrame
    truth_df: DataFrame


def generate_world(spark: SparkSession, world: WorldConfig, markets: MarketCatalog) -> World:
    state_df = with_history(
        with_initial_state(
            with_utilities(users_with_traits(spark, world, markets), world, markets),
            world,
            markets,
        ),
        world,
        markets,
    )
    return World(
        state_df=state_df,
        users_df=users_from(state_df),
        events_df=events_from(state_df),
        truth_df=truth_from(state_df),
    )


def with_history(state_df: DataFrame, world: WorldConfig, markets: MarketCatalog) -> DataFrame:
    """Adds each user's conversion opportunities, the conversion, cancellations and the
    state at the end of the window (plan, add-ons, trial use) with its true acceptance map."""
    h = History(world, markets)
    trials = [o for o, t in markets.offer_types.items() if t.trial_days]
    plan = F.col("initial_plan")
    conv = F.col("conversion")
    converted_plan = F.when(F.col("converted_kind") != "addon", h.plan_of[conv["offer_id"]])
    p_cancel = response.sigmoid(
        -1.8
        - 0.9 * F.coalesce(F.col("initial_fit"), F.lit(0.0))
        + 1.0 * (F.col("price_sensitivity") - 1)
    )
    cancelled = (plan != response.FREE) & conv.isNull() & (h.rng.uniform("cancel") < p_cancel)
    end_plan = F.coalesce(
        converted_plan, F.when(F.col("cancel_ts").isNotNull(), F.lit(response.FREE)), plan
    )
    converted_addon = F.when(F.col("converted_kind") == "addon", conv["offer_id"])
    starts_free = plan == response.FREE
    conv_end = F.coalesce(F.when(converted_plan.isNotNull(), conv["ts"]), F.lit(h.end))
    return (
        state_df.withColumn("initial_fit", response.current_plan_fit(plan, markets.plan_ids()))
        .withColumn(
            "p_initial",
            h.accept_map(
                plan, F.col("initial_tier"), F.col("prior_trial"), F.col("initial_addons")
            ),
        )
        .transform(h.with_policy)
        .withColumn("opportunities", h.opportunities())
        .drop(*h.policy_columns())
        .withColumn("conversion", F.array_min(F.filter("opportunities", lambda o: o["accepted"])))
        .withColumn("converted_kind", h.kind_of[conv["offer_id"]])
        .withColumn("converted_is_trial", F.coalesce(conv["offer_id"].isin(*trials), F.lit(False)))
        .withColumn("cancel_ts", F.when(cancelled, h.ts_in_window("cancel_ts")))
        .withColumn("current_plan", end_plan)
        .withColumn("current_tier", h.tier_of[end_plan])
        .withColumn(
            "active_addons",
            F.when(F.col("cancel_ts").isNotNull(), F.array().cast("array<string>")).otherwise(
                F.array_compact(F.array_union(F.col("initial_addons"), F.array(converted_addon)))
            ),
        )
        .withColumn("has_used_trial", F.col("prior_trial") | F.col("converted_is_trial"))
        .withColumn(
            "free_from",
            F.when(starts_free, F.lit(h.start)).otherwise(
                F.coalesce(F.col("cancel_ts"), F.lit(h.end))
            ),
        )
        .withColumn("free_to", F.when(starts_free, conv_end).otherwise(F.lit(h.end)))
        .withColumn(
            "p_accept",
            h.accept_map(
                F.col("current_plan"),
                F.col("current_tier"),
                F.col("has_used_trial"),
                F.col("active_addons"),
            ),
        )
        .withColumn("household_size_hint", _household_hint(h.rng))
        .withColumn("behaviour_events", h.behaviour_events())
        .withColumn("subscription_events", h.subscription_events())
    )


def _household_hint(rng) -> Column:
    """What the account shows of the household: missing for 40%, off by one for 20%."""
    noise = rng.uniform("hint_noise")
    size = F.col("household_size") + F.when(noise < 0.1, -1).when(noise > 0.9, 1).otherwise(0)
    return F.when(rng.uniform("hint") < 0.6, F.greatest(F.lit(1), size)).cast("int")


def users_from(state_df: DataFrame) -> DataFrame:
    return state_df.select(
        "user_id",
        "market",
        "current_plan",
        "active_addons",
        "signup_date",
        "is_student_verified",
        "household_size_hint",
        "has_used_trial",
    )


def events_from(state_df: DataFrame) -> DataFrame:
    event = F.col("event")
    return state_df.select(
        "user_id",
        "market",
        F.explode(F.concat("behaviour_events", "subscription_events")).alias("event"),
    ).select(
        "user_id",
        "market",
        event["event_type"].alias("event_type"),
        event["item_id"].alias("item_id"),
        F.timestamp_seconds(event["ts"]).alias("event_ts"),
        event["value"].alias("value"),
    )


def truth_from(state_df: DataFrame) -> DataFrame:
    return state_df.select(
        "user_id",
        "market",
        "household_size",
        "is_student",
        "listening_hours",
        "offline_need",
        "audiobook_affinity",
        "ad_tolerance",
        "price_sensitivity",
        "initial_plan",
        F.col("conversion")["offer_id"].alias("converted_offer"),
        "p_accept",
    )
