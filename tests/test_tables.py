from __future__ import annotations

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys.errors import RecsysError
from recsys.tables import publish_table, read_table, versions


def test_publish_replaces_and_keeps_a_bounded_history(spark, config):
    for n in (3, 5, 7):
        publish_table(spark, config, spark.range(n), "numbers")
    assert_df_equality(
        read_table(spark, config, "numbers"),
        spark.range(7),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    assert len(versions(spark, config, "numbers")) == config.catalog.keep_versions


def test_a_failed_write_leaves_the_previous_version_readable(spark, config):
    publish_table(spark, config, spark.range(4), "fragile")
    broken_df = spark.range(10).select(
        F.when(F.col("id") < 9, F.col("id"))
        .otherwise(F.raise_error(F.lit("disk on fire")))
        .alias("id")
    )
    with pytest.raises(Exception, match="disk on fire"):
        publish_table(spark, config, broken_df, "fragile")
    assert_df_equality(
        read_table(spark, config, "fragile"),
        spark.range(4),
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_reading_a_missing_table_says_which(spark, config):
    with pytest.raises(RecsysError, match=r"recsys\.nowhere does not exist"):
        read_table(spark, config, "nowhere")


def test_refuses_to_shadow_a_foreign_physical_table(spark, config):
    spark.sql(f"CREATE TABLE {config.table('foreign_t')} (id BIGINT) USING parquet")
    with pytest.raises(RecsysError, match="not a view written by recsys"):
        publish_table(spark, config, spark.range(2), "foreign_t")
    assert versions(spark, config, "foreign_t") == []  # refused before writing anything
