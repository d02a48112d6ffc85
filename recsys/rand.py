"""Counter-based randomness from Spark built-ins: every draw is a hash of (seed, tag, keys).

`rand(seed)` depends on partitioning, so the same seed on a different cluster would give
different draws. Hashing the user's id instead makes each draw a pure function of the seed
and the row, whatever the partitioning, executor count or order of evaluation.
"""

from __future__ import annotations

import math

from pyspark.sql import Column
from pyspark.sql import functions as F

_MASK = (1 << 53) - 1
_SCALE = float(1 << 53)


class Rng:
    """Draws keyed by ``key`` (a column identifying the row, e.g. the user's numeric id)."""

    def __init__(self, seed: int, key: Column) -> None:
        self.seed = seed
        self.key = key

    def uniform(self, tag: str, *extra: Column) -> Column:
        """U(0, 1), never exactly 0 or 1."""
        bits = F.xxhash64(F.lit(self.seed), F.lit(tag), self.key, *extra).bitwiseAND(_MASK)
        return (bits + F.lit(0.5)) / F.lit(_SCALE)

    def normal(self, tag: str, *extra: Column) -> Column:
        """N(0, 1) by Box-Muller."""
        u1 = self.uniform(tag + "/1", *extra)
        u2 = self.uniform(tag + "/2", *extra)
        return F.sqrt(-2.0 * F.log(u1)) * F.cos(2.0 * math.pi * u2)

    def gumbel(self, tag: str, *extra: Column) -> Column:
        """Gumbel(0, 1): argmax(log w_i + g_i) samples i with probability w_i / sum(w)."""
        return -F.log(-F.log(self.uniform(tag, *extra)))

    def poisson(self, tag: str, lam: Column, k_max: int = 60) -> Column:
        """Poisson(lam) by inverse CDF up to k_max (a hard cap on the count).

        The uniform and ``lam`` ride in the accumulator: an expression the lambda refers to
        is evaluated at every one of the k_max steps, the hash and ``lam`` included.
        """
        p0 = F.exp(-lam)
        start = F.struct(
            p0.alias("p"),
            p0.alias("cdf"),
            F.lit(0).alias("n"),
            self.uniform(tag).alias("u"),
            lam.cast("double").alias("lam"),
        )

        def add_term(acc: Column, k: Column) -> Column:
            p = acc["p"] * acc["lam"] / k
            return F.struct(
                p.alias("p"),
                (acc["cdf"] + p).alias("cdf"),
                (acc["n"] + (acc["u"] > acc["cdf"]).cast("int")).alias("n"),
                acc["u"].alias("u"),
                acc["lam"].alias("lam"),
            )

        return F.aggregate(F.sequence(F.lit(1), F.lit(k_max)), start, add_term, lambda a: a["n"])

    def choice(self, tag: str, log_weights: dict[str, Column], *extra: Column) -> Column:
        """One key of ``log_weights`` drawn with probability proportional to exp(weight).

        A null weight means "not available": it is never drawn. Null if none is available.
        """
        scored = [
            F.when(
                w.isNotNull(),
                F.struct((w + self.gumbel(f"{tag}/{k}", *extra)).alias("s"), F.lit(k).alias("k")),
            )
            for k, w in log_weights.items()
        ]
        return F.array_max(F.array(*scored))["k"]
