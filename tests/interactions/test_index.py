from __future__ import annotations

import random

from chispa import assert_df_equality
from pyspark.sql import types as T

from recsys.interactions.index import contiguous_index

INPUT = T.StructType([T.StructField("market", T.StringType()), T.StructField("k", T.StringType())])
OUT = T.StructType([*INPUT.fields, T.StructField("idx", T.IntegerType())])


def test_small_case_ranks_keys_within_each_market(spark):
    keys_df = spark.createDataFrame(
        [("SE", "b"), ("SE", "a"), ("DE", "z"), ("SE", "b"), ("SE", "c"), ("DE", "y")], INPUT
    )
    expected = spark.createDataFrame(
        [("DE", "y", 0), ("DE", "z", 1), ("SE", "a", 0), ("SE", "b", 1), ("SE", "c", 2)], OUT
    )
    got = contiguous_index(keys_df, key="k", index="idx", partitions=3)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_many_partitions_match_a_python_reference(spark):
    rng = random.Random(3)
    rows = [(rng.choice("ABC"), f"user{rng.randrange(5000):05d}") for _ in range(4000)]
    reference = []
    for market in "ABC":
        keys = sorted({k for m, k in rows if m == market})
        reference += [(market, k, i) for i, k in enumerate(keys)]
    got = contiguous_index(spark.createDataFrame(rows, INPUT), key="k", index="idx", partitions=7)
    assert_df_equality(
        got, spark.createDataFrame(reference, OUT), ignore_row_order=True, ignore_nullable=True
    )
