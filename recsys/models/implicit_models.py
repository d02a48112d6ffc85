"""``implicit`` ALS and BPR, one market per Spark task.

``groupBy("market").applyInPandas`` hands each task one market's rows; the task builds the
market's sparse user x item matrix, fits, and returns the factors as rows, so 180 markets
train in parallel on a cluster and only factors come back (never to the driver). A market
must fit in one executor's memory: the largest market is the limit, not the total.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys.models.factors import FactorModel

_FACTORS_SCHEMA = "market string, side string, key string, factors array<float>"


def _fit_market(family: str, params_json: str, seed: int, rows: pd.DataFrame) -> pd.DataFrame:
    """Fit one market's model; rows: user_idx, item_idx, user_id, item_id, confidence."""
    # Imported in the task: executors need implicit, the driver does not import it to plan.
    import implicit
    from scipy.sparse import csr_matrix
    from threadpoolctl import threadpool_limits

    params = json.loads(params_json)[rows["market"].iat[0]]
    users = rows["user_idx"].to_numpy(dtype=np.int64)
    items = rows["item_idx"].to_numpy(dtype=np.int64)
    matrix = csr_matrix(
        (rows["confidence"].to_numpy(dtype=np.float32), (users, items)),
        shape=(int(users.max()) + 1, int(items.max()) + 1),
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
    market = rows["market"].iat[0]
    user_keys = rows[["user_idx", "user_id"]].drop_duplicates("user_idx")
    item_keys = rows[["item_idx", "item_id"]].drop_duplicates("item_idx")
    # implicit's BPR keeps an item bias as the last factor and a matching column of ones in
    # the user factors, so a plain dot product is its score too.
    user_factors = model.user_factors[user_keys["user_idx"].to_numpy()]
    item_factors = model.item_factors[item_keys["item_idx"].to_numpy()]
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "market": market,
                    "side": "user",
                    "key": user_keys["user_id"].to_numpy(),
                    "factors": list(user_factors.astype(np.float32)),
                }
            ),
            pd.DataFrame(
                {
                    "market": market,
                    "side": "item",
                    "key": item_keys["item_id"].to_numpy(),
                    "factors": list(item_factors.astype(np.float32)),
                }
            ),
        ],
        ignore_index=True,
    )


class _ImplicitModel(FactorModel):
    def _fit_factors(self, interactions_df: DataFrame) -> None:
        markets = [r["market"] for r in interactions_df.select("market").distinct().collect()]
        params_json = json.dumps({m: self.params_for(m) for m in markets})
        family, seed = self.family, self.seed

        def fit(rows: pd.DataFrame) -> pd.DataFrame:
            return _fit_market(family, params_json, seed, rows)

        factors_df = (
            interactions_df.select(
                "market", "user_idx", "item_idx", "user_id", "item_id", "confidence"
            )
            .groupBy("market")
            .applyInPandas(fit, schema=_FACTORS_SCHEMA)
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
