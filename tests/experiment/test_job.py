"""`analyze` end to end on the small served world's simulated test: results cover every
market with one decision, the decision report's figures are the experiment_results rows, and
the analyze run is linked to the model version under test."""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys import tracking
from recsys.errors import RecsysError
from recsys.experiment import job as experiment_job
from recsys.experiment import report_tables

# It reads the served world after recommend, simulate and analyze (tests/conftest.py).
pytestmark = pytest.mark.slow


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


def test_results_cover_every_market_and_the_pool_with_one_decision_each(analyzed):
    config, tables = analyzed
    results = tables[S.EXPERIMENT_RESULTS].toPandas()
    markets = set(config.markets.markets) | {S.POOLED}
    assert set(results["market"]) == markets
    assert results.groupby("market")["decision"].nunique().eq(1).all()
    assert set(results["decision"]) <= set(report_tables.DECISIONS)
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
    assert f": {report_tables.DECISIONS[decision]}" in text.splitlines()[0]
    assert pooled["decision_reason"].iloc[0] in text
    for comparison in ("treatment_vs_control", "treatment_vs_holdout"):
        for metric in ("conversion", "revenue"):
            for adjustment in ("raw", "cuped"):
                row = pooled[
                    (pooled["comparison"] == comparison)
                    & (pooled["metric"] == metric)
                    & (pooled["adjustment"] == adjustment)
                ].iloc[0]
                assert report_tables.lift_text(row) in text, (comparison, metric, adjustment)
    share = values.set_index(["policy", "metric", "estimator"])["value"]
    captured = (
        share["treatment", "conversion", "truth"] - share["control", "conversion", "truth"]
    ) / (share["oracle", "conversion", "truth"] - share["control", "conversion", "truth"])
    assert f"captured {captured:.1%} of the oracle's conversion lift" in text
    for estimator in ("ips", "dr"):
        assert f"{report_tables.pct(share['treatment_greedy', 'conversion', estimator])}" in text, (
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
        shown = report_tables.rel_interval(r)
        assert shown == report_tables.NEAR_ZERO or abs(r.rel_lift) <= 10
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
