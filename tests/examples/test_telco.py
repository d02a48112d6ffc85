"""The Telco worked example: `recsys convert wide` with conf/examples/telco_wide.yaml follows
the mapping, and its dates put exactly one held add-on per customer in the holdout window, so
that the pipeline's own split, eligibility and evaluation make a leave-one-out evaluation."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from pyspark.sql import functions as F

from recsys.catalog import catalog_df
from recsys.config import load_config
from recsys.eligibility import ADDON_NEEDS_PLAN, state_at, with_eligibility
from recsys.ingest import job as ingest_job
from recsys.ingest import wide
from recsys.interactions import job as interactions_job
from recsys.interactions.build import cutoffs, interaction_rows
from recsys.markets import load_markets
from recsys.tokens import matches
from recsys.training import evaluate
from recsys.training import job as train_job
from recsys.vocabulary import HOLDOUT
from tests.conftest import database_conf

ROOT = Path(__file__).resolve().parents[2]
TELCO_CONF = ROOT / "conf" / "examples" / "telco.yaml"
TELCO_MARKETS = ROOT / "conf" / "examples" / "telco_markets.yaml"
TELCO_CSV = ROOT / "data" / "telco" / "Telco-Customer-Churn.csv"
SPEC = wide.load_spec(ROOT / "conf" / "examples" / "telco_wide.yaml")
ADDONS = set(SPEC.products.values())
PLANS = set(SPEC.plan.values.values())
NO_INTERNET = "No internet service"
SNAPSHOT, HOLDOUT_DAYS = dt.date(2026, 11, 1), 28  # conf/examples/telco.yaml
# Every token the spec can write.
TOKENS = {
    token
    for column in SPEC.profile.values()
    for token in [*(column.tokens or {}).values(), *(column.bins or {}).values()]
    if token is not None
}


def convert(table: pd.DataFrame) -> wide.Converted:
    return wide.convert(table, SPEC, snapshot=SNAPSHOT, holdout_days=HOLDOUT_DAYS)


def customer(customer_id: str, internet: str, addons: tuple[str, ...] = (), **profile) -> dict:
    """A row of the Telco CSV (as strings): ``addons`` are the CSV's add-on columns held."""
    row = {
        "customerID": customer_id,
        "tenure": "5",
        "InternetService": internet,
        "Contract": "Month-to-month",
        "PaymentMethod": "Electronic check",
        "PaperlessBilling": "Yes",
        "MultipleLines": "No",
        "SeniorCitizen": "0",
        "Partner": "No",
        "Dependents": "No",
    }
    for column in SPEC.products:
        row[column] = "Yes" if column in addons else "No"
        if internet == "No":
            row[column] = NO_INTERNET
    return {**row, **profile}


@pytest.fixture(scope="module")
def inline() -> pd.DataFrame:
    return pd.DataFrame(
        [
            customer("c-none", "No", SeniorCitizen="1", tenure="60"),
            customer("c-bare", "DSL"),
            customer("c-one", "DSL", ("TechSupport",)),
            customer("c-two", "Fiber optic", ("StreamingTV", "StreamingMovies")),
            customer(
                "c-all", "Fiber optic", tuple(SPEC.products), MultipleLines="No phone service"
            ),
        ]
    )


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    """The first 300 customers of the real CSV (data/telco/)."""
    return wide.read_table(TELCO_CSV, SPEC).head(300)


@pytest.fixture(scope="module")
def telco_config():
    return load_config(TELCO_CONF)


@pytest.fixture(scope="module")
def telco_catalog_df(spark):
    return catalog_df(spark, load_markets(TELCO_MARKETS)).persist()


def events_df(spark, converted: wide.Converted):
    frame = converted.events.drop(columns=["role"])
    return spark.createDataFrame(frame.astype({"value": float})).withColumn(
        "event_ts", F.to_timestamp("event_ts")
    )


def held(frame: pd.DataFrame) -> dict[str, set[str]]:
    """customerID -> offer ids of the add-ons held."""
    return {
        row["customerID"]: {offer for col, offer in SPEC.products.items() if row[col] == "Yes"}
        for _, row in frame.iterrows()
    }


