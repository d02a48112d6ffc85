"""The synthetic world: deterministic, consistent with the catalogue, and its hidden traits
really drive behaviour and acceptance (the oracle later issues measure models against)."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.catalog import catalog_df
from recsys.world.generate import generate_world

USERS = 20_000


@pytest.fixture(scope="module")
def world(spark, config):
    world_cfg = config.world.model_copy(update={"users": USERS, "users_per_partition": 5_000})
    world = generate_world(spark, world_cfg, config.markets)
    state_df = world.state_df.cache()
    yield world
    state_df.unpersist()


@pytest.fixture(scope="module")
def events_df(world):
    return world.events_df.cache()


def _small_world(spark, config, **update):
    world_cfg = config.world.model_copy(update={"users": 1_000, **update})
    return generate_world(spark, world_cfg, config.markets)


def test_same_seed_same_world_whatever_the_partitioning(spark, config):
    # 1,000 users: one partition per core (2) against four of 250 users.
    two = _small_world(spark, config, users_per_partition=1_000)
    four = _small_world(spark, config, users_per_partition=250)
    # Each world is generated once for its three tables, not once per table.
    two.state_df.persist()
    four.state_df.persist()
    assert two.users_df.rdd.getNumPartitions() == 2
    assert four.users_df.rdd.getNumPartitions() == 4
    assert_df_equality(two.users_df, four.users_df, ignore_row_order=True)
    assert_df_equality(two.events_df, four.events_df, ignore_row_order=True)

    # Maps cannot be sorted; compare their entries as sorted arrays.
    def sortable(truth_df):
        return truth_df.withColumn("p_accept", F.array_sort(F.map_entries("p_accept")))

    assert_df_equality(sortable(two.truth_df), sortable(four.truth_df), ignore_row_order=True)
    two.state_df.unpersist()
    four.state_df.unpersist()


def test_another_seed_is_another_world(spark, config):
    a = _small_world(spark, config).users_df.select("user_id", "market", "current_plan")
    b = _small_world(spark, config, seed=43).users_df.select("user_id", "market", "current_plan")
    assert a.exceptAll(b).count() > 500  # of 1,000


def test_tables_have_the_declared_schemas(world):
    def names_and_types(schema):
        return [(f.name, f.dataType) for f in schema.fields]

    assert names_and_types(world.users_df.schema) == names_and_types(S.USERS_SCHEMA)
    assert names_and_types(world.events_df.schema) == names_and_types(S.EVENTS_SCHEMA)
    assert names_and_types(world.truth_df.schema) == names_and_types(S.WORLD_TRUTH_SCHEMA)


def test_every_offer_event_names_an_offer_of_the_users_market(spark, config, events_df):
    catalog = catalog_df(spark, config.markets).select("market", F.col("offer_id").alias("item_id"))
    offer_events = events_df.where(F.col("event_type").isin(*S.OFFER_EVENTS))
    strays_df = offer_events.join(catalog, ["market", "item_id"], how="left_anti").select(
        *offer_events.columns
    )
    assert_df_equality(strays_df, offer_events.limit(0))
    assert offer_events.select("event_type").distinct().count() == len(S.OFFER_EVENTS)


def test_behaviour_events_use_known_tokens_and_events_fall_in_the_window(config, events_df):
    behaviour = events_df.where(F.col("event_type").isin(*S.BEHAVIOUR_EVENTS))
    unknown = behaviour.where(~F.col("item_id").isin(*S.BEHAVIOUR_TOKENS))
    assert_df_equality(unknown, behaviour.limit(0))
    end = dt.datetime.combine(config.world.end_date, dt.time())
    start = end - dt.timedelta(days=config.world.days)
    bounds = events_df.agg(F.min("event_ts").alias("lo"), F.max("event_ts").alias("hi")).first()
    assert start <= bounds["lo"] and bounds["hi"] < end
    assert set(r[0] for r in events_df.select("event_type").distinct().collect()) == set(
        S.EVENT_TYPES
    )


def test_impressions_log_the_legacy_propensity(events_df):
    p = (
        events_df.where(F.col("event_type") == S.OFFER_IMPRESSION)
        .agg(F.min("value").alias("lo"), F.max("value").alias("hi"))
        .first()
    )
    assert p["lo"] > 0 and p["hi"] <= 1.0


def test_market_shares_follow_the_config(world, config):
    counts = {r["market"]: r["count"] for r in world.users_df.groupBy("market").count().collect()}
    assert set(counts) == set(config.markets.markets)
    for code, market in config.markets.markets.items():
        expected = USERS * market.user_share
        sd = (USERS * market.user_share * (1 - market.user_share)) ** 0.5
        assert abs(counts[code] - expected) < 4.5 * sd, code


def _plan_conversions(world, spark, config):
    plan_of = catalog_df(spark, config.markets).select("market", "offer_id", "plan_id")
    return (
        world.events_df.where(F.col("event_type").isin(S.CONVERSION, S.TRIAL_START))
        .join(plan_of.withColumnRenamed("offer_id", "item_id"), ["market", "item_id"], "inner")
        .join(world.truth_df, ["user_id", "market"], "inner")
    )


def _rate(numerator_df, denominator_df) -> float:
    return numerator_df.count() / max(1, denominator_df.count())


def test_households_of_three_or_more_choose_family_many_times_more(world, spark, config):
    family = _plan_conversions(world, spark, config).where(F.col("plan_id") == "premium_family")
    truth = world.truth_df
    big = _rate(family.where("household_size >= 3"), truth.where("household_size >= 3"))
    single = _rate(family.where("household_size = 1"), truth.where("household_size = 1"))
    assert big > 5 * max(single, 1e-4), (big, single)


def test_only_students_take_the_student_plan(world, spark, config):
    student = _plan_conversions(world, spark, config).where(F.col("plan_id") == "premium_student")
    assert student.count() > 0
    assert student.where(~F.col("is_student")).count() == 0


def test_traits_show_in_behaviour(world, events_df):
    per_user = (
        events_df.groupBy("user_id")
        .pivot(
            "event_type", [S.HOUSEHOLD_COLISTEN, S.AUDIOBOOK_PREVIEW, S.OFFLINE_DOWNLOAD_ATTEMPT]
        )
        .count()
        .na.fill(0)
        .join(world.truth_df, "user_id", "right")
        .na.fill(0)
    )

    def mean(column, condition):
        return per_user.where(condition).agg(F.avg(column)).first()[0]

    assert (
        mean(S.HOUSEHOLD_COLISTEN, "household_size >= 3")
        > 3 * mean(S.HOUSEHOLD_COLISTEN, "household_size = 1") + 0.5
    )
    assert mean(S.AUDIOBOOK_PREVIEW, "audiobook_affinity > 0.5") > 5 * mean(
        S.AUDIOBOOK_PREVIEW, "audiobook_affinity < 0.1"
    )
    assert mean(S.OFFLINE_DOWNLOAD_ATTEMPT, "offline_need > 0.7") > 3 * mean(
        S.OFFLINE_DOWNLOAD_ATTEMPT, "offline_need < 0.3"
    )


def test_true_acceptance_follows_traits_and_price_levels(world):
    truth = world.truth_df.select(
        "*",
        F.col("p_accept")["premium_family"].alias("p_family"),
        F.col("p_accept")["premium_individual"].alias("p_individual"),
        F.col("p_accept")["audiobooks_addon"].alias("p_addon"),
    )

    def mean(column, condition):
        return truth.where(condition).agg(F.avg(column)).first()[0]

    free_big = "current_plan_is_free and household_size >= 3"
    truth = truth.join(world.users_df.select("user_id", "current_plan"), "user_id").withColumn(
        "current_plan_is_free", F.col("current_plan") == "free"
    )
    assert mean("p_family", free_big) > 4 * mean(
        "p_family", "current_plan_is_free and household_size = 1"
    )
    assert mean("p_addon", "audiobook_affinity > 0.5 and p_addon > 0") > 3 * mean(
        "p_addon", "audiobook_affinity < 0.1 and p_addon > 0"
    )
    # Poorer markets are more price sensitive: Premium is accepted less often in India.
    assert mean("p_individual", "current_plan_is_free and market = 'IN'") < mean(
        "p_individual", "current_plan_is_free and market = 'US'"
    )


def test_skip_limits_are_hit_only_on_the_free_plan(world, events_df):
    def first(event_types, name):
        return (
            events_df.where(F.col("event_type").isin(*event_types))
            .groupBy("user_id")
            .agg(F.min("event_ts").alias(name))
        )

    skips = (
        events_df.where(F.col("event_type") == S.SKIP_LIMIT_HIT)
        .join(world.truth_df.select("user_id", "initial_plan", "converted_offer"), "user_id")
        .join(first([S.CANCELLATION], "cancelled_at"), "user_id", "left")
        .join(first([S.CONVERSION, S.TRIAL_START], "converted_at"), "user_id", "left")
    )
    assert skips.count() > 0
    paid_then = skips.where(
        ((F.col("initial_plan") != "free") & ~(F.col("event_ts") >= F.col("cancelled_at")))
        | (
            (F.col("initial_plan") == "free")
            & (F.col("converted_offer") != "audiobooks_addon")
            & (F.col("event_ts") >= F.col("converted_at"))
        )
    )
    assert_df_equality(paid_then, skips.limit(0))
