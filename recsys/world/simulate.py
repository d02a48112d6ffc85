"""The A/B test played out on the synthetic world (demo only): who sees which offer, who takes
it, what they pay, and what happens to them afterwards.

Each assigned user's list comes from ``plan_recommendations_current``. In the window a user
opens a marketing surface with probability ``reach`` and looks at rank r with probability
``position_bias[r]``; looking at an offer, they take it with the world's hidden probability
``p_accept`` (``world_truth``), the first offer taken in rank order wins (a cascade). A user
who took nothing may still visit the plan page on their own (``organic_rate``, every arm alike)
and take one offer drawn at random from those open to them, less eagerly than a targeted one.

What a conversion costs later is drawn from the same hidden utilities the world was built on:
a user keeps the new plan with probability ``sigmoid(KEEP + U(plan) - HOLD * fit(old plan))``,
so an offer that merely looked good (a free month, a big plan for a small household) is more
often dropped: a trial cancelled before its first payment is ``trial_abuse``, a dropped upgrade
from a paid plan (or add-on) a ``downgrade``, a dropped first subscription a ``cancellation``.
Paid users who take nothing cancel at the world's own rate, in every arm.

Revenue over the window is the current plan's and add-ons' recurring charges (halved for a
user who cancels) plus the first charge of the offer taken (none for a free month that outlasts
the window). Every draw hashes (seed, tag, user), so a rerun gives the same outcomes.

The expected values of the list shown and of the oracle's list (the user's top-k by true
probability, or by probability x charge for revenue) are exact under this model
(:mod:`recsys.world.expected`); they give the share of the oracle's lift a policy captured.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.columns import literal_map
from recsys.config import Config
from recsys.rand import Rng
from recsys.world import response
from recsys.world.expected import (
    expected_charge,
    expected_conversion,
    look_chance,
    oracle_slots,
)
from recsys.world.history import ORGANIC_ACCEPT
from recsys.world.population import utility_col, with_utilities

DAY = 86_400
KEEP = 6.0  # keep-logit offset: most converters keep what they chose


def user_id_number(user_id: Column) -> Column:
    """The world's numeric user id (``u0000000042`` -> 42), the key of its random draws."""
    return F.substring(user_id, 2, 100).cast("long")


def charges(config: Config) -> dict[str, dict[str, float]]:
    """market -> offer -> first charge in the window, in local currency.

    A free month that outlasts the window charges nothing in it; a plan billed more often than
    the window (weekly Mini) is charged once per period; everything else once.
    """
    window = config.simulate.window_days
    table = {}
    for code, market in config.markets.markets.items():
        table[code] = {}
        for offer_id, price in market.offers.items():
            offer = config.markets.offer_types[offer_id]
            if offer.trial_days and offer.trial_days >= window:
                charge = 0.0
            elif offer.period_days < window:
                charge = float(price) * window / offer.period_days
            else:
                charge = float(price)
            table[code][offer_id] = charge
    return table


def recurring(config: Config) -> dict[str, dict[str, float]]:
    """market -> plan or add-on -> what holding it costs over the window."""
    window = config.simulate.window_days
    return {
        code: {
            offer_id: float(price) * window / config.markets.offer_types[offer_id].period_days
            for offer_id, price in market.offers.items()
        }
        for code, market in config.markets.markets.items()
    }


def served_slots(lists_df: DataFrame) -> DataFrame:
    """One row per assigned user: arm, the list as ordered slots (empty for rank-0 users) and
    the serving stamps. ``lists_df``: rows of the plan_recommendations contract."""
    slot = F.struct(
        F.col("rank").alias("rank"),
        F.col("offer_id").alias("offer_id"),
        F.col("propensity").alias("propensity"),
        F.col("reason_code").alias("reason_code"),
    )
    return lists_df.groupBy("market", "user_id").agg(
        F.first("arm").alias("arm"),
        F.array_sort(F.collect_list(slot)).alias("served"),
        F.first("model_version").alias("model_version"),
        F.first("snapshot_date").alias("snapshot_date"),
        F.first("experiment_id").alias("experiment_id"),
    )


def pre_period(events_df: DataFrame, start: dt.date, days: int) -> DataFrame:
    """(user_id, pre_revenue, pre_engagement) over the ``days`` before ``start``: money paid,
    and log1p of behaviour events (CUPED's covariates)."""
    begin = dt.datetime.combine(start - dt.timedelta(days=days), dt.time())
    end = dt.datetime.combine(start, dt.time())
    money = F.col("event_type").isin(S.CONVERSION, S.RENEWAL)
    behaviour = F.col("event_type").isin(*S.BEHAVIOUR_EVENTS)
    return (
        events_df.where((F.col("event_ts") >= F.lit(begin)) & (F.col("event_ts") < F.lit(end)))
        .groupBy("user_id")
        .agg(
            F.sum(F.when(money, F.col("value")).otherwise(0.0)).alias("pre_revenue"),
            F.log1p(F.sum(behaviour.cast("double"))).alias("pre_engagement"),
        )
    )


