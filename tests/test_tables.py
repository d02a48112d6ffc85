from __future__ import annotations

import uuid

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys.errors import RecsysError
from recsys.tables import (
    publish_partition,
    publish_table,
    read_table,
    sql_identifier,
    sql_string,
    table_location,
    versions,
)
from tests.conftest import reading_all_along


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


def test_sql_string_and_identifier_escape_what_would_end_them(spark):
    odd = "it's a `back\\tick`"
    assert sql_string(odd) == "'it\\'s a `back\\\\tick`'"
    assert sql_identifier("db", odd) == "`db`.`it's a ``back\\tick```"
    assert spark.sql(f"SELECT {sql_string(odd)} AS {sql_identifier(odd)}").first()[odd] == odd


def test_a_warehouse_folder_with_a_quote_and_a_backtick_publishes(spark, config, tmp_path):
    odd = tmp_path / "it's a `folder`"
    odd.mkdir()
    database = f"odd_{uuid.uuid4().hex[:8]}"
    spark.sql(f"CREATE DATABASE {database} LOCATION {sql_string(odd / 'db')}")
    odd_conf = config.model_copy(
        update={"catalog": config.catalog.model_copy(update={"database": database})}
    )
    try:
        for n in (2, 3):
            publish_table(spark, odd_conf, spark.range(n), "numbers")
        assert read_table(spark, odd_conf, "numbers").count() == 3
        for n in (4, 5):
            rows_df = spark.range(n).withColumn("day", F.lit("2026-01-01"))
            folder = publish_partition(
                spark, odd_conf, rows_df, "daily", partition_column="day", value="2026-01-01"
            )
        assert folder.startswith(str(odd)) or str(odd) in folder
        assert read_table(spark, odd_conf, "daily").count() == 5
        assert table_location(spark, odd_conf.table("daily")).endswith("db/daily")
    finally:
        spark.sql(f"DROP DATABASE {sql_identifier(database)} CASCADE")


def test_a_reader_never_misses_a_view_that_publish_table_moves(spark, config):
    publish_table(spark, config, spark.range(5).select(F.lit(0).alias("run")), "moving")

    def read():
        return [[r[0] for r in read_table(spark, config, "moving").collect()]]

    with reading_all_along(read, least_reads=10) as (seen, failures):
        for run in range(1, 6):
            publish_table(spark, config, spark.range(5).select(F.lit(run).alias("run")), "moving")
    assert failures == []
    assert all(len(rows) == 5 and len(set(rows)) == 1 for rows in seen), seen
