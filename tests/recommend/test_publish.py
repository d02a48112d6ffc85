"""Publishing versions of ``plan_recommendations``: a reader querying the views during
publishes never misses them and always sees one run whole, a commit killed at any step leaves
each view on one run, reruns keep the version they replace for rollback, and folders whose
names hold a quote or a backtick still publish."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.errors import RecsysError
from recsys.recommend import publish, versions
from recsys.tables import filesystem, sql_identifier, sql_string
from tests.conftest import reading_all_along

D1, D2, D3 = dt.date(2026, 3, 1), dt.date(2026, 3, 2), dt.date(2026, 3, 3)
MARKETS = ("DE", "JP", "SE")
USERS = 3  # per market; every user has a ranked row and the last one a no-offer row too


def _config(config, database, *, keep_snapshots=3, keep_versions=2):
    publish_conf = config.recommend.publish.model_copy(update={"keep_snapshots": keep_snapshots})
    return config.model_copy(
        update={
            "catalog": config.catalog.model_copy(
                update={"database": database, "keep_versions": keep_versions}
            ),
            "recommend": config.recommend.model_copy(update={"publish": publish_conf}),
        }
    )


@pytest.fixture
def fresh(spark, config):
    """A config whose tables go to a database of their own, dropped afterwards."""
    database = f"publish_{uuid.uuid4().hex[:8]}"
    spark.sql(f"CREATE DATABASE {database}")
    yield _config(config, database)
    spark.sql(f"DROP DATABASE {database} CASCADE")


def _rows_df(spark, snapshot, run):
    """One run's rows: ``mlflow_run_id`` (``run-<run>``) marks the run on every row."""
    stamp = (str(run), f"run-{run}", dt.datetime(2026, 3, 1, 0, 0, run), snapshot)
    offer = ("premium", "premium", "Premium", "de-DE", Decimal("9.9900"), "EUR", "9,99 €")
    rows = []
    for market in MARKETS:
        for i in range(USERS):
            user = (f"{market.lower()}{i}", market, 1)
            rows.append((*user, *offer, 0.8, 0.2, 2.0, "affinity", "exp1", "treatment", 0.5))
            rows[-1] = (*rows[-1], "conversion", *stamp)
        # A holdout user's no-offer row, nulls where the contract allows them.
        nothing = (None, None, None, "de-DE", None, "EUR", None, None, None, None)
        rows.append((f"{market.lower()}h", market, 0, *nothing, "holdout", "exp1", "holdout"))
        rows[-1] = (*rows[-1], 1.0, "none", "0", *stamp[1:])
    return spark.createDataFrame(rows, S.PLAN_RECOMMENDATIONS_SCHEMA)


ROWS = len(MARKETS) * (USERS + 1)


def _publish(spark, config, snapshot, run):
    return publish.commit(
        spark, config, publish.stage(spark, config, _rows_df(spark, snapshot, run), snapshot)
    )


def _runs(spark, config, view, snapshot=None):
    """{run marker: rows} of a view (of one snapshot of it)."""
    view_df = spark.table(config.table(view))
    if snapshot is not None:
        view_df = view_df.where(F.col("snapshot_date") == F.lit(snapshot))
    return {
        r["mlflow_run_id"]: r["n"]
        for r in view_df.groupBy("mlflow_run_id").agg(F.count(F.lit(1)).alias("n")).collect()
    }


def _read(spark, config, view, snapshot=None):
    """The run markers of every row a reader gets from a view (of one snapshot of it)."""
    view_df = spark.table(config.table(view))
    if snapshot is not None:
        view_df = view_df.where(F.col("snapshot_date") == F.lit(snapshot))
    return [r[0] for r in view_df.select("mlflow_run_id").collect()]


# Reruns of the served snapshot and a new snapshot: both views move at every publish.
QUICK = (D1, D2)
MANY = (D1, D1, D2, D1, D1, D2, D1, D1, D2, D1, D1, D1)