def simulate(
    slots_df: DataFrame,
    truth_df: DataFrame,
    users_df: DataFrame,
    market_attrs_df: DataFrame,
    pre_df: DataFrame,
    config: Config,
    start: dt.date,
) -> DataFrame:
    """One row per assigned user with the draws of the window: the columns of
    ``experiment_outcomes`` and ``exposures`` (the slots with ``is_examined``, ``examined_at``).

    ``slots_df``: :func:`served_slots`. ``truth_df``: ``world_truth``. ``users_df``: ``users``
    (the state at the window's start). ``market_attrs_df``: the world's per-market prices and
    burdens (:func:`recsys.world.population.markets_df`). ``pre_df``: :func:`pre_period`.
    """
    sim, world, markets = config.simulate, config.world, config.markets
    k = config.recommend.k
    rng = Rng(sim.seed, F.xxhash64(F.lit(config.recommend.experiment.id), F.col("user_id")))
    window_start = int(dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC).timestamp())
    window = sim.window_days * DAY
    charge_of = F.col("_charge")
    p_accept = F.col("p_accept")
    offer_types = markets.offer_types

    slots = F.transform(
        F.filter("served", lambda s: s["rank"] > 0),
        lambda s: F.struct(
            s["rank"].alias("rank"),
            s["offer_id"].alias("offer_id"),
            F.coalesce(p_accept[s["offer_id"]], F.lit(0.0)).alias("p"),
            look_chance(sim.position_bias, s["rank"]).alias("bias"),
        ),
    )
    open_offers = F.filter(F.map_entries(p_accept), lambda e: e["value"] > 0)
    n_open = F.size(open_offers)
    organic_p = F.when(
        n_open > 0,
        F.lit(sim.organic_rate * ORGANIC_ACCEPT)
        * F.aggregate(open_offers, F.lit(0.0), lambda acc, e: acc + e["value"])
        / n_open,
    ).otherwise(0.0)
    organic_charge = F.when(
        n_open > 0,
        F.lit(sim.organic_rate * ORGANIC_ACCEPT)
        * F.aggregate(
            open_offers,
            F.lit(0.0),
            lambda acc, e: acc + e["value"] * F.coalesce(charge_of[e["key"]], F.lit(0.0)),
        )
        / n_open,
    ).otherwise(0.0)

    # The draws: surface visit, a look and a take per slot, then the plan page.
    reached = rng.uniform("reach") < sim.reach
    looked = F.transform(
        F.col("slots"),
        lambda s: s.withField(
            "looked", reached & (rng.uniform("look", s["rank"]) < s["bias"])
        ).withField("took", rng.uniform("take", s["rank"]) < s["p"]),
    )
    first_taken = F.try_element_at(F.filter("looked", lambda s: s["looked"] & s["took"]), F.lit(1))
    organic_offer = F.when(
        n_open > 0,
        F.try_element_at(
            open_offers,
            (F.floor(rng.uniform("organic_offer") * n_open) + 1).cast("int"),
        ),
    )
    organic_taken = (
        first_taken.isNull()
        & (rng.uniform("organic") < sim.organic_rate)
        & (rng.uniform("organic_take") < F.lit(ORGANIC_ACCEPT) * organic_offer["value"])
    )
    converted_offer = F.coalesce(
        first_taken["offer_id"], F.when(organic_taken, organic_offer["key"])
    )
    # A minute before the end at the latest: a conversion through the list lands a minute
    # after the visit, and inside the window.
    visit_ts = window_start + F.floor(rng.uniform("visit_at") * (window - 60))
    converted_ts = F.when(first_taken.isNotNull(), visit_ts + 60).when(
        organic_taken, window_start + F.floor(rng.uniform("organic_at") * window)
    )

    # Afterwards: keep or drop what was taken; background cancellations of paid users.
    plan_utility = {
        offer_id: F.col(utility_col(offer.plan_id if offer.kind != "addon" else offer_id))
        for offer_id, offer in offer_types.items()
        if offer_id != response.FREE
    }
    new_utility = F.lit(None).cast("double")
    for offer_id, utility in plan_utility.items():
        new_utility = F.when(F.col("converted_offer") == offer_id, utility).otherwise(new_utility)
    current_fit = response.current_plan_fit(F.col("current_plan"), markets.plan_ids())
    keeps = rng.uniform("keep") < response.sigmoid(
        F.lit(KEEP) + new_utility - response.HOLD * current_fit
    )
    kind = literal_map({o: t.kind for o, t in offer_types.items()})[F.col("converted_offer")]
    is_trial = F.col("converted_offer").isin(*[o for o, t in offer_types.items() if t.trial_days])
    paid_before = F.col("current_plan") != response.FREE
    dropped = F.col("converted_offer").isNotNull() & ~keeps
    p_cancel = response.sigmoid(-1.8 - 0.9 * current_fit + 1.0 * (F.col("price_sensitivity") - 1))
    background_cancel = (
        F.col("converted_offer").isNull()
        & paid_before
        & (rng.uniform("cancel") < p_cancel * (sim.window_days / 90.0))
    )
    recurring_of = F.col("_recurring")
    held = recurring_of[F.col("current_plan")] + F.aggregate(
        F.col("active_addons"),
        F.lit(0.0),
        lambda acc, a: acc + F.coalesce(recurring_of[a], F.lit(0.0)),
    )
    held = F.coalesce(held, F.lit(0.0))
    new_charge = F.when(dropped & is_trial, 0.0).otherwise(
        F.coalesce(charge_of[F.col("converted_offer")], F.lit(0.0))
    )
    p_background = F.when(paid_before, p_cancel * (sim.window_days / 90.0)).otherwise(0.0)
    oracle_rev_slots = oracle_slots(p_accept, charge_of, k, sim.position_bias)
    oracle_conv_slots = oracle_slots(p_accept, None, k, sim.position_bias)

    def expected_revenue(slot_column: Column, conversion: Column) -> Column:
        return held * (1 - 0.5 * p_background * (1 - conversion)) + expected_charge(
            slot_column, sim.reach, organic_charge, charge_of
        )

    return (
        slots_df.join(truth_df.drop("market"), on="user_id", how="inner")
        .join(
            users_df.select("user_id", "current_plan", "active_addons"),
            on="user_id",
            how="inner",
        )
        .join(F.broadcast(market_attrs_df), on="market", how="inner")
        .join(pre_df, on="user_id", how="left")
        .withColumn("id", user_id_number(F.col("user_id")))
        .transform(lambda df: with_utilities(df, world, markets))
        .withColumn("_charge", by_market(charges(config)))
        .withColumn("_recurring", by_market(recurring(config)))
        .withColumn("slots", slots)
        .withColumn("looked", looked)
        .withColumn("converted_offer", converted_offer)
        .withColumn("converted_rank", first_taken["rank"])
        .withColumn("converted_at", F.timestamp_seconds(converted_ts))
        .withColumn("visit_at", F.timestamp_seconds(visit_ts))
        .withColumn("expected_conversion", expected_conversion("slots", sim.reach, organic_p))
        .withColumn(
            "oracle_conversion", expected_conversion(oracle_conv_slots, sim.reach, organic_p)
        )
        .select(
            "*",
            F.col("converted_offer").isNotNull().cast("int").alias("converted"),
            (held * F.when(background_cancel, 0.5).otherwise(1.0) + new_charge).alias("revenue"),
            (background_cancel | (dropped & ~is_trial & ~paid_before & (kind != "addon")))
            .cast("int")
            .alias("cancellation"),
            (dropped & ~is_trial & (paid_before | (kind == "addon")))
            .cast("int")
            .alias("downgrade"),
            (dropped & is_trial).cast("int").alias("trial_abuse"),
            expected_revenue(F.col("slots"), F.col("expected_conversion")).alias(
                "expected_revenue"
            ),
            expected_revenue(oracle_rev_slots, F.col("oracle_conversion")).alias("oracle_revenue"),
        )
    )


