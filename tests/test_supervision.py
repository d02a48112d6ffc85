"""What the conversion model learns from: a window's labelled impressions and page views, and
the offers users looked at in a named experiment (the served fit only)."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys import schemas as S
from recsys.errors import RecsysError
from recsys.labelling import CANDIDATES, IMPRESSIONS, experiment_log, labelled_log, rows_source
from recsys.supervision import Supervision
from recsys.tables import publish_partition, read_table
from recsys.vocabulary import FULL, TRAIN, TUNE

BEGIN, END = dt.datetime(2026, 9, 20), dt.datetime(2026, 10, 11)


def test_a_window_keeps_usable_impressions_and_views_labelled_before_its_end(spark):
    at = dt.datetime
    rows = [
        # taken inside the window: a positive
        ("SE", "u1", "premium_family", "offer_impression", at(2026, 9, 21), 0.25, at(2026, 9, 22)),
        # taken after the window's end: not a positive of this window
        ("SE", "u2", "premium_duo", "offer_impression", at(2026, 10, 9), 0.5, at(2026, 10, 12)),
        # a propensity of 0, and a missing one: left out, never divided by
        ("SE", "u3", "premium_duo", "offer_impression", at(2026, 9, 25), 0.0, None),
        ("SE", "u4", "premium_duo", "offer_impression", at(2026, 9, 25), None, None),
        # before the window, and an acceptance row: not examples
        ("SE", "u5", "premium_duo", "offer_impression", at(2026, 9, 19), 0.5, None),
        ("SE", "u1", "premium_family", "acceptance", at(2026, 9, 22), None, at(2026, 9, 22)),
        # a plan-page view: an organic example, no propensity
        ("SE", "u6", "premium_individual", "plan_page_view", at(2026, 10, 1), None, None),
    ]
    log_df = spark.createDataFrame(rows, S.OFFER_LOG_SCHEMA.fieldNames()[:-1])
    expected = spark.createDataFrame(
        [
            ("SE", "u1", "premium_family", 1.0, 0.25, False),
            ("SE", "u2", "premium_duo", 0.0, 0.5, False),
            ("SE", "u6", "premium_individual", 0.0, None, True),
        ],
        "market string, user_id string, offer_id string, label double, propensity double, "
        "is_organic boolean",
    )
    assert_df_equality(
        labelled_log(log_df, BEGIN, END), expected, ignore_row_order=True, ignore_nullable=True
    )


def test_the_rows_follow_the_impressions_unless_set():
    snapshot = dt.date(2026, 11, 1)
    assert rows_source("auto", has_impressions=True, snapshot=snapshot) == IMPRESSIONS
    assert rows_source("auto", has_impressions=False, snapshot=snapshot) == CANDIDATES
    assert rows_source("candidates", has_impressions=True, snapshot=snapshot) == CANDIDATES
    with pytest.raises(RecsysError, match="offer_log has no offer_impression rows for snapshot"):
        rows_source("impressions", has_impressions=False, snapshot=snapshot)


def test_an_experiment_labels_the_offers_users_looked_at_by_what_they_took(spark):
    day = dt.date(2026, 11, 1)
    at = dt.datetime(2026, 11, 3)

    def shown(user, rank, offer, propensity, examined):
        return (user, "SE", "treatment", rank, offer, propensity, "r", examined, at, "1", day, "t")

    exposures_df = spark.createDataFrame(
        [
            shown("u1", 1, "premium_duo", 0.9, True),  # looked at and taken
            shown("u1", 2, "premium_family", 0.9, True),  # looked at, another taken
            shown("u1", 3, "premium_mini", 0.9, False),  # never looked at: no example
            shown("u2", 1, "premium_duo", 0.0, True),  # no usable propensity: left out
            shown("u3", 1, "premium_duo", 0.05, True),  # nothing taken
            shown("u4", 0, None, 1.0, False),  # served nothing
            shown("u5", 1, "premium_duo", 0.9, True),  # no outcome row: left out
        ],
        S.EXPERIMENT_EXPOSURES_SCHEMA,
    )
    outcomes = [
        ("u1", 1, "premium_duo"),
        ("u2", 1, "premium_duo"),
        ("u3", 0, None),
        ("u4", 0, None),
    ]
    truth = (None, None, None, None)  # the simulator's expected values: not read here
    end = day + dt.timedelta(days=28)
    outcomes_df = spark.createDataFrame(
        [
            (u, "SE", converted, offer, None, None, 0.0, 0, 0, 0, 0.0, 0.0, *truth, day, end, "t")
            for u, converted, offer in outcomes
        ],
        S.EXPERIMENT_OUTCOMES_SCHEMA,
    )
    expected = spark.createDataFrame(
        [
            ("t", day, "SE", "u1", "premium_duo", 1.0, 0.9),
            ("t", day, "SE", "u1", "premium_family", 0.0, 0.9),
            ("t", day, "SE", "u3", "premium_duo", 0.0, 0.05),
        ],
        "experiment_id string, snapshot_date date, market string, user_id string, "
        "offer_id string, label double, propensity double",
    )
    assert_df_equality(
        experiment_log(exposures_df, outcomes_df),
        expected,
        ignore_row_order=True,
        ignore_nullable=True,
    )


def _comparable(df):
    """``df`` with each map column as its sorted entries: set operations refuse maps."""
    return df.select(
        *(
            F.array_sort(F.map_entries(f.name)).alias(f.name)
            if isinstance(f.dataType, T.MapType)
            else F.col(f.name)
            for f in df.schema.fields
        )
    )


@pytest.mark.slow
def test_the_served_fit_alone_learns_from_a_named_experiment(spark, experimented):
    """With the experiment named, the full split's examples gain its looked-at offers (those
    still open to the user at the snapshot), with the features at the snapshot; the train
    split, whose model the gate judges, is unchanged."""
    _, config = experimented
    experiment = config.recommend.experiment.id
    snapshot = config.interactions.snapshot_date
    interactions_df = read_table(spark, config, S.INTERACTIONS).where(
        F.col("snapshot_date") == F.lit(snapshot)
    )
    plain = Supervision(spark, config, interactions_df)
    closed = Supervision(spark, config, interactions_df, experiments=[experiment])
    keys = ["market", "user_id", "offer_id", "label", "propensity"]

    added_df = _comparable(closed.for_split(FULL).examples_df).exceptAll(
        _comparable(plain.for_split(FULL).examples_df)
    )
    logged_df = experiment_log(
        read_table(spark, config, S.EXPERIMENT_EXPOSURES),
        read_table(spark, config, S.EXPERIMENT_OUTCOMES),
    ).where(F.col("experiment_id") == experiment)
    assert added_df.count() > 100
    assert added_df.select(*keys).exceptAll(logged_df.select(*keys)).count() == 0
    assert 0 < added_df.where(F.col("label") == 1).count() < added_df.count()
    features = [c for c in plain.users_at(FULL).columns if c not in ("market", "user_id")]
    at_snapshot_df = added_df.select("market", "user_id", *features).distinct()
    assert at_snapshot_df.exceptAll(_comparable(plain.users_at(FULL))).count() == 0
    assert closed.for_split(TRAIN).examples_df.count() == plain.for_split(TRAIN).examples_df.count()
    assert experiment in closed.describe()
    for supervision in (plain, closed):
        supervision.unpersist()


@pytest.mark.slow
def test_an_experiment_without_logs_or_off_the_splits_is_refused(spark, experimented):
    _, config = experimented
    snapshot = config.interactions.snapshot_date
    interactions_df = read_table(spark, config, S.INTERACTIONS).where(
        F.col("snapshot_date") == F.lit(snapshot)
    )
    with pytest.raises(RecsysError, match="'no-such-test' has no looked-at offers"):
        Supervision(spark, config, interactions_df, experiments=["no-such-test"]).for_split(FULL)

    later = snapshot + dt.timedelta(days=5)
    for name, schema in (
        (S.EXPERIMENT_EXPOSURES, S.EXPERIMENT_EXPOSURES_SCHEMA),
        (S.EXPERIMENT_OUTCOMES, S.EXPERIMENT_OUTCOMES_SCHEMA),
    ):
        moved_df = (
            read_table(spark, config, name)
            .where(F.col("experiment_id") == config.recommend.experiment.id)
            .withColumn("experiment_id", F.lit("late-test"))
        )
        if "snapshot_date" in schema.fieldNames():
            moved_df = moved_df.withColumn("snapshot_date", F.lit(later))
        publish_partition(
            spark, config, moved_df, name, partition_column="experiment_id", value="late-test"
        )
    with pytest.raises(RecsysError, match=f"'late-test' started on {later}; .* must be one of"):
        Supervision(spark, config, interactions_df, experiments=["late-test"]).for_split(FULL)


@pytest.mark.slow
def test_every_fit_also_learns_from_the_past_window_with_its_own_features(spark, experimented):
    """The past window's examples come with the features at its start, labelled inside it,
    and every fold of the search trials learns from them."""
    _, config = experimented
    snapshot = config.interactions.snapshot_date
    interactions_df = read_table(spark, config, S.INTERACTIONS).where(
        F.col("snapshot_date") == F.lit(snapshot)
    )
    supervision = Supervision(spark, config, interactions_df)
    past_df = supervision.for_split(TRAIN).examples_df.where(F.col("fold") == -1)
    assert past_df.count() > 100
    features = [c for c in supervision.users_at("past_1").columns if c not in ("market", "user_id")]
    at_start_df = _comparable(past_df.select("market", "user_id", *features)).distinct()
    assert at_start_df.exceptAll(_comparable(supervision.users_at("past_1"))).count() == 0
    keys = ["market", "user_id", "offer_id", "label", "propensity"]
    logged_df = labelled_log(
        supervision.log_df, supervision.moments["past_1"], supervision.moments[TUNE]
    )
    assert past_df.select(*keys).exceptAll(logged_df.select(*keys)).count() == 0
    tune_df = supervision.for_split(TUNE).examples_df
    assert tune_df.where(F.col("fold") == -1).count() == past_df.count()
    assert set(r["fold"] for r in tune_df.select("fold").distinct().collect()) == {-1, 0, 1}
    supervision.unpersist()

    wider = config.model_copy(
        update={"interactions": config.interactions.model_copy(update={"past_windows": 3})}
    )
    with pytest.raises(RecsysError, match="lacks split past_2, past_3: build-interactions"):
        Supervision(spark, wider, interactions_df).for_split(TRAIN)