@pytest.mark.parametrize(
    ("snapshots", "least_reads"),
    [(QUICK, 10), pytest.param(MANY, 200, marks=pytest.mark.slow)],
    ids=["quick", "many"],
)
def test_a_reader_never_misses_the_views_and_sees_one_run_whole(
    spark, fresh, snapshots, least_reads
):
    _publish(spark, fresh, D1, 1)

    def read():
        return [
            _read(spark, fresh, S.PLAN_RECOMMENDATIONS_CURRENT),
            _read(spark, fresh, S.PLAN_RECOMMENDATIONS, D1),
        ]

    with reading_all_along(read, least_reads) as (seen, failures):
        for run, snapshot in enumerate(snapshots, start=2):
            _publish(spark, fresh, snapshot, run)
    assert failures == []
    assert len(seen) >= least_reads
    assert all(len(rows) == ROWS and len(set(rows)) == 1 for rows in seen), seen
    assert len({rows[0] for rows in seen}) > 2  # the reader did see the moves


STEPS = [
    ("_mark_published", False),
    ("move_history", False),
    ("move_history", True),
    ("move_view", False),
    ("move_view", True),
    ("_retain", False),
]


@pytest.mark.parametrize(("step", "after"), STEPS)
def test_a_commit_killed_at_any_step_leaves_each_view_on_one_run(
    spark, fresh, monkeypatch, step, after
):
    _publish(spark, fresh, D1, 1)
    _publish(spark, fresh, D2, 2)
    original = getattr(publish, step)

    def killed(*args, **kwargs):
        if after:
            original(*args, **kwargs)
        raise KeyboardInterrupt(f"killed {'after' if after else 'before'} {step}")

    with monkeypatch.context() as patch:
        patch.setattr(publish, step, killed)
        with pytest.raises(KeyboardInterrupt):
            _publish(spark, fresh, D2, 3)  # a rerun of the served snapshot
    served = _runs(spark, fresh, S.PLAN_RECOMMENDATIONS_CURRENT)
    assert served in ({"run-2": ROWS}, {"run-3": ROWS})
    assert _runs(spark, fresh, S.PLAN_RECOMMENDATIONS, D2) in ({"run-2": ROWS}, {"run-3": ROWS})
    assert _runs(spark, fresh, S.PLAN_RECOMMENDATIONS, D1) == {"run-1": ROWS}

    _publish(spark, fresh, D2, 4)
    assert _runs(spark, fresh, S.PLAN_RECOMMENDATIONS_CURRENT) == {"run-4": ROWS}
    assert _runs(spark, fresh, S.PLAN_RECOMMENDATIONS) == {"run-1": ROWS, "run-4": ROWS}


