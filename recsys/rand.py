"""Counter-based randomness from Spark built-ins: every draw is a hash of (seed, tag, keys).

`rand(seed)` depends on partitioning, so the same seed on a different cluster would give
different draws. Hashing the user's id instead makes each draw a pure function of the seed
and the row, whatever the partitioning, executor count or order of evaluation.
"""

from __future__ import annotations

import math

import numpy as np
from pyspark.sql import Column
from pyspark.sql import functions as F

_MASK = (1 << 53) - 1
_SCALE = float(1 << 53)
# Spark's XXH64 (org.apache.spark.sql.catalyst.expressions.XXH64).
_PRIME64_1 = np.uint64(0x9E3779B185EBCA87)
_PRIME64_2 = np.uint64(0xC2B2AE3D27D4EB4F)
_PRIME64_3 = np.uint64(0x165667B19E3779F9)
_PRIME64_5 = np.uint64(0x27D4EB2F165667C5)


class Rng:
    """Draws keyed by ``key`` (a column identifying the row, e.g. the user's numeric id)."""

    def __init__(self, seed: int, key: Column) -> None:
        self.seed = seed
        self.key = key

    def uniform(self, tag: str, *extra: Column) -> Column:
        """U(0, 1), never exactly 0 or 1."""
        bits = F.xxhash64(F.lit(self.seed), F.lit(tag), self.key, *extra).bitwiseAND(_MASK)
        return (bits + F.lit(0.5)) / F.lit(_SCALE)

    def stem(self, tag: str) -> Column:
        """The row's hash of (seed, tag, key), from which :func:`uniforms` draws on the driver
        what :meth:`uniform` draws in Spark with one more integer key."""
        return F.xxhash64(F.lit(self.seed), F.lit(tag), self.key)

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


def uniforms(stems: np.ndarray, count: int) -> np.ndarray:
    """``Rng(seed, key).uniform(tag, F.lit(j))`` for j in 0..count-1, on the driver.

    Spark's ``xxhash64`` hashes its arguments in turn, each seeded with the hash so far, so
    the draw for integer ``j`` is XXH64's hash of that one int seeded with the row's
    :meth:`Rng.stem`. Repeating that step in NumPy draws the same numbers, bit for bit,
    without a row per draw in Spark.

    Parameters
    ----------
    stems
        One :meth:`Rng.stem` per row (int64).
    count
        How many draws per row.

    Returns
    -------
    numpy.ndarray
        (rows, count) floats in (0, 1).
    """
    seed = stems.astype(np.int64).view(np.uint64)[:, None]
    j = np.arange(count, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):  # XXH64 is arithmetic modulo 2**64
        h = seed + _PRIME64_5 + np.uint64(4)
        h = h ^ j * _PRIME64_1
        h = ((h << np.uint64(23)) | (h >> np.uint64(41))) * _PRIME64_2 + _PRIME64_3
        h ^= h >> np.uint64(33)
        h *= _PRIME64_2
        h ^= h >> np.uint64(29)
        h *= _PRIME64_3
        h ^= h >> np.uint64(32)
    return ((h & np.uint64(_MASK)).astype(np.float64) + 0.5) / _SCALE
