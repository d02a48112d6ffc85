"""The demo's world steps: `generate-world` writes the synthetic world's tables to the catalog,
and `simulate` plays the served experiment out on it (docs/experiments.md)."""

from __future__ import annotations

import logging

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.catalog import catalog_df
from recsys.config import Config
from recsys.errors import ConfigError, RecsysError
from recsys.progress import step
from recsys.tables import log_counts, publish_partition, publish_table, read_table
from recsys.world import simulate
from recsys.world.generate import generate_world
from recsys.world.population import markets_df

log = logging.getLogger(__name__)


def run(spark: SparkSession, config: Config) -> None:
    world_cfg, markets = config.world, config.markets.for_world()
    if not world_cfg.legacy_policy:
        raise ConfigError(
            "world.legacy_policy is empty: the synthetic world needs the legacy policy that "
            "logged its offer impressions (current plan -> offer -> weight)"
        )
    log.info(
        "generating %s users in %d markets, %d days to %s, seed %d",
        f"{world_cfg.users:,}",
        len(markets.markets),
        world_cfg.days,
        world_cfg.end_date,
        world_cfg.seed,
    )
    world = generate_world(spark, world_cfg, markets)
    # users, events and truth all derive from one per-user frame: compute it once.
    state_df = world.state_df.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        with step("generate-world: catalog"):
            publish_table(spark, config, catalog_df(spark, markets), S.CATALOG)
        with step("generate-world: users"):
            publish_table(spark, config, world.users_df, S.USERS)
            log_counts(spark.table(config.table(S.USERS)), "users", list(markets.markets))
        with step("generate-world: events"):
            publish_table(spark, config, world.events_df, S.EVENTS)
            log_counts(spark.table(config.table(S.EVENTS)), "events", list(markets.markets))
        with step("generate-world: world_truth"):
            publish_table(spark, config, world.truth_df, S.WORLD_TRUTH)
    finally:
        state_df.unpersist()


def simulate_run(spark: SparkSession, config: Config) -> None:
    """Play the experiment out on the synthetic world and write its logs."""
    if not spark.catalog.tableExists(config.table(S.WORLD_TRUTH)):
        # Own data (ingest drops the table) or no generate-world yet: nothing can answer
        # "would this user have converted?" for a list they were never shown.
        raise RecsysError(
            f"no {config.table(S.WORLD_TRUTH)} table for this data: simulate is demo-only, it "
            "plays the experiment on the synthetic world's hidden truth, which generate-world "
            "writes and ingested data does not have. With your own data, load real "
            "experiment_exposures and experiment_outcomes and run analyze"
        )
    config.markets.for_world()  # the world's catalogue: the simulated charges need prices
    experiment = config.recommend.experiment.id
    lists_df = read_table(spark, config, S.PLAN_RECOMMENDATIONS_CURRENT)
    first = lists_df.select("snapshot_date", "experiment_id").first()
    if first is None:
        raise RecsysError(f"{config.table(S.PLAN_RECOMMENDATIONS_CURRENT)} is empty")
    start, served_experiment = first["snapshot_date"], first["experiment_id"]
    if served_experiment != experiment:
        raise RecsysError(
            f"the served lists belong to experiment {served_experiment!r}, the config names "
            f"{experiment!r}: run recommend with this config first"
        )
    truth_df = read_table(spark, config, S.WORLD_TRUTH)
    slots_df = simulate.served_slots(lists_df)
    missing = slots_df.join(truth_df, on="user_id", how="left_anti")
    lost = missing.count()
    if lost:
        example = missing.first()["user_id"]
        raise RecsysError(
            f"simulate plays the test on the synthetic world, but {lost:,} served users (e.g. "
            f"{example}) are not in {config.table(S.WORLD_TRUTH)}; with your own data, load "
            "real exposures and outcomes and run analyze"
        )
    window = config.simulate.window_days
    log.info(
        "simulating experiment %s over %d days from %s (reach %.0f%%, position bias %s)",
        experiment,
        window,
        start,
        100 * config.simulate.reach,
        config.simulate.position_bias,
    )
    with step("simulate: draw"):
        simulated_df = simulate.simulate(
            slots_df,
            truth_df,
            read_table(spark, config, S.USERS),
            markets_df(spark, config.markets),
            simulate.pre_period(
                read_table(spark, config, S.EVENTS), start, config.simulate.pre_days
            ),
            config,
            start,
        ).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        with step("simulate: experiment_exposures"):
            publish_partition(
                spark,
                config,
                simulate.exposures(simulated_df),
                S.EXPERIMENT_EXPOSURES,
                partition_column="experiment_id",
                value=experiment,
            )
        with step("simulate: experiment_outcomes"):
            publish_partition(
                spark,
                config,
                simulate.outcomes(simulated_df, start, window),
                S.EXPERIMENT_OUTCOMES,
                partition_column="experiment_id",
                value=experiment,
            )
        summary = (
            simulated_df.groupBy("arm")
            .agg(
                F.count(F.lit(1)).alias("users"),
                F.sum("converted").alias("conversions"),
                F.avg("expected_conversion").alias("expected"),
                F.avg("oracle_conversion").alias("oracle"),
            )
            .orderBy("arm")
            .collect()
        )
    finally:
        simulated_df.unpersist()
    for r in summary:
        log.info(
            "  %-9s %8s users, %6s conversions (%.2f%%; expected %.2f%%, oracle %.2f%%)",
            r["arm"],
            f"{r['users']:,}",
            f"{r['conversions']:,}",
            100 * r["conversions"] / r["users"],
            100 * r["expected"],
            100 * r["oracle"],
        )
