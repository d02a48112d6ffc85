"""Spark MLlib ALS with implicit preferences: one distributed fit per set of markets that
share hyperparameters (all of them, unless some market is pinned to its own).

Markets fitted together form one block-diagonal matrix: every market's users and items get
ids of their own (offsets into one int range), so no factor is shared across markets. The
implicit-feedback loss still counts another market's items as unobserved for a user, which
pushes those predictions to zero. On the synthetic world's validation window one pooled fit
ranks better than a fit per market, at a fraction of the time, so markets are pooled unless
their hyperparameters differ.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict

from pyspark import StorageLevel
from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys.errors import RecsysError
from recsys.models.factors import FactorModel, market_sizes

log = logging.getLogger(__name__)

_INT_MAX = 2**31 - 1
_NNZ_PER_BLOCK = 100_000  # below this many ratings per block, fewer blocks


class SparkALS(FactorModel):
    family = "spark_als"

    def _fit_factors(self, interactions_df: DataFrame) -> None:
        spark = SparkSession.active()
        if not spark.sparkContext.getCheckpointDir():
            # Without it checkpointInterval is silently ignored and long lineages overflow
            # the stack (docs/development.md, "Toolchain facts").
            raise RecsysError("Spark ALS needs spark.checkpoint_dir set in the config")
        sizes = market_sizes(interactions_df)
        if not sizes:
            raise RecsysError("spark_als: no interactions to fit on")
        groups: dict[str, list] = defaultdict(list)
        for row in sizes:
            groups[json.dumps(self.params_for(row["market"]), sort_keys=True)].append(row)
        users, items = [], []
        before = als_factor_rdds(spark)
        for params_json, rows in sorted(groups.items()):
            user_factors, item_factors = self._fit_group(
                interactions_df, rows, json.loads(params_json)
            )
            users.append(user_factors)
            items.append(item_factors)
        self.user_factors_df = _union(users).persist(StorageLevel.MEMORY_AND_DISK)
        self.item_factors_df = _union(items).persist(StorageLevel.MEMORY_AND_DISK)
        # ALS caches its factor RDDs for the model's lifetime, and nothing here keeps the
        # ALSModel: copy the factors into our own cache, then free ALS's, or every trial
        # would leave its factors in executor memory until the JVM happens to collect them.
        self.user_factors_df.count()
        self.item_factors_df.count()
        after = als_factor_rdds(spark)
        for rdd_id in after.keys() - before.keys():
            after[rdd_id].unpersist(False)

    def _fit_group(
        self, interactions_df: DataFrame, sizes: list, params: dict
    ) -> tuple[DataFrame, DataFrame]:
        rows_df, _ = block_diagonal(interactions_df, sizes)
        model = fit_als_model(rows_df, sizes, params, self.seed)
        log.info("spark_als: fitted %d market(s) with %s", len(sizes), params)
        user_ids = rows_df.select("market", "user_id", F.col("user").alias("id")).distinct()
        item_ids = rows_df.select("market", "item_id", F.col("item").alias("id")).distinct()
        return (
            model.userFactors.join(user_ids, on="id", how="inner").select(
                "market", "user_id", F.col("features").alias("user_factors")
            ),
            model.itemFactors.join(F.broadcast(item_ids), on="id", how="inner").select(
                "market", "item_id", F.col("features").alias("item_factors")
            ),
        )


def block_diagonal(
    interactions_df: DataFrame, sizes: list
) -> tuple[DataFrame, list[tuple[str, int, int]]]:
    """The rows of the markets in ``sizes`` with ``user`` and ``item``: int ids of one matrix
    in which every market has its own block, and the (market, user_base, item_base) offsets.
    Fails with a message when the ids would overflow Spark ALS's ints."""
    offsets, user_offset, item_offset = [], 0, 0
    for row in sorted(sizes, key=lambda r: r["market"]):
        offsets.append((row["market"], user_offset, item_offset))
        user_offset += row["users"]
        item_offset += row["items"]
    if max(user_offset, item_offset) > _INT_MAX:
        raise RecsysError(
            f"{user_offset:,} users in markets fitted together exceed Spark ALS's int ids; "
            "pin some markets to their own hyperparameters to fit them apart"
        )
    offsets_df = SparkSession.active().createDataFrame(
        offsets, "market string, user_base long, item_base long"
    )
    rows_df = interactions_df.join(F.broadcast(offsets_df), on="market", how="inner").select(
        *interactions_df.columns,
        (F.col("user_idx") + F.col("user_base")).cast("int").alias("user"),
        (F.col("item_idx") + F.col("item_base")).cast("int").alias("item"),
    )
    return rows_df, offsets


def fit_als_model(
    rows_df: DataFrame, sizes: list, params: dict, seed: int, blocks: int | None = None
) -> ALSModel:
    """Spark ALS (implicit preferences) on ``rows_df``'s ``user``, ``item``, ``confidence``.

    One block per core, fewer for a small matrix: more blocks than cores only add shuffle
    and Gramian tasks (``bench/results/spark_als_blocks.md`` times block counts against
    Spark's default of 10). ``blocks`` overrides the rule (for that benchmark).
    """
    if blocks is None:
        cores = SparkSession.active().sparkContext.defaultParallelism
        nnz = sum(r["nnz"] for r in sizes)
        blocks = max(1, min(cores, nnz // _NNZ_PER_BLOCK + 1))
    return ALS(
        rank=int(params["factors"]),
        maxIter=int(params["iterations"]),
        regParam=float(params["regularization"]),
        alpha=float(params["alpha"]),
        implicitPrefs=True,
        userCol="user",
        itemCol="item",
        ratingCol="confidence",
        seed=seed,
        numUserBlocks=blocks,
        numItemBlocks=blocks,
    ).fit(rows_df.select("user", "item", "confidence"))


def als_factor_rdds(spark: SparkSession) -> dict:
    """Cached RDDs that Spark ALS named as its factors, by id (JVM objects)."""
    persistent = spark.sparkContext._jsc.getPersistentRDDs()
    found = {}
    for rdd_id in persistent.keySet().toArray():
        rdd = persistent.get(rdd_id)
        if rdd.name() in ("userFactors", "itemFactors"):
            found[int(rdd_id)] = rdd
    return found


def _union(frames: list[DataFrame]) -> DataFrame:
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result