def test_the_config_matches_the_converter(telco_config):
    settings = telco_config.interactions
    assert settings.snapshot_date == SNAPSHOT
    assert settings.holdout_days == HOLDOUT_DAYS
    # Every token the spec writes is known, by its prefix pattern, and no pattern is idle.
    assert all(matches(t, settings.behaviour_tokens) for t in TOKENS)
    assert all(any(matches(t, [p]) for t in TOKENS) for p in settings.behaviour_tokens)
    assert settings.weights[wide.PROFILE] > 0
    markets = telco_config.markets
    assert set(markets.markets) == {SPEC.market}
    assert set(markets.markets[SPEC.market].offers) == ADDONS | PLANS
    # Plans are never candidates: the only offers left are add-ons.
    assert set(telco_config.recommend.eligibility.exclude[SPEC.market]) == PLANS


def test_users_and_events_follow_the_mapping(inline):
    converted = convert(inline)
    users = converted.users.set_index("user_id")
    assert users.loc["c-none", "current_plan"] == "free"
    assert users.loc["c-two", "current_plan"] == "fiber_optic"
    assert users.loc["c-two", "active_addons"] == "streaming_movies;streaming_tv"
    assert users.loc["c-none", "active_addons"] == ""
    events = converted.events
    none = events[events["user_id"] == "c-none"]
    assert set(none["event_type"]) == {wide.PROFILE}  # no plan, no add-on events
    assert set(none["item_id"]) == {
        "contract:month_to_month",
        "payment:electronic_check",
        "billing:paperless",
        "phone:one_line",
        "household:senior",
        "tenure:48m+",
    }
    assert "phone:none" in set(events.loc[events["user_id"] == "c-all", "item_id"])
    assert set(events["item_id"]) - ADDONS - PLANS <= TOKENS


def test_exactly_one_hidden_addon_per_customer_lies_in_the_holdout_window(real):
    converted = convert(real)
    split, cutoff = cutoffs(SNAPSHOT, HOLDOUT_DAYS)
    tune_split = split - dt.timedelta(days=HOLDOUT_DAYS)
    events = converted.events.assign(ts=pd.to_datetime(converted.events["event_ts"], utc=True))
    in_holdout = events[(events["ts"] >= split) & (events["ts"] < cutoff)]
    in_validation = events[(events["ts"] >= tune_split) & (events["ts"] < split)]
    holdings = held(real)
    with_addons = {c for c, offers in holdings.items() if offers}
    assert in_holdout["user_id"].value_counts().to_dict() == dict.fromkeys(with_addons, 1)
    assert set(in_holdout["event_type"]) == {"conversion"}
    for row in in_holdout.itertuples():
        assert row.item_id in holdings[row.user_id]
    with_two = {c for c, offers in holdings.items() if len(offers) >= 2}
    assert in_validation["user_id"].value_counts().to_dict() == dict.fromkeys(with_two, 1)
    assert (events["ts"] < cutoff).all()
    # Every add-on held converts exactly once, at some time.
    addon_events = events[events["item_id"].isin(ADDONS)]
    assert len(addon_events) == sum(len(offers) for offers in holdings.values())
    # Which one is hidden depends on the seed alone: same seed, same files.
    again = convert(real.sample(frac=1, random_state=3))
    assert set(zip(in_holdout["user_id"], in_holdout["item_id"], strict=True)) == {
        (r.user_id, r.item_id) for r in again.events.itertuples() if r.role == HOLDOUT
    }


def test_customers_without_internet_are_offered_no_addon(spark, inline, telco_catalog_df):
    converted = convert(inline)
    split, _ = cutoffs(SNAPSHOT, HOLDOUT_DAYS)
    state_df = state_at(events_df(spark, converted), telco_catalog_df, split)
    verdicts = {
        r["offer_id"]: r["reason_code"]
        for r in with_eligibility(state_df, telco_catalog_df)
        .where(F.col("user_id") == "c-none")
        .collect()
    }
    assert {offer: verdicts[offer] for offer in ADDONS} == dict.fromkeys(ADDONS, ADDON_NEEDS_PLAN)


