"""docs/walkthrough.md as written: its files, from the wide CSV to published lists."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import mlflow
import pytest
from pyspark.sql import functions as F

from recsys.config import load_config
from recsys.ingest import job as ingest_job
from recsys.ingest import wide
from recsys.interactions import job as interactions_job
from recsys.recommend import job as recommend_job
from recsys.training import job as train_job
from tests.conftest import database_conf

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "conf" / "examples"
CSV = ROOT / "data" / "walkthrough" / "customers.csv"


def test_the_markets_file_is_at_most_ten_lines_and_the_csv_is_what_generate_writes():
    assert len((EXAMPLES / "walkthrough_markets.yaml").read_text().splitlines()) <= 10
    spec = importlib.util.spec_from_file_location("generate", CSV.with_name("generate.py"))
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    written = generate.customers().to_csv(index=False, lineterminator="\n")
    assert CSV.read_text(encoding="utf-8") == written


@pytest.mark.slow  # about 3 minutes on 2 cores: five families on 5,000 customers, recommend
def test_the_walkthrough_runs_from_the_csv_to_published_lists(spark, config, tmp_path_factory):
    folder = tmp_path_factory.mktemp("walkthrough")
    users, events = folder / "data" / "users.csv", folder / "data" / "events.csv"
    path = database_conf(
        folder,
        config,
        "walkthrough_tests",
        extends=EXAMPLES / "walkthrough.yaml",
        ingest={"users": str(users), "events": str(events)},
    )
    small = load_config(path)
    spec = wide.load_spec(EXAMPLES / "walkthrough_wide.yaml")
    converted = wide.convert(
        wide.read_table(CSV, spec),
        spec,
        snapshot=small.interactions.snapshot_date,
        holdout_days=small.interactions.holdout_days,
    )
    wide.write(converted, users, events)
    # The counts the walkthrough quotes.
    assert (len(converted.users), len(converted.events)) == (5_000, 17_445)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {small.catalog.database}")
    try:
        ingest_job.run(spark, small)
        interactions_job.run(spark, small)
        train_job.run(spark, small)
        recommend_job.run(spark, small)
    finally:
        mlflow.set_tracking_uri(config.mlflow.tracking_uri)

    report = (Path(small.train.report_dir) / "train-2026-11-01.md").read_text()
    assert "Candidate: **" in report and "(95% CI)" in report
    rows = spark.table(small.table("plan_recommendations_current"))
    offers = rows.where(F.col("rank") > 0)
    assert {r["market"] for r in rows.select("market").distinct().collect()} == {"GB", "IE"}
    assert rows.select("user_id").distinct().count() == 5_000
    # No prices in the markets file: none published, and expected_value is p_convert.
    assert offers.where(F.col("price_display").isNotNull()).count() == 0
    assert offers.where(F.col("expected_value") != F.col("p_convert")).count() == 0
    # Age and area are never a reason shown to a customer.
    reasons = {r[0] for r in offers.select("reason_code").distinct().collect()}
    assert not reasons & set(converted.tokens())
    assert {r[0] for r in offers.select("display_name").distinct().collect()} == {
        "Travel insurance",
        "Car insurance",
        "Home insurance",
    }
