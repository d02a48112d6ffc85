"""Small Column builders shared by the stages."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from pyspark.sql import Column
from pyspark.sql import functions as F

_BUCKETS = 1_000_000


def unit(salt: str, *parts: Column | str) -> Column:
    """A uniform number in [0, 1) from hashing ``salt`` and ``parts``; the same inputs always
    give the same number. Spark's ``xxhash64`` is a built-in with a fixed seed: no UDF."""
    return F.pmod(F.xxhash64(F.lit(salt), *parts), F.lit(_BUCKETS)) / F.lit(float(_BUCKETS))


def literal_map(mapping: Mapping[str, object]) -> Column:
    """A config-sized Python dict as a map literal: ``literal_map(d)[F.col("k")]``."""
    return column_map({key: F.lit(value) for key, value in mapping.items()})


def column_map(mapping: Mapping[str, Column], *, drop_nulls: bool = False) -> Column:
    """map<key, value> of per-row values under literal keys; null values dropped on request."""
    pairs = itertools.chain.from_iterable((F.lit(k), v) for k, v in mapping.items())
    built = F.create_map(*pairs)
    return F.map_filter(built, lambda _, v: v.isNotNull()) if drop_nulls else built
