"""Contiguous integer ids per market, computed without a per-market sort in one task.

A window ``partitionBy(market)`` would sort a whole market in one task, which a market of
tens of millions of users makes slow. Instead the keys are range-partitioned by
(market, key), numbered within each partition, and offset by the counts of the partitions
before it: a table of partitions x markets rows, the only thing brought to the driver.
The index of a key is its rank within its market, so it is stable for the same keys.
"""

from __future__ import annotations

from itertools import accumulate

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T


def contiguous_index(
    keys_df: DataFrame, *, group: str = "market", key: str, index: str, partitions: int
) -> DataFrame:
    """(group, key, index) with index = 0..n-1 in key order within each group.

    ``keys_df``: columns ``group`` and ``key``, any duplicates.
    """
    ranged_df = (
        keys_df.select(group, key)
        .distinct()
        .repartitionByRange(partitions, group, key)
        .withColumn("_part", F.spark_partition_id())
    )
    # Checkpointed: range bounds come from a sample, and the counts and the numbering below
    # must see the very same partitioning.
    local_df = ranged_df.withColumn(
        "_local", F.row_number().over(Window.partitionBy("_part", group).orderBy(key)) - 1
    ).localCheckpoint(eager=True)
    sizes = local_df.groupBy("_part", group).count().orderBy(group, "_part").collect()
    offsets, by_group = [], {}
    for row in sizes:
        by_group.setdefault(row[group], []).append((row["_part"], row["count"]))
    for value, parts in by_group.items():
        starts = [0, *accumulate(n for _, n in parts)][:-1]
        offsets += [(value, part, start) for (part, _), start in zip(parts, starts, strict=True)]
    offsets_df = keys_df.sparkSession.createDataFrame(
        offsets,
        T.StructType(
            [
                T.StructField(group, keys_df.schema[group].dataType),
                T.StructField("_part", T.IntegerType()),
                T.StructField("_offset", T.LongType()),
            ]
        ),
    )
    indexed_df = local_df.join(F.broadcast(offsets_df), on=[group, "_part"], how="inner").select(
        group, key, (F.col("_offset") + F.col("_local")).cast("int").alias(index)
    )
    return indexed_df
