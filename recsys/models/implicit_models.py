"""``implicit`` ALS and BPR, one market per Spark task.

``groupBy(..., "market").applyInArrow`` hands each task one market's rows; the task builds the
market's sparse user x item matrix, fits, and returns the factors as rows, so 180 markets
train in parallel on a cluster and only factors come back (never to the driver). A market
must fit in one executor's memory: the largest market is the limit, not the total.

Markets differ in size by an order of magnitude, so their tasks are started largest first
(:func:`by_size`): a free core always takes the largest market not yet started, and the
largest one never starts last to run alone while the other cores idle.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys.columns import literal_map
from recsys.models.factors import FactorModel, market_sizes

_RANK = "_rank"
_FACTORS_SCHEMA = "market string, side string, key string, factors array<float>"


def _fit_market(family: str, params_json: str, seed: int, rows: pa.Table) -> pa.Table:
    """Fit one market's model; rows: market, user_idx, item_idx, user_id, item_id, confidence.

    Arrow in and out: the indices and weights reach the matrix without a copy per row, and
    the factors leave as one flat float buffer, so no Python object is made per user.
    """
    # Imported in the task: executors need implicit, the driver does not import it to plan.
    import implicit
    from scipy.sparse import csr_matrix
    from threadpoolctl import threadpool_limits

    market = rows.column("market")[0].as_py()
    params = json.loads(params_json)[market]
    users = rows.column("user_idx").to_numpy().astype(np.int64, copy=False)
    items = rows.column("item_idx").to_numpy().astype(np.int64, copy=False)
    shape = (int(users.max()) + 1, int(items.max()) + 1)
    matrix = csr_matrix(
        (rows.column("confidence").to_numpy().astype(np.float32), (users, items)), shape=shape
    )
    if family == "implicit_als":
        model = implicit.als.AlternatingLeastSquares(
            factors=int(params["factors"]),
            regularization=float(params["regularization"]),
            alpha=float(params["alpha"]),
            iterations=int(params["iterations"]),
            random_state=seed,
            num_threads=1,  # one task, one core; Spark runs markets side by side
            use_gpu=False,
        )
    else:
        model = implicit.bpr.BayesianPersonalizedRanking(
            factors=int(params["factors"]),
            learning_rate=float(params["learning_rate"]),
            regularization=float(params["regularization"]),
            iterations=int(params["iterations"]),
            random_state=seed,
            num_threads=1,
            use_gpu=False,
        )
    with threadpool_limits(1, "blas"):
        model.fit(matrix, show_progress=False)
    # implicit's BPR keeps an item bias as the last factor and a matching column of ones in
    # the user factors, so a plain dot product is its score too.
    return pa.concat_tables(
        [
            _factor_rows(market, "user", users, rows.column("user_id"), model.user_factors),
            _factor_rows(market, "item", items, rows.column("item_id"), model.item_factors),
        ]
    )


def _factor_rows(
    market: str, side: str, index: np.ndarray, keys: pa.ChunkedArray, factors: np.ndarray
) -> pa.Table:
    """One row per index value in ``index``: its key (from any row that has it) and its
    factors, as a ``_FACTORS_SCHEMA`` table."""
    row_of = np.full(len(factors), -1, dtype=np.int64)
    row_of[index] = np.arange(len(index))  # every row of one index value has the same key
    present = np.flatnonzero(row_of >= 0)
    vectors = np.ascontiguousarray(factors[present], dtype=np.float32)
    width = vectors.shape[1]
    # int64 first: the cast raises (rather than wraps) past 2^31 floats in one market.
    offsets = pa.array(np.arange(0, (len(present) + 1) * width, width, dtype=np.int64))
    offsets = offsets.cast(pa.int32())
    zeros = np.zeros(len(present), dtype=np.int64)
    return pa.table(
        {
            "market": pa.array([market]).take(zeros),
            "side": pa.array([side]).take(zeros),
            "key": keys.take(row_of[present]),
            "factors": pa.ListArray.from_arrays(offsets, pa.array(vectors.ravel())),
        }
    )


def by_size(rows_df: DataFrame, sizes: dict[str, int]) -> DataFrame:
    """``rows_df`` with a ``_rank`` column (0: the market with the most rows) and partitioned
    by it in that order, one market per partition where the range sampling allows (small
    markets may share one). Spark starts a stage's tasks in partition order, so the largest
    markets are fitted first. A ``groupBy(_rank, "market")`` reuses this partitioning."""
    order = sorted(sizes, key=lambda market: (-sizes[market], market))
    rank = literal_map({market: number for number, market in enumerate(order)})
    return rows_df.withColumn(_RANK, rank[F.col("market")]).repartitionByRange(
        max(1, len(order)), _RANK
    )


class _ImplicitModel(FactorModel):
    def _fit_factors(self, interactions_df: DataFrame) -> None:
        sizes = {r["market"]: r["nnz"] for r in market_sizes(interactions_df)}
        params_json = json.dumps({m: self.params_for(m) for m in sizes})
        family, seed = self.family, self.seed

        def fit(rows: pa.Table) -> pa.Table:
            return _fit_market(family, params_json, seed, rows)

        factors_df = (
            by_size(
                interactions_df.select(
                    "market", "user_idx", "item_idx", "user_id", "item_id", "confidence"
                ),
                sizes,
            )
            .groupBy(_RANK, "market")
            .applyInArrow(fit, schema=_FACTORS_SCHEMA)
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        self._factors_df = factors_df  # the cached frame both views read; freed by unpersist
        self.user_factors_df = factors_df.where(F.col("side") == "user").select(
            "market", F.col("key").alias("user_id"), F.col("factors").alias("user_factors")
        )
        self.item_factors_df = factors_df.where(F.col("side") == "item").select(
            "market", F.col("key").alias("item_id"), F.col("factors").alias("item_factors")
        )

    def unpersist(self) -> None:
        super().unpersist()
        if hasattr(self, "_factors_df"):
            self._factors_df.unpersist()


class ImplicitALS(_ImplicitModel):
    family = "implicit_als"


class ImplicitBPR(_ImplicitModel):
    family = "implicit_bpr"
