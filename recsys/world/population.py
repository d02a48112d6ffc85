"""Synthetic users: market, hidden traits, true offer utilities and the plan they start with."""

from __future__ import annotations

import math

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys.columns import literal_map
from recsys.config import WorldConfig
from recsys.markets import MarketCatalog
from recsys.rand import Rng
from recsys.world import response

HOUSEHOLD_SIZES = ((1, 0.36), (2, 0.28), (3, 0.16), (4, 0.13), (5, 0.07))
ADOPTION = 1.6  # long-run pull towards a paid plan, on top of one window's acceptance
STAY_FREE = 1.3


def utility_col(offer_id: str) -> str:
    return f"utility__{offer_id}"


def markets_df(spark: SparkSession, markets: MarketCatalog) -> DataFrame:
    """One row per market: the attributes the generator needs, prices and burdens as maps.

    ``burden`` is an offer's monthly-equivalent price relative to Premium Individual there.
    """
    rows = []
    for code, market in markets.markets.items():
        reference = float(market.offers.get("premium_individual") or max(market.offers.values()))
        prices, burdens = {}, {}
        for offer_id, price in market.offers.items():
            offer = markets.offer_types[offer_id]
            monthly = float(price) * 30.0 / offer.period_days
            prices[offer_id] = float(price)
            burdens[offer_id] = monthly / reference if reference else 0.0
        rows.append(
            (
                code,
                market.price_level,
                market.student_share,
                market.student_verification,
                prices,
                burdens,
            )
        )
    schema = T.StructType(
        [
            T.StructField("market", T.StringType(), False),
            T.StructField("price_level", T.DoubleType(), False),
            T.StructField("student_share", T.DoubleType(), False),
            T.StructField("student_verification", T.BooleanType(), False),
            T.StructField("price", T.MapType(T.StringType(), T.DoubleType()), False),
            T.StructField("burden", T.MapType(T.StringType(), T.DoubleType()), False),
        ]
    )
    return spark.createDataFrame(rows, schema)


def categorical(u: Column, shares: list[tuple[object, float]]) -> Column:
    """The value whose cumulative share first exceeds the uniform ``u`` (last one otherwise)."""
    values = [value for value, _ in shares]
    chain, edge = None, 0.0
    for value, share in shares[:-1]:
        edge += share
        chain = (F.when if chain is None else chain.when)(u < edge, F.lit(value))
    last = F.lit(values[-1])
    return last if chain is None else chain.otherwise(last)


def users_with_traits(spark: SparkSession, world: WorldConfig, markets: MarketCatalog) -> DataFrame:
    """One row per user: id, market attributes and hidden traits.

    Grain: user. Generated from ``spark.range``; every draw hashes the user's number, so the
    result depends on the seed and config only, not on partitioning.
    """
    partitions = max(
        spark.sparkContext.defaultParallelism, math.ceil(world.users / world.users_per_partition)
    )
    rng = Rng(world.seed, F.col("id"))
    base_df = spark.range(0, world.users, numPartitions=partitions).select(
        "id",
        F.concat(F.lit("u"), F.lpad(F.col("id").cast("string"), 10, "0")).alias("user_id"),
        categorical(
            rng.uniform("market"), [(c, m.user_share) for c, m in markets.markets.items()]
        ).alias("market"),
    )
    market_attrs_df = F.broadcast(markets_df(spark, markets))
    hours = F.least(F.exp(0.2 + 0.7 * rng.normal("hours")), F.lit(12.0))
    return (
        base_df.join(market_attrs_df, on="market", how="inner")
        .withColumn("household_size", categorical(rng.uniform("household"), list(HOUSEHOLD_SIZES)))
        .withColumn("is_student", rng.uniform("student") < F.col("student_share"))
        .withColumn("listening_hours", hours)
        .withColumn(
            "offline_need",
            1 / (1 + F.exp(-(rng.normal("offline") + 0.8 * F.log(F.col("listening_hours"))))),
        )
        .withColumn("audiobook_affinity", F.pow(rng.uniform("audiobook"), F.lit(3.0)))
        .withColumn("ad_tolerance", rng.uniform("ads"))
        .withColumn(
            "price_sensitivity",
            F.exp(0.35 * rng.normal("price"))
            * F.pow(F.col("price_level"), F.lit(-0.5))
            * F.when(F.col("is_student"), 1.3).otherwise(1.0),
        )
        .withColumn(
            "is_student_verified",
            F.col("is_student") & F.col("student_verification") & (rng.uniform("verify") < 0.7),
        )
    )


def with_utilities(users_df: DataFrame, world: WorldConfig, markets: MarketCatalog) -> DataFrame:
    """Adds ``utility__<offer>`` per offer type: null where the market does not sell it."""
    rng = Rng(world.seed, F.col("id"))
    columns = [
        F.when(
            F.col("burden")[offer_id].isNotNull(),
            response.offer_utility(offer_id, offer, F.col("burden")[offer_id], rng, world.noise),
        ).alias(utility_col(offer_id))
        for offer_id, offer in markets.offer_types.items()
    ]
    return users_df.select("*", *columns)


def with_initial_state(
    users_df: DataFrame, world: WorldConfig, markets: MarketCatalog
) -> DataFrame:
    """The plan, add-ons and trial history each user has when the window opens.

    Plans are drawn by a logit choice over the market's plans (long-run adoption), so the
    starting plan already reflects traits: the logs a model learns from are not random.
    """
    rng = Rng(world.seed, F.col("id"))
    plan_weights = {
        response.FREE: STAY_FREE
        + 1.3 * F.col("ad_tolerance")
        + 0.6 * (F.col("price_sensitivity") - 1)
    }
    for offer_id, offer in markets.offer_types.items():
        if offer.kind != "plan" or offer_id == response.FREE:
            continue
        weight = ADOPTION + F.col(utility_col(offer_id)) - response.INTERCEPT["plan"]
        if offer.requires_verification:
            weight = F.when(F.col("is_student"), weight)
        plan_weights[offer_id] = weight
    plan = F.col("initial_plan")
    addon_columns = [
        F.when(
            plan.isin(*offer.requires_plans)
            & F.col(utility_col(offer_id)).isNotNull()
            & (
                rng.uniform(f"holds/{offer_id}")
                < response.sigmoid(F.col(utility_col(offer_id)) + 2)
            ),
            F.lit(offer_id),
        )
        for offer_id, offer in markets.offer_types.items()
        if offer.kind == "addon"
    ]
    is_paid = plan != response.FREE
    return (
        users_df.withColumn("initial_plan", rng.choice("initial_plan", plan_weights))
        .withColumn("initial_tier", literal_map(markets.plan_tiers())[plan].cast("int"))
        .withColumn(
            "initial_addons",
            F.filter(F.array(*addon_columns), lambda a: a.isNotNull())
            if addon_columns
            else F.array().cast("array<string>"),
        )
        .withColumn(
            "prior_trial",
            rng.uniform("prior_trial")
            < F.lit(world.prior_trial_share) * F.when(is_paid, 2.0).otherwise(1.0),
        )
        .withColumn(
            "signup_date",
            F.date_sub(
                F.lit(world.end_date),
                (world.days + F.floor(F.lit(1500.0) * F.pow(rng.uniform("signup"), 1.5))).cast(
                    "int"
                ),
            ),
        )
    )
