"""`simulate` and `analyze` end to end on the small served world: the logs cover every served
user, the simulator's draws agree with its own expected values, the oracle is never beaten,
and the decision report's figures are the experiment_results rows."""

from __future__ import annotations

import math
import re
from pathlib import Path

import mlflow
import pytest
from chispa import assert_df_equality
from mlflow import MlflowClient
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys import tracking
from recsys.errors import RecsysError
from recsys.experiment import job as experiment_job
from recsys.experiment import report


@pytest.fixture(scope="module")
def analyzed(spark, experimented):
    _, config = experimented
    experiment = config.recommend.experiment.id
    mine = F.col("experiment_id") == experiment
    tables = {
        name: spark.table(config.table(name)).where(mine)
        for name in (
            S.EXPERIMENT_EXPOSURES,
            S.EXPERIMENT_OUTCOMES,
            S.EXPERIMENT_RESULTS,
            S.EXPERIMENT_POLICY_VALUES,
        )
    }
    return config, tables


def test_exposures_are_the_served_lists_and_outcomes_one_row_per_user(spark, analyzed):
    config, tables = analyzed
    served_df = spark.table(config.table(S.PLAN_RECOMMENDATIONS_CURRENT)).select(
        "user_id", "market", "arm", "rank", "offer_id", "propensity", "reason_code"
    )
    exposures_df = tables[S.EXPERIMENT_EXPOSURES].select(*served_df.columns)
    order = ["user_id", "rank"]
    assert_df_equality(exposures_df.orderBy(order), served_df.orderBy(order), ignore_nullable=True)
    outcomes_df = tables[S.EXPERIMENT_OUTCOMES]
    users = served_df.select("user_id").distinct().count()
    assert outcomes_df.count() == users
    assert outcomes_df.select("user_id").distinct().count() == users
    # Nobody is looked at without a list, and holdout users never convert on a surface.
    assert (
        tables[S.EXPERIMENT_EXPOSURES].where((F.col("rank") == 0) & F.col("is_examined")).count()
        == 0
    )
    holdout_df = outcomes_df.join(
        served_df.where(F.col("arm") == "holdout").select("user_id"), on="user_id", how="inner"
    )
    assert holdout_df.where(F.col("converted_rank").isNotNull()).count() == 0


def test_draws_agree_with_the_simulators_expected_values_and_the_oracle_is_never_beaten(
    analyzed,
):
    _, tables = analyzed
    outcomes_df = tables[S.EXPERIMENT_OUTCOMES]
    row = outcomes_df.agg(
        F.count(F.lit(1)).alias("n"),
        F.avg("converted").alias("converted"),
        F.avg("expected_conversion").alias("expected"),
        F.avg("revenue").alias("revenue"),
        F.avg("expected_revenue").alias("expected_revenue"),
        F.stddev("revenue").alias("revenue_sd"),
        F.sum(
            (F.col("oracle_conversion") < F.col("expected_conversion") - 1e-12).cast("int")
        ).alias("oracle_beaten"),
    ).first()
    se = math.sqrt(row["expected"] * (1 - row["expected"]) / row["n"])
    assert abs(row["converted"] - row["expected"]) < 4 * se
    assert abs(row["revenue"] - row["expected_revenue"]) < 4 * row["revenue_sd"] / math.sqrt(
        row["n"]
    )
    assert row["oracle_beaten"] == 0
    # Guardrail events only where they can happen.
    assert outcomes_df.where((F.col("trial_abuse") == 1) & (F.col("converted") == 0)).count() == 0


def test_a_rerun_draws_the_same_outcomes(spark, analyzed):
    config, tables = analyzed
    before_df = tables[S.EXPERIMENT_OUTCOMES].localCheckpoint()
    experiment_job.simulate_run(spark, config)
    after_df = spark.table(config.table(S.EXPERIMENT_OUTCOMES)).where(
        F.col("experiment_id") == config.recommend.experiment.id
    )
    assert_df_equality(after_df.orderBy("user_id"), before_df.orderBy("user_id"))


def test_results_cover_every_market_and_the_pool_with_one_decision_each(analyzed):
    config, tables = analyzed
    results = tables[S.EXPERIMENT_RESULTS].toPandas()
    markets = set(config.markets.markets) | {S.POOLED}
    assert set(results["market"]) == markets
    assert results.groupby("market")["decision"].nunique().eq(1).all()
    assert set(results["decision"]) <= set(report.DECISIONS)
    success = results[results["role"] == "success"]
    assert set(success["metric"]) == {config.analyze.success_metric}
    pooled = results[(results["market"] == S.POOLED) & (results["metric"] == "revenue")]
    assert set(pooled["unit"]) == {"reference_months"}


