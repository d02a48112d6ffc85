"""The `generate-world` step: write the synthetic world's tables to the catalog."""

from __future__ import annotations

import logging

from pyspark import StorageLevel
from pyspark.sql import SparkSession

from recsys import schemas as S
from recsys.catalog import catalog_df
from recsys.config import Config
from recsys.errors import ConfigError
from recsys.progress import step
from recsys.tables import log_counts, publish_table
from recsys.world.generate import generate_world

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