def test_a_rerun_keeps_the_version_it_replaced_and_either_can_be_served(spark, fresh):
    first = _publish(spark, fresh, D1, 1)
    second = _publish(spark, fresh, D1, 2)
    failed = publish.stage(spark, fresh, _rows_df(spark, D1, 9), D1)  # never validated

    kept = versions.kept_versions(spark, fresh)
    assert [(v.id, v.rows, v.models, v.is_served, v.in_history) for v in kept] == [
        (first.version, ROWS, ("conversion/1", "none/0"), False, False),
        (second.version, ROWS, ("conversion/2", "none/0"), True, True),
    ]
    assert first.version.startswith("2026-03-01/v") and kept[0].snapshot == D1
    assert kept[0].staged_at < kept[1].staged_at

    assert versions.serve_previous(spark, fresh) == first
    assert _runs(spark, fresh, S.PLAN_RECOMMENDATIONS_CURRENT) == {"run-1": ROWS}
    assert _runs(spark, fresh, S.PLAN_RECOMMENDATIONS) == {"run-1": ROWS}
    assert_df_equality(
        spark.table(fresh.table(S.PLAN_RECOMMENDATIONS_CURRENT)),
        _rows_df(spark, D1, 1),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    with pytest.raises(RecsysError, match="no kept version is older"):
        versions.serve_previous(spark, fresh)

    assert versions.serve_version(spark, fresh, second.version) == second
    assert _runs(spark, fresh, S.PLAN_RECOMMENDATIONS) == {"run-2": ROWS}
    unknown = r"version 2026-03-01/vnope of .* is not kept \(kept: 2026-03-01/v"
    with pytest.raises(RecsysError, match=unknown):
        versions.serve_version(spark, fresh, "2026-03-01/vnope")
    with pytest.raises(RecsysError, match="is not kept"):
        versions.serve_version(spark, fresh, publish.version_id(failed))

    # A third run: the oldest published folder and the failed one go, the replaced one stays.
    third = _publish(spark, fresh, D1, 3)
    assert [v.id for v in versions.kept_versions(spark, fresh)] == [second.version, third.version]
    fs, path = filesystem(spark, failed)
    assert not fs.exists(path)


def test_rollback_by_date_and_retention_of_snapshots(spark, fresh):
    keep_two = _config(fresh, fresh.catalog.database, keep_snapshots=2)
    for run, snapshot in enumerate((D1, D2), start=1):
        _publish(spark, keep_two, snapshot, run)
    later = publish.stage(spark, keep_two, _rows_df(spark, D3, 9), D3)  # failed validation
    assert versions.rollback(spark, keep_two, D1).snapshot == D1
    assert _runs(spark, keep_two, S.PLAN_RECOMMENDATIONS_CURRENT) == {"run-1": ROWS}
    with pytest.raises(RecsysError, match="snapshot 2026-02-01 is not kept"):
        versions.rollback(spark, keep_two, dt.date(2026, 2, 1))

    _publish(spark, keep_two, D3, 3)
    assert publish.snapshots(spark, keep_two) == [D2, D3]
    assert {v.snapshot for v in versions.kept_versions(spark, keep_two)} == {D2, D3}
    fs, path = filesystem(spark, later)
    assert not fs.exists(path)  # its snapshot was published since


def test_the_partitioned_history_of_older_releases_becomes_a_view_and_keeps_its_data(spark, fresh):
    # The history as older releases left it: a partitioned table whose partitions point
    # into the versions folder.
    table = fresh.table(S.PLAN_RECOMMENDATIONS)
    (
        spark.createDataFrame([], S.PLAN_RECOMMENDATIONS_SCHEMA)
        .write.format("parquet")
        .partitionBy("snapshot_date", "market")
        .saveAsTable(table)
    )
    old = publish.stage(spark, fresh, _rows_df(spark, D1, 1), D1)
    for market in MARKETS:
        spark.sql(
            f"ALTER TABLE {table} ADD PARTITION (snapshot_date='{D1}', market='{market}') "
            f"LOCATION {sql_string(f'{old}/market={market}')}"
        )
    publish.move_view(spark, fresh, old)

    _publish(spark, fresh, D2, 2)
    assert spark.catalog.getTable(table).tableType == "VIEW"
    assert publish.snapshots(spark, fresh) == [D1, D2]
    assert _runs(spark, fresh, S.PLAN_RECOMMENDATIONS, D1) == {"run-1": ROWS}
    assert versions.serve_previous(spark, fresh).folder == old


def test_folders_with_a_quote_and_a_backtick_publish(spark, fresh, tmp_path):
    odd = tmp_path / "it's a `folder`"
    odd.mkdir()
    database = f"odd_{uuid.uuid4().hex[:8]}"
    spark.sql(f"CREATE DATABASE {database} LOCATION {sql_string(odd / 'db')}")
    try:
        odd_conf = _config(fresh, database)
        first = _publish(spark, odd_conf, D1, 1)
        _publish(spark, odd_conf, D1, 2)
        assert "it's a `folder`" in first.folder
        assert publish.current(spark, odd_conf).snapshot == D1
        assert _runs(spark, odd_conf, S.PLAN_RECOMMENDATIONS_CURRENT) == {"run-2": ROWS}
        assert versions.serve_version(spark, odd_conf, first.version) == first
        assert _runs(spark, odd_conf, S.PLAN_RECOMMENDATIONS) == {"run-1": ROWS}
        assert Path(first.folder.removeprefix("file:")).is_relative_to(odd)
    finally:
        spark.sql(f"DROP DATABASE {sql_identifier(database)} CASCADE")