def by_market(table: dict[str, dict[str, float]]) -> Column:
    """The row's market's map of a config-sized market -> offer -> number table."""
    pairs = [item for market, row in table.items() for item in (F.lit(market), literal_map(row))]
    return F.create_map(*pairs)[F.col("market")]


def exposures(simulated_df: DataFrame) -> DataFrame:
    """``experiment_exposures`` rows: every served slot with the look drawn, rank-0 rows kept."""
    served = F.explode("served_looked")
    looked_by_rank = F.map_from_entries(
        F.transform("looked", lambda s: F.struct(s["rank"], s["looked"]))
    )
    return (
        simulated_df.withColumn(
            "served_looked",
            F.transform(
                "served",
                lambda s: s.withField(
                    "is_examined", F.coalesce(looked_by_rank[s["rank"]], F.lit(False))
                ),
            ),
        )
        .select("*", served.alias("slot"))
        .select(
            "user_id",
            "market",
            "arm",
            F.col("slot")["rank"].alias("rank"),
            F.col("slot")["offer_id"].alias("offer_id"),
            F.col("slot")["propensity"].alias("propensity"),
            F.col("slot")["reason_code"].alias("reason_code"),
            F.col("slot")["is_examined"].alias("is_examined"),
            F.when(F.col("slot")["is_examined"], F.col("visit_at")).alias("examined_at"),
            "model_version",
            "snapshot_date",
            "experiment_id",
        )
    )


def outcomes(simulated_df: DataFrame, start: dt.date, window_days: int) -> DataFrame:
    """``experiment_outcomes`` rows (one per user)."""
    return simulated_df.select(
        "user_id",
        "market",
        "converted",
        "converted_offer",
        "converted_rank",
        "converted_at",
        "revenue",
        "cancellation",
        "downgrade",
        "trial_abuse",
        F.coalesce("pre_revenue", F.lit(0.0)).alias("pre_revenue"),
        F.coalesce("pre_engagement", F.lit(0.0)).alias("pre_engagement"),
        "expected_conversion",
        "expected_revenue",
        "oracle_conversion",
        "oracle_revenue",
        F.lit(start).alias("window_start"),
        F.lit(start + dt.timedelta(days=window_days)).alias("window_end"),
        "experiment_id",
    )
