from __future__ import annotations

import datetime as dt
import math

import pytest
from pyspark.sql import functions as F

from recsys import session
from recsys.session import size_shuffle_partitions, table_bytes
from recsys.tables import publish_partition, publish_table


@pytest.fixture
def restore_partitions(spark):
    before = spark.conf.get("spark.sql.shuffle.partitions")
    yield
    spark.conf.set("spark.sql.shuffle.partitions", before)


def _with(config, **spark_settings):
    return config.model_copy(update={"spark": config.spark.model_copy(update=spark_settings)})


def test_auto_partitions_follow_the_size_of_the_tables_a_step_reads(
    spark, config, monkeypatch, restore_partitions
):
    publish_table(spark, config, spark.range(200_000).selectExpr("id", "id * 7 as x"), "sized")
    size = table_bytes(spark, f"{config.catalog.database}.sized", config.interactions.snapshot_date)
    assert size is not None and size > 100_000  # the view's files, not a default estimate
    auto = _with(config, master="local[2]", shuffle_partitions="auto")

    # Small data: the floor of 4 tasks per core.
    assert size_shuffle_partitions(spark, auto, ["sized"]) == 8
    # Data larger than 8 partitions' worth: one partition per BYTES_PER_PARTITION.
    monkeypatch.setattr(session, "BYTES_PER_PARTITION", size // 20)
    expected = math.ceil(size / (size // 20))
    assert size_shuffle_partitions(spark, auto, ["sized", "no_such_table"]) == expected
    assert spark.conf.get("spark.sql.shuffle.partitions") == str(expected)
    # No inputs (generate-world): the floor; a number in the config wins over the data.
    assert size_shuffle_partitions(spark, auto, []) == 8
    assert size_shuffle_partitions(spark, _with(config, shuffle_partitions=3), ["sized"]) == 3
    assert spark.conf.get("spark.sql.shuffle.partitions") == "3"


def test_a_table_with_snapshots_is_sized_by_the_configured_snapshot_only(spark, config):
    snapshot = config.interactions.snapshot_date
    earlier = snapshot - dt.timedelta(days=1)
    for day, rows in ((earlier, 300_000), (snapshot, 30_000)):
        rows_df = spark.range(rows).withColumn("snapshot_date", F.lit(day))
        publish_partition(
            spark, config, rows_df, "snapshotted", partition_column="snapshot_date", value=day
        )
    table = f"{config.catalog.database}.snapshotted"
    small, large = table_bytes(spark, table, snapshot), table_bytes(spark, table, earlier)
    assert small is not None and large is not None and 2 * small < large


def test_a_missing_table_has_no_size(spark, config):
    missing = f"{config.catalog.database}.never_written"
    assert table_bytes(spark, missing, config.interactions.snapshot_date) is None


def test_java_options_of_the_config_go_beside_the_quiet_logging(spark):
    ours = spark.sparkContext.getConf().get(session.JAVA_OPTIONS)
    merged = session.with_extra(
        {session.JAVA_OPTIONS: ours, "spark.ui.enabled": "true"},
        {session.JAVA_OPTIONS: "-XX:TieredStopAtLevel=1", "spark.ui.enabled": "false"},
    )
    assert merged[session.JAVA_OPTIONS].split() == [*ours.split(), "-XX:TieredStopAtLevel=1"]
    assert "-Dlog4j2.configurationFile=" in ours
    assert merged["spark.ui.enabled"] == "false"