def test_leave_one_out_ranks_the_hidden_addon_among_those_not_held(
    spark, real, telco_config, telco_catalog_df
):
    """Through the pipeline's own functions: the holdout split's labels, the state at the
    split, and the evaluation window with the configured eligibility rules."""
    converted = convert(real)
    settings = telco_config.interactions
    split, _ = cutoffs(settings.snapshot_date, settings.holdout_days)
    source_df = events_df(spark, converted)
    labels_df = interaction_rows(source_df, settings, snapshot=settings.snapshot_date).where(
        F.col("split") == HOLDOUT
    )
    state_df = state_at(source_df, telco_catalog_df, split)
    win = evaluate.window(state_df, labels_df, telco_catalog_df, telco_config.recommend.eligibility)
    hidden = converted.events[converted.events["role"] == HOLDOUT]
    hidden = dict(zip(hidden["user_id"], hidden["item_id"], strict=True))
    labels = {r["user_id"]: r["item_id"] for r in win.labels_df.collect()}
    assert labels == hidden
    candidates: dict[str, set[str]] = {}
    for r in win.candidates_df.collect():
        candidates.setdefault(r["user_id"], set()).add(r["offer_id"])
    holdings = held(real)
    assert candidates == {c: ADDONS - holdings[c] | {hidden[c]} for c in hidden}


@pytest.mark.slow  # 1 to 5 minutes on 2 shared cores: six families, each fitted and scored
def test_convert_ingest_build_train_on_a_few_hundred_customers(
    spark, config, real, tmp_path_factory
):
    """The example's whole path on 300 customers, with the example's own config: every
    model and popularity get hit rate @1 and @3 and MRR on the leave-one-out holdout, in
    MLflow and in the report. Without impressions, the conversion model learns from every
    eligible add-on and the gate decides on NDCG."""
    folder = tmp_path_factory.mktemp("telco")
    users, events = folder / "data" / "users.csv", folder / "data" / "events.csv"
    wide.write(convert(real), users, events)
    path = database_conf(
        folder,
        config,
        "telco_tests",
        extends=TELCO_CONF,
        ingest={"users": str(users), "events": str(events)},
        train={"max_trials": 1},
    )
    small = load_config(path)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {small.catalog.database}")
    try:
        ingest_job.run(spark, small)
        interactions_job.run(spark, small)
        train_job.run(spark, small)
        runs = mlflow.search_runs(
            experiment_names=[small.mlflow.experiment],
            filter_string="tags.`recsys.family` != ''",
        )
    finally:
        mlflow.set_tracking_uri(config.mlflow.tracking_uri)

    families = {"popularity", "ladder", "spark_als", "implicit_als", "implicit_bpr", "conversion"}
    columns = ["metrics.hit_rate_at_1", "metrics.hit_rate_at_3", "metrics.mrr_at_6", "metrics.mrr"]
    family_runs = runs[runs["tags.recsys.trial"].isna()].set_index("tags.recsys.family")
    assert set(family_runs.index) == families
    figures = family_runs[columns]
    assert figures.notna().all().all()
    assert ((figures >= 0) & (figures <= 1)).all().all()
    # MRR lies between hit@1 and hit@6 (= 1: every candidate list is at most 6 long).
    assert (figures["metrics.mrr_at_6"] >= figures["metrics.hit_rate_at_1"]).all()
    # ... and is then the plain MRR, which ranks every candidate.
    assert (figures["metrics.mrr"] - figures["metrics.mrr_at_6"]).abs().max() < 1e-12
    report = (Path(small.train.report_dir) / "train-2026-11-01.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| model"))
    for column in ("hit_rate_at_1", "hit_rate_at_3", "mrr"):
        assert f" {column} (95% CI) " in header
    for family in families:
        assert f"| {family} " in report
    assert "The conversion model learned from every offer users were eligible for" in report
    assert "| ndcg_at_3 (95% CI)" in report
