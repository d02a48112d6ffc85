"""`recommend` end to end on a small world: the published lists honour their contract, a
rerun gives the same rows, a publish killed before the view moves leaves the served snapshot
whole, and rollback serves a kept snapshot again.

The tests on the served world (tests/conftest.py: a world generated, trained and served) are
marked slow; the unit test of the unpriced-market message runs by default."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from chispa import assert_df_equality
from mlflow import MlflowClient
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys import tracking
from recsys.cli import main
from recsys.eligibility import with_eligibility
from recsys.errors import RecsysError
from recsys.recommend import job as recommend_job
from recsys.recommend import publish, scorers, versions
from recsys.recommend.lists import FALLBACK, MODEL
from recsys.recommend.offers import price_display
from recsys.recommend.served import Served
from recsys.supervision import Supervision
from recsys.vocabulary import TUNE

SNAPSHOT = dt.date(2026, 11, 1)


@pytest.fixture(scope="module")
def published(spark, served):
    path, config = served
    recommend_job.run(spark, config)
    current = publish.current(spark, config)
    # A copy, since later publishes may delete the folder the view reads now.
    rows_df = spark.table(config.table(S.PLAN_RECOMMENDATIONS_CURRENT)).localCheckpoint()
    yield path, config, current, rows_df


def _sorted(df):
    return df.drop("generated_at").orderBy("market", "user_id", "rank")


@pytest.mark.slow
def test_every_user_gets_a_list_or_an_explicit_no_offer_row(spark, published):
    _, config, current, rows_df = published
    assert current.snapshot == SNAPSHOT
    users_df = spark.table(config.table(S.USERS))
    assert rows_df.select("market", "user_id").distinct().count() == users_df.count()
    per_user = (
        rows_df.groupBy("user_id")
        .agg(
            F.count(F.lit(1)).alias("n"), F.min("rank").alias("first"), F.first("arm").alias("arm")
        )
        .groupBy("arm", "n", "first")
        .count()
        .collect()
    )
    shapes = {(r["arm"], r["n"], r["first"]) for r in per_user}
    assert ("holdout", 1, 0) in shapes
    assert ("treatment", config.recommend.k, 1) in shapes
    assert ("control", config.recommend.k, 1) in shapes
    assert all(n <= config.recommend.k for _, n, _ in shapes)
    holdout = rows_df.where(F.col("arm") == "holdout")
    assert holdout.where(F.col("offer_id").isNotNull() | (F.col("rank") != 0)).count() == 0
    assert set(holdout.select("reason_code").distinct().toPandas()["reason_code"]) == {"holdout"}


@pytest.mark.slow
def test_no_listed_offer_is_one_the_audit_excludes(spark, published):
    _, config, _, rows_df = published
    audit_df = spark.table(config.table(S.ELIGIBILITY_AUDIT)).where(
        F.col("snapshot_date") == SNAPSHOT
    )
    listed_df = rows_df.where(F.col("rank") > 0).select("market", "user_id", "offer_id")
    joined = listed_df.join(audit_df, on=["market", "user_id", "offer_id"], how="left")
    assert joined.where(~F.coalesce(F.col("eligible"), F.lit(False))).count() == 0
    reasons = {r[0] for r in audit_df.select("reason_code").distinct().collect()}
    assert {"current_plan", "downgrade", "trial_used"} <= reasons


@pytest.mark.slow
def test_rows_carry_the_model_the_experiment_and_calibrated_values(spark, published):
    _, config, _, rows_df = published
    listed = rows_df.where(F.col("rank") > 0)
    stamps = rows_df.select("model_name", "model_version", "experiment_id").distinct().collect()
    assert [tuple(r) for r in stamps] == [
        (config.train.registered_model, "1", config.recommend.experiment.id)
    ]
    assert rows_df.where(F.col("mlflow_run_id").isNull()).count() == 0
    bad = listed.where(
        (F.col("p_convert") <= 0)
        | (F.col("p_convert") >= 1)
        | (F.col("expected_value") < 0)
        | (F.col("propensity") <= 0)
        | (F.col("propensity") > 1)
    )
    assert bad.count() == 0
    exploring = F.col("reason_code") == "exploration"
    epsilon = config.recommend.experiment.epsilon
    assert 0 < epsilon < 0.5
    # The greedy list's rows were shown with probability (1 - eps) + eps / n, the exploration
    # slice's with that or eps / n.
    assert listed.where(~exploring & (F.col("propensity") < 1 - epsilon)).count() == 0
    assert listed.where(exploring).count() > 0
    treatment = listed.where((F.col("arm") == "treatment") & ~exploring)
    # Lists outside the exploration slice are ordered by the objective, best first.
    out_of_order = (
        treatment.alias("a")
        .join(treatment.alias("b"), on=["market", "user_id"])
        .where(
            (F.col("a.rank") < F.col("b.rank"))
            & (F.col("a.expected_value") < F.col("b.expected_value"))
        )
    )
    assert out_of_order.count() == 0
    reasons = {r[0] for r in treatment.select("reason_code").distinct().collect()}
    assert reasons - {"popular_in_market", "fallback_popular"}, reasons


@pytest.mark.slow
def test_names_and_prices_are_in_the_market_language_and_currency(spark, published):
    _, config, _, rows_df = published
    markets = config.markets
    for code in ("JP", "SE", "DE", "BR", "US"):
        market = markets.markets[code]
        rows = rows_df.where((F.col("market") == code) & (F.col("rank") > 0)).limit(20).collect()
        assert rows, code
        for row in rows:
            offer = markets.offer_types[row["offer_id"]]
            assert row["display_name"] == offer.names[market.language]
            assert row["locale"] == market.locale and row["currency"] == market.currency
            assert row["price_amount"] == market.offers[row["offer_id"]]
            assert row["price_display"] == price_display(
                market.offers[row["offer_id"]], market.currency, market.locale
            )
    jp = rows_df.where((F.col("market") == "JP") & (F.col("rank") > 0)).first()
    assert jp["price_display"].startswith("￥") and "." not in jp["price_display"]


@pytest.mark.slow
def test_the_sql_command_shows_readable_japanese_rows(capsys, published):
    path, config, _, _ = published
    query = (
        f"select * from {config.catalog.database}.plan_recommendations_current "
        "where market='JP' and rank > 0 limit 5"
    )
    assert main(["sql", query, "--conf", str(path), "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 5
    assert all(r["currency"] == "JPY" and r["price_display"].startswith("￥") for r in rows)
    assert any("プレミアム" in r["display_name"] for r in rows)


@pytest.mark.slow
def test_a_killed_publish_keeps_the_served_snapshot_then_a_rerun_publishes_the_same_rows(
    spark, published, monkeypatch
):
    _, config, before, rows_df = published
    view = config.table(S.PLAN_RECOMMENDATIONS_CURRENT)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed after staging, before the view moved")

    with monkeypatch.context() as patch:
        patch.setattr(publish, "move_view", killed)
        with pytest.raises(KeyboardInterrupt):
            recommend_job.run(spark, config)
    assert publish.current(spark, config) == before
    assert_df_equality(_sorted(spark.table(view)), _sorted(rows_df))

    recommend_job.run(spark, config)
    after = publish.current(spark, config)
    assert after.snapshot == SNAPSHOT and after.folder != before.folder
    # Same snapshot, same model, same users: the same rows (generated_at is the run's clock).
    assert_df_equality(_sorted(spark.table(view)), _sorted(rows_df))


@pytest.mark.slow
def test_rollback_serves_a_kept_snapshot_and_retention_drops_the_oldest(spark, published, capsys):
    path, config, _, _ = published
    served = publish.current(spark, config)
    rows_df = publish.read_folder(spark, served.folder)
    for day in (2, 3):
        later_df = rows_df.withColumn("snapshot_date", F.lit(dt.date(2026, 11, day)))
        publish.commit(
            spark, config, publish.stage(spark, config, later_df, dt.date(2026, 11, day))
        )
    assert publish.current(spark, config).snapshot == dt.date(2026, 11, 3)
    assert publish.snapshots(spark, config) == [
        SNAPSHOT,
        dt.date(2026, 11, 2),
        dt.date(2026, 11, 3),
    ]

    assert main(["rollback", "--to", "2026-11-01", "--conf", str(path)]) == 0
    assert publish.current(spark, config).snapshot == SNAPSHOT
    view_df = spark.table(config.table(S.PLAN_RECOMMENDATIONS_CURRENT))
    assert_df_equality(_sorted(view_df), _sorted(rows_df))
    # The table lists its partition columns last.
    history_df = (
        spark.table(config.table(S.PLAN_RECOMMENDATIONS))
        .where(F.col("snapshot_date") == SNAPSHOT)
        .select(*S.PLAN_RECOMMENDATION_COLUMNS)
    )
    assert_df_equality(_sorted(history_df), _sorted(rows_df), ignore_nullable=True)

    with pytest.raises(RecsysError, match="snapshot 2026-10-01 is not kept"):
        versions.rollback(spark, config, dt.date(2026, 10, 1))

    # By version: --list names each kept version and marks the served one; --to-version and
    # --previous serve them.
    capsys.readouterr()
    assert main(["rollback", "--list", "--conf", str(path)]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if "/v" in line]
    ids = [line.split()[0] for line in listed]
    # Oldest first; an earlier test's rerun of 2026-11-01 keeps the version it replaced.
    days = [line.split()[1] for line in listed]
    assert days == sorted(days) and days[-2:] == ["2026-11-02", "2026-11-03"]
    served = [line.split()[1] for line in listed if line.endswith("served")]
    assert served == ["2026-11-01"]
    assert main(["rollback", "--to-version", ids[-1], "--conf", str(path)]) == 0
    assert publish.current(spark, config).version == ids[-1]
    assert main(["rollback", "--previous", "--conf", str(path)]) == 0
    assert publish.current(spark, config).version == ids[-2]

    keep_two = config.model_copy(
        update={
            "recommend": config.recommend.model_copy(
                update={
                    "publish": config.recommend.publish.model_copy(update={"keep_snapshots": 2})
                }
            )
        }
    )
    day4 = rows_df.withColumn("snapshot_date", F.lit(dt.date(2026, 11, 4)))
    publish.commit(spark, keep_two, publish.stage(spark, keep_two, day4, dt.date(2026, 11, 4)))
    assert publish.snapshots(spark, keep_two) == [dt.date(2026, 11, 3), dt.date(2026, 11, 4)]


@pytest.mark.slow
def test_calibration_fits_each_scorer_on_a_hashed_sample_of_calibration_users(spark, served):
    _, config = served
    sampled = config.model_copy(
        update={"recommend": config.recommend.model_copy(update={"calibration_users": 1_000})}
    )
    tracking.setup(sampled)
    on_snapshot = F.col("snapshot_date") == F.lit(SNAPSHOT)
    catalog_df = spark.table(sampled.table(S.CATALOG))
    state_df = spark.table(sampled.table(S.USER_STATE)).where(
        on_snapshot & (F.col("split") == TUNE)
    )
    interactions_df = spark.table(sampled.table(S.INTERACTIONS)).where(on_snapshot)
    served = Served(spark, sampled, MlflowClient())
    coefficients = scorers.fit_calibration(
        spark,
        sampled,
        served=served,
        interactions_df=interactions_df,
        catalog_df=catalog_df,
        supervision=Supervision(spark, sampled, interactions_df),
    )

    users = state_df.count()
    assert users > 3 * 1_000  # so that the sample is a fraction of them
    eligible = (
        with_eligibility(state_df, catalog_df, sampled.recommend.eligibility)
        .where(F.col("eligible"))
        .count()
    )
    # About 1,000 users' eligible offers (a scorer may leave an offer it never saw unscored).
    expected = eligible * 1_000 / users
    # A conversion model's own probabilities are served as they are: it is not refitted.
    fitted = coefficients.dropna(subset=["rows"])
    rows = fitted.groupby("scorer")["rows"].sum()
    model = coefficients[coefficients["scorer"] == MODEL]
    if served.serves_probability:
        assert MODEL not in set(rows.index) and len(model) == len(sampled.markets.markets)
        assert (model["intercept"] == 0.0).all() and (model["slope"] == 1.0).all()
    else:
        assert MODEL in set(rows.index)
    assert FALLBACK in set(rows.index)
    assert all(0.75 * expected < n < 1.15 * expected for n in rows), (expected, rows)
    assert coefficients[["intercept", "slope"]].notna().all().all()
    assert (coefficients["slope"] >= 0).all()


@pytest.mark.parametrize(
    ("markets", "objective", "said"),
    [
        (
            ["GB", "IE"],
            "expected_value",
            "markets GB, IE have no prices: objective expected_value ranks by p_convert there",
        ),
        (["GB"], "propensity", "market GB has no prices: expected_value is p_convert there"),
    ],
)
def test_markets_without_prices_are_named_with_what_expected_value_becomes(
    monkeypatch, markets, objective, said
):
    logged = []
    monkeypatch.setattr(
        recommend_job.log, "info", lambda message, *args: logged.append(message % args)
    )
    recommend_job._log_unpriced([], objective)  # every market priced: nothing said
    recommend_job._log_unpriced(markets, objective)
    assert logged == [said]