def test_the_report_states_the_table_figures_the_oracle_share_and_the_off_policy_estimate(
    analyzed,
):
    config, tables = analyzed
    results = tables[S.EXPERIMENT_RESULTS].toPandas()
    values = tables[S.EXPERIMENT_POLICY_VALUES].toPandas()
    folder = Path(config.analyze.report_dir)
    stem = f"experiment-{config.recommend.experiment.id}"
    text = (folder / f"{stem}.md").read_text(encoding="utf-8")
    pooled = results[results["market"] == S.POOLED]
    decision = pooled["decision"].iloc[0]
    assert f": {report.DECISIONS[decision]}" in text.splitlines()[0]
    assert pooled["decision_reason"].iloc[0] in text
    for comparison in ("treatment_vs_control", "treatment_vs_holdout"):
        for metric in ("conversion", "revenue"):
            for adjustment in ("raw", "cuped"):
                row = pooled[
                    (pooled["comparison"] == comparison)
                    & (pooled["metric"] == metric)
                    & (pooled["adjustment"] == adjustment)
                ].iloc[0]
                assert report.lift_text(row) in text, (comparison, metric, adjustment)
    share = values.set_index(["policy", "metric", "estimator"])["value"]
    captured = (
        share["treatment", "conversion", "truth"] - share["control", "conversion", "truth"]
    ) / (share["oracle", "conversion", "truth"] - share["control", "conversion", "truth"])
    assert f"captured {captured:.1%} of the oracle's conversion lift" in text
    for estimator in ("ips", "dr"):
        assert f"{report.pct(share['treatment_greedy', 'conversion', estimator])}" in text, (
            estimator
        )
    # What a product manager needs named: the success metric, the family under test, the
    # baseline, what the estimators are, each market's currency; no ratio over a near-zero base.
    assert f"Success metric: **{config.analyze.success_metric}**" in text
    assert re.search(r"\(the [a-z_]+ family\) in the treatment arm", text)
    assert f"against the {config.recommend.experiment.control} baseline's lists" in text
    assert "`ab_measured` is what the test measured" in text
    assert "Benjamini-Hochberg" in text
    for market, spec in config.markets.markets.items():
        row = next(line for line in text.splitlines() if re.match(rf"\|\s*{market}\s*\|", line))
        assert spec.currency in row, market
    holdout = pooled[
        (pooled["comparison"] == "treatment_vs_holdout")
        & (pooled["adjustment"] == "raw")
        & pooled["metric"].isin(["conversion", "revenue"])
    ]
    for r in holdout.itertuples():
        shown = report.rel_interval(r)
        assert shown == report.NEAR_ZERO or abs(r.rel_lift) <= 10
        assert shown in text
    for image in ("lift", "conversion"):
        assert (folder / f"{stem}-{image}.png").read_bytes()[:4] == b"\x89PNG"
        assert f"({stem}-{image}.png)" in text


def test_the_analyze_run_is_linked_to_the_model_version_under_test(analyzed):
    config, tables = analyzed
    tracking.setup(config)
    runs = mlflow.search_runs(filter_string="tags.`recsys.step` = 'analyze'", output_format="list")
    assert runs
    run = runs[0]
    version = tables[S.EXPERIMENT_RESULTS].select("model_version").first()["model_version"]
    assert run.data.tags["recsys.model_version"] == version
    assert run.data.tags["recsys.model_uri"].endswith(f"/{version}")
    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "report")}
    assert f"report/experiment-{config.recommend.experiment.id}.md" in artifacts
    assert "srm_p_value" in run.data.metrics


@pytest.fixture
def elsewhere(spark, analyzed):
    """A config on another database, whose tables are views over the served world's."""
    config, _ = analyzed
    other = config.model_copy(
        update={"catalog": config.catalog.model_copy(update={"database": "experiment_bad"})}
    )
    spark.sql("CREATE DATABASE IF NOT EXISTS experiment_bad")
    yield config, other
    spark.sql("DROP DATABASE experiment_bad CASCADE")


def test_simulate_refuses_lists_of_another_experiment(spark, analyzed):
    config, _ = analyzed
    renamed = config.model_copy(
        update={
            "recommend": config.recommend.model_copy(
                update={
                    "experiment": config.recommend.experiment.model_copy(update={"id": "other"})
                }
            )
        }
    )
    with pytest.raises(RecsysError, match=r"belong to experiment 'plan-offers-2026-11'.*'other'"):
        experiment_job.simulate_run(spark, renamed)


def test_simulate_refuses_served_users_the_world_does_not_know(spark, elsewhere):
    config, other = elsewhere
    lost = spark.table(config.table(S.PLAN_RECOMMENDATIONS_CURRENT)).first()["user_id"]
    spark.sql(
        f"CREATE VIEW {other.table(S.PLAN_RECOMMENDATIONS_CURRENT)} AS "
        f"SELECT * FROM {config.table(S.PLAN_RECOMMENDATIONS_CURRENT)}"
    )
    spark.sql(
        f"CREATE VIEW {other.table(S.WORLD_TRUTH)} AS SELECT * FROM "
        f"{config.table(S.WORLD_TRUTH)} WHERE user_id <> '{lost}'"
    )
    with pytest.raises(RecsysError, match=rf"1 served users \(e.g. {lost}\) are not in"):
        experiment_job.simulate_run(spark, other)


def test_analyze_refuses_logs_of_a_market_the_catalogue_does_not_define(spark, elsewhere):
    config, other = elsewhere
    moved = spark.table(config.table(S.EXPERIMENT_OUTCOMES)).first()["user_id"]
    for name, schema in (
        (S.EXPERIMENT_EXPOSURES, S.EXPERIMENT_EXPOSURES_SCHEMA),
        (S.EXPERIMENT_OUTCOMES, S.EXPERIMENT_OUTCOMES_SCHEMA),
    ):
        columns = ", ".join(
            f"CASE WHEN user_id = '{moved}' THEN 'ZZ' ELSE market END AS market"
            if c == "market"
            else c
            for c in schema.fieldNames()
        )
        spark.sql(f"CREATE VIEW {other.table(name)} AS SELECT {columns} FROM {config.table(name)}")
    with pytest.raises(RecsysError, match=r"name markets \['ZZ'\] that .* does not define"):
        experiment_job.analyze_run(spark, other)
