"""build-interactions on a generated world: clean input, injected bad rows, and a failure
past the threshold that leaves the previous snapshot in place."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.cli import main
from recsys.config import SourceConfig
from recsys.interactions import job as interactions_job
from recsys.interactions import validate as V
from recsys.interactions.build import cutoffs
from recsys.interactions.guards import FAILED_QUARANTINE, BadInputError, CollapseError
from recsys.tables import publish_table, read_table
from recsys.world import job as world_job

pytestmark = pytest.mark.slow  # world_config generates a 4,000-user world and builds it

INJECTED = {
    V.MISSING_USER_ID: 7,
    V.INVALID_ID: 2,
    V.ID_TOO_LONG: 2,
    V.UNKNOWN_USER: 4,
    V.UNKNOWN_MARKET: 5,
    V.UNKNOWN_EVENT_TYPE: 4,
    V.MISSING_TIMESTAMP: 3,
    V.EARLY_TIMESTAMP: 3,
    V.FUTURE_TIMESTAMP: 3,
    V.UNKNOWN_ITEM: 6,
    V.NEGATIVE_VALUE: 2,
    V.ABSURD_VALUE: 2,
    V.DUPLICATE: 8,
}


def _with_source(config, table):
    interactions = config.interactions.model_copy(update={"source": SourceConfig(table=table)})
    return config.model_copy(update={"interactions": interactions})


@pytest.fixture(scope="module")
def world_config(spark, config):
    world_config = config.model_copy(
        update={"world": config.world.model_copy(update={"users": 4_000})}
    )
    world_job.run(spark, world_config)
    interactions_job.run(spark, world_config)
    return world_config


def _snapshot(config):
    return F.col("snapshot_date") == F.lit(config.interactions.snapshot_date)


def _quarantined(spark, config):
    rows = (
        read_table(spark, config, S.EVENTS_QUARANTINE)
        .where(_snapshot(config))
        .groupBy("reject_reason")
        .count()
        .collect()
    )
    return {r["reject_reason"]: r["count"] for r in rows}


def test_a_clean_world_quarantines_nothing(spark, world_config):
    assert _quarantined(spark, world_config) == {}
    splits = (
        read_table(spark, world_config, S.INTERACTIONS)
        .where(_snapshot(world_config))
        .groupBy("split")
        .count()
        .collect()
    )
    assert {r["split"] for r in splits} == {
        "past_1",
        "tune",
        "validation",
        "train",
        "holdout",
        "full",
    }


def test_user_state_is_written_for_each_split_point(spark, world_config):
    """One row per user and split point; a later point knows every user an earlier one
    knows (history only grows)."""
    state_df = read_table(spark, world_config, S.USER_STATE).where(_snapshot(world_config))
    per_split = {r["split"]: r["count"] for r in state_df.groupBy("split").count().collect()}
    assert set(per_split) == {"past_1", "tune", "train", "full"}
    assert per_split["past_1"] <= per_split["tune"] <= per_split["train"] <= per_split["full"]
    assert state_df.select("split", "market", "user_id").distinct().count() == sum(
        per_split.values()
    )


def test_every_training_row_comes_from_an_event_before_the_split(spark, world_config):
    split, _ = cutoffs(
        world_config.interactions.snapshot_date, world_config.interactions.holdout_days
    )
    weighted = [t for t, w in world_config.interactions.weights.items() if w > 0]
    before_df = (
        read_table(spark, world_config, S.EVENTS)
        .where((F.col("event_ts") < F.lit(split)) & F.col("event_type").isin(*weighted))
        .select("market", "user_id", "item_id")
    )
    train_df = (
        read_table(spark, world_config, S.INTERACTIONS)
        .where(_snapshot(world_config) & (F.col("split") == "train"))
        .select("market", "user_id", "item_id")
    )
    leaked_df = train_df.join(before_df, ["market", "user_id", "item_id"], how="left_anti")
    assert_df_equality(leaked_df, train_df.limit(0))
    assert train_df.count() > 10_000


def _bad_rows(events_df, n, market=None):
    base = events_df.where(F.col("event_type") == S.LISTEN)
    if market:
        base = base.where(F.col("market") == market)
    return base.orderBy("user_id", "event_ts", "item_id").limit(n)


def test_injected_bad_rows_land_in_quarantine_by_reason(spark, world_config):
    events_df = read_table(spark, world_config, S.EVENTS)
    offers_df = events_df.where(F.col("event_type") == S.CONVERSION)
    bad = [
        _bad_rows(events_df, 7).withColumn("user_id", F.lit(None).cast("string")),
        _bad_rows(events_df, 2).withColumn(
            "user_id", F.concat("user_id", F.unhex(F.lit("FF")).cast("string"))
        ),
        _bad_rows(events_df, 2).withColumn("item_id", F.repeat(F.lit("x"), 300)),
        _bad_rows(events_df, 4).withColumn("user_id", F.lit("ghost")),
        _bad_rows(events_df, 3).withColumn("event_ts", F.lit(dt.datetime(1969, 7, 20))),
        _bad_rows(events_df, 5).withColumn("market", F.lit("ZZ")),
        _bad_rows(events_df, 4).withColumn("event_type", F.lit("teleport")),
        _bad_rows(events_df, 3).withColumn("event_ts", F.lit(None).cast("timestamp")),
        _bad_rows(events_df, 3).withColumn("event_ts", F.lit(dt.datetime(2027, 1, 1))),
        offers_df.limit(6).withColumn("item_id", F.lit("premium_platinum")),
        _bad_rows(events_df, 2).withColumn("value", F.lit(-5.0)),
        _bad_rows(events_df, 2).withColumn("value", F.lit(99_999.0)),
        _bad_rows(events_df, 8),  # exact copies of valid events
    ]
    injected_df = events_df
    for bad_df in bad:
        injected_df = injected_df.unionByName(bad_df)
    publish_table(spark, world_config, injected_df, "events_injected")

    injected_config = _with_source(world_config, "events_injected")
    interactions_job.run(spark, injected_config)
    assert _quarantined(spark, injected_config) == INJECTED


def test_past_the_threshold_the_job_fails_and_keeps_the_previous_snapshot(spark, world_config):
    interactions_job.run(spark, world_config)  # a good snapshot to keep
    current = read_table(spark, world_config, S.INTERACTIONS).where(_snapshot(world_config))
    files_before = {r[0] for r in current.select("_metadata.file_path").distinct().collect()}
    rows_before = current.count()

    events_df = read_table(spark, world_config, S.EVENTS)
    se_rows = events_df.where(F.col("market") == "SE").count()
    n_bad = int(se_rows * 0.08)
    bad_df = _bad_rows(events_df, n_bad, market="SE").withColumn("value", F.lit(-1.0))
    publish_table(spark, world_config, events_df.unionByName(bad_df), "events_bad_se")

    with pytest.raises(BadInputError) as failure:
        interactions_job.run(spark, _with_source(world_config, "events_bad_se"))
    message = str(failure.value)
    assert f"SE: {n_bad / (se_rows + n_bad):.1%} of {se_rows + n_bad:,} rows" in message
    assert f"negative_value {n_bad:,}" in message
    assert "nothing was written to interactions" in message
    failed = world_config.table(FAILED_QUARANTINE)
    assert f"this run's rejected rows are in {failed}" in message

    after = read_table(spark, world_config, S.INTERACTIONS).where(_snapshot(world_config))
    assert {r[0] for r in after.select("_metadata.file_path").distinct().collect()} == files_before
    assert after.count() == rows_before
    # The quarantine served is still the one of the interactions served (a clean world's);
    # the failed run's rows are beside it under their own name.
    assert _quarantined(spark, world_config) == {}
    failed_rows = spark.table(failed).groupBy("reject_reason").count().collect()
    assert {r["reject_reason"]: r["count"] for r in failed_rows} == {V.NEGATIVE_VALUE: n_bad}

    interactions_job.run(spark, world_config)  # a run that succeeds clears them
    assert not spark.catalog.tableExists(failed)


def test_a_source_without_rows_fails_and_keeps_the_previous_snapshot(spark, world_config):
    before = read_table(spark, world_config, S.INTERACTIONS).where(_snapshot(world_config)).count()
    publish_table(spark, world_config, read_table(spark, world_config, S.EVENTS).limit(0), "none")
    with pytest.raises(CollapseError) as failure:
        interactions_job.run(spark, _with_source(world_config, "none"))
    assert str(failure.value).startswith(
        f"the events source, table {world_config.table('none')} (interactions.source.table), "
        "has 0 rows; nothing was written"
    )
    after = read_table(spark, world_config, S.INTERACTIONS).where(_snapshot(world_config)).count()
    assert after == before > 0


def test_interactions_that_shrink_past_the_share_fail_with_both_counts(spark, world_config):
    before = read_table(spark, world_config, S.INTERACTIONS).where(_snapshot(world_config)).count()
    events_df = read_table(spark, world_config, S.EVENTS)
    publish_table(spark, world_config, events_df.where(F.hash("user_id") % 10 == 0), "a_tenth")
    with pytest.raises(CollapseError) as failure:
        interactions_job.run(spark, _with_source(world_config, "a_tenth"))
    message = str(failure.value)
    snapshot = world_config.interactions.snapshot_date
    assert message.startswith(f"interactions of snapshot {snapshot} would have ")
    assert (
        f"fewer than the {before:,} of the version they replace (snapshot {snapshot}); more "
        "than interactions.max_drop_share=50%, so nothing was written and the previous "
        "version stays served. If the smaller input is right, rerun with --set "
        "interactions.max_drop_share=1"
    ) in message
    after = read_table(spark, world_config, S.INTERACTIONS).where(_snapshot(world_config)).count()
    assert after == before


def test_csv_files_are_a_source_too(spark, world_config, tmp_path):
    header = ",".join(S.EVENTS_SCHEMA.fieldNames())
    user = read_table(spark, world_config, S.USERS).where("market = 'SE'").first()["user_id"]
    (tmp_path / "events.csv").write_text(
        f"{header}\n"
        f"{user},SE,listen,genre:pop,2026-10-01T10:00:00,12.5\n"
        f"{user},SE,listen,genre:pop,last tuesday,12.5\n"
        f"{user},SE,plan_page_view,premium_family,2026-10-02 11:00:00,1\n"
    )
    interactions = world_config.interactions.model_copy(
        update={
            "source": SourceConfig(table=None, path=str(tmp_path), format="csv"),
            "max_bad_share": 0.5,
            "max_drop_share": 1.0,  # three events replace a world's
        }
    )
    csv_config = world_config.model_copy(update={"interactions": interactions})
    interactions_job.run(spark, csv_config)
    assert _quarantined(spark, csv_config) == {V.UNPARSEABLE_TIMESTAMP: 1}
    train = (
        read_table(spark, csv_config, S.INTERACTIONS)
        .where(_snapshot(csv_config) & (F.col("split") == "train"))
        .select("user_id", "item_id")
        .collect()
    )
    assert sorted(tuple(r) for r in train) == [(user, "genre:pop"), (user, "premium_family")]


def test_csv_with_columns_in_another_order_fails_clearly(world_config, conf_path, tmp_path, capsys):
    (tmp_path / "events.csv").write_text(
        "user_id,market,item_id,event_type,event_ts,value\n"
        "u1,SE,genre:pop,listen,2026-10-01T10:00:00,12.5\n"
    )
    overrides = [
        "interactions.source.table=null",
        f"interactions.source.path={tmp_path}",
        "interactions.source.format=csv",
    ]
    args = [x for o in overrides for x in ("--set", o)]
    assert main(["build-interactions", "--conf", str(conf_path), *args]) == 1
    err = capsys.readouterr().err
    assert "recsys: spark error:" in err
    assert "caused by: CSV header does not conform to the schema." in err
    assert "Expected: event_type but found: item_id" in err
    assert "Traceback" not in err


def test_unknown_tokens_are_named_with_the_key_to_set_and_a_pattern_lets_them_in(
    spark, world_config
):
    """Listening tagged with moods the config does not list fails the step with the moods,
    their counts and where to declare them; ``mood:*`` then keeps every one of them."""
    events_df = read_table(spark, world_config, S.EVENTS)
    listens = _bad_rows(events_df, 5, market="SE")
    moods_df = (
        listens.withColumn("item_id", F.lit("mood:calm"))
        .unionByName(listens.limit(3).withColumn("item_id", F.lit("mood:loud")))
        .unionByName(listens.limit(1).withColumn("item_id", F.lit("premium_family")))
    )
    publish_table(spark, world_config, events_df.unionByName(moods_df), "events_moods")
    moods_config = _with_source(world_config, "events_moods")
    strict = moods_config.interactions.model_copy(update={"max_bad_share": 0.0})

    with pytest.raises(BadInputError) as failure:
        interactions_job.run(spark, moods_config.model_copy(update={"interactions": strict}))
    message = str(failure.value)
    assert (
        "unknown_item: behaviour events carry items that interactions.behaviour_tokens does "
        "not list: 'mood:calm' (5 rows), 'mood:loud' (3 rows), 'premium_family' (1 row); "
        "add the tokens, or patterns that cover them such as ['mood:*'], to "
        f"interactions.behaviour_tokens in {moods_config.source}; ['premium_family'] are "
        "offer ids, which only offer events may name"
    ) in message

    tokens = [*moods_config.interactions.behaviour_tokens, "mood:*"]
    lenient = moods_config.interactions.model_copy(update={"behaviour_tokens": tokens})
    interactions_job.run(spark, moods_config.model_copy(update={"interactions": lenient}))
    assert _quarantined(spark, moods_config) == {V.UNKNOWN_ITEM: 1}  # the offer id
    kept = (
        read_table(spark, moods_config, S.INTERACTIONS)
        .where(_snapshot(moods_config) & F.col("item_id").startswith("mood:"))
        .select("item_id", "is_offer")
        .distinct()
        .collect()
    )
    assert sorted(tuple(r) for r in kept) == [("mood:calm", False), ("mood:loud", False)]
