"""A small world brought as files (the synthetic generator's users and events, written to
CSV and Parquet) comes back as the same tables, and build-interactions runs on it, with an
event type and a behaviour token of the data's own."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.config import load_config, with_ingest
from recsys.ingest import job as ingest_job
from recsys.interactions import job as interactions_job
from recsys.interactions import validate as V
from recsys.tables import read_table
from recsys.world.generate import generate_world
from tests.conftest import database_conf

# Events of the data's own: a configured type and token, and a type nobody configured.
OWN_EVENTS = [
    ("u-own-1", "SE", "addon_usage", "usage:tv", dt.datetime(2026, 10, 2, 9), 3.0),
    ("u-own-1", "SE", "gaming", "usage:tv", dt.datetime(2026, 10, 2, 9), 1.0),
]


@pytest.fixture(scope="module")
def ingested(spark, config, tmp_path_factory):
    folder = tmp_path_factory.mktemp("own_world")
    conf_path = database_conf(
        folder,
        config,
        "ingest_world",
        world={"users": 300},
        interactions={
            "behaviour_events": ["addon_usage"],
            "weights": {**config.interactions.weights, "addon_usage": 1},
            "behaviour_tokens": [*S.BEHAVIOUR_TOKENS, "usage:tv"],
        },
    )
    own = load_config(conf_path)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {own.catalog.database}")
    world = generate_world(spark, own.world, own.markets)
    own_user_df = world.users_df.limit(1).withColumn("user_id", F.lit("u-own-1"))
    users_df = world.users_df.unionByName(own_user_df).persist()
    events_df = world.events_df.unionByName(
        spark.createDataFrame(OWN_EVENTS, S.EVENTS_SCHEMA)
    ).persist()
    # Users as CSV part files (a folder, a header in each), events as Parquet.
    users_df.withColumn("active_addons", F.concat_ws(";", "active_addons")).write.option(
        "header", True
    ).csv(str(folder / "users"))
    events_df.write.parquet(str(folder / "events"))
    own = with_ingest(own, users=str(folder / "users"), events=str(folder / "events"))
    ingest_job.run(spark, own)
    interactions_job.run(spark, own)
    yield own, users_df, events_df
    users_df.unpersist()
    events_df.unpersist()


def test_the_files_come_back_as_the_generated_tables(spark, ingested):
    own, users_df, events_df = ingested
    for name, expected_df in ((S.USERS, users_df), (S.EVENTS, events_df)):
        assert_df_equality(
            read_table(spark, own, name),
            expected_df,
            ignore_row_order=True,
            ignore_nullable=True,
        )


def test_build_interactions_runs_on_them_with_the_own_vocabulary(spark, ingested):
    own, users_df, _ = ingested
    snapshot = F.col("snapshot_date") == F.lit(own.interactions.snapshot_date)
    quarantined = (
        read_table(spark, own, S.EVENTS_QUARANTINE)
        .where(snapshot)
        .select("user_id", "event_type", "reject_reason")
        .collect()
    )
    assert [tuple(r) for r in quarantined] == [("u-own-1", "gaming", V.UNKNOWN_EVENT_TYPE)]
    interactions_df = read_table(spark, own, S.INTERACTIONS).where(snapshot)
    own_rows = interactions_df.where(F.col("item_id") == "usage:tv").collect()
    assert {(r["user_id"], r["is_offer"]) for r in own_rows} == {("u-own-1", False)}
    markets = {r["market"] for r in interactions_df.select("market").distinct().collect()}
    assert markets == {r["market"] for r in users_df.select("market").distinct().collect()}
