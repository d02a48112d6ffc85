"""The model comparison's reshaping of MLflow metrics, its registry table and chart, and its
run lookups against a real (SQLite) tracking store."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
from mlflow import MlflowClient
from pandas.testing import assert_frame_equal

from recsys.config import GateConfig
from recsys.errors import RecsysError
from recsys.notebooks import model_comparison as mc

METRICS = {
    "implicit_bpr": {
        "ndcg_at_3": 0.72,
        "ndcg_at_3/SE": 0.70,
        "ndcg_at_3/BR": 0.74,
        "hit_rate_at_3": 0.85,
        "hit_rate_at_3/SE": 0.80,
        "val_ndcg_at_3": 0.71,
        "ndcg_at_3_ci_low": 0.70,
        "ndcg_at_3_ci_high": 0.74,
        "users": 200.0,
    },
    "popularity": {
        "ndcg_at_3": 0.69,
        "ndcg_at_3/SE": 0.60,
        "hit_rate_at_3": 0.77,
        "val_ndcg_at_3": 0.70,
        "users": 200.0,
    },
}


def test_metrics_by_market_keeps_the_named_holdout_metrics_with_all_for_pooled():
    long = mc.metrics_by_market(METRICS, ["ndcg_at_3"])
    expected = pd.DataFrame(
        [
            ("implicit_bpr", "BR", "ndcg_at_3", 0.74),
            ("implicit_bpr", "SE", "ndcg_at_3", 0.70),
            ("popularity", "SE", "ndcg_at_3", 0.60),
            ("implicit_bpr", "all", "ndcg_at_3", 0.72),
            ("popularity", "all", "ndcg_at_3", 0.69),
        ],
        columns=["family", "market", "metric", "value"],
    )
    assert_frame_equal(long, expected)


def test_by_market_table_puts_pooled_first_and_baselines_before_models():
    table = mc.by_market_table(mc.metrics_by_market(METRICS, ["ndcg_at_3"]), "ndcg_at_3")
    assert list(table.index) == ["all", "BR", "SE"]
    assert list(table.columns) == ["popularity", "implicit_bpr"]
    assert table.loc["SE", "popularity"] == 0.60
    assert pd.isna(table.loc["BR", "popularity"])  # a market the run did not log stays empty


def test_summary_table_has_the_gate_metric_with_its_interval_per_family():
    table = mc.summary_table(METRICS, GateConfig(metric="ndcg", k=3)).set_index("family")
    assert list(table.index) == ["popularity", "implicit_bpr"]
    row = table.loc["implicit_bpr"]
    assert (row["ndcg_at_3"], row["ci_low"], row["ci_high"]) == (0.72, 0.70, 0.74)
    assert row["validation ndcg_at_3"] == 0.71
    assert row["hit_rate_at_3"] == 0.85
    assert table.loc["popularity", "baseline"]
    assert pd.isna(table.loc["popularity", "ci_low"])


def test_summary_table_reads_a_policy_value_gate_beside_the_ranking_metrics():
    metrics = {
        "conversion": {
            "policy_value": 0.136,
            "policy_value_ci_low": 0.132,
            "policy_value_ci_high": 0.141,
            "ndcg_at_3": 0.75,
        }
    }
    row = mc.summary_table(metrics, GateConfig(metric="policy_value")).iloc[0]
    assert (row["policy_value"], row["ci_low"], row["ndcg_at_3"]) == (0.136, 0.132, 0.75)


def test_the_gate_of_a_run_is_the_one_it_decided_with():
    run = SimpleNamespace(
        data=SimpleNamespace(params={"gate": '{"metric": "policy_value", "k": 3}'})
    )
    assert mc.gate_of(run).column == "policy_value"


def _version(version: str, **tags: str):
    return SimpleNamespace(version=version, tags={f"recsys.{k}": v for k, v in tags.items()})


def test_registry_table_and_roles_name_the_family_run_behind_each_alias():
    registry = mc.registry_table(
        {
            "challenger": _version("3", family="spark_als", train_run_id="r-als", promoted="false"),
            "champion": _version("2", family="implicit_bpr", train_run_id="r-bpr", promoted="true"),
        },
        "ndcg_at_3",
    )
    assert list(registry["alias"]) == ["challenger", "champion"]
    assert list(registry["family"]) == ["spark_als", "implicit_bpr"]
    runs = {
        "implicit_bpr": SimpleNamespace(info=SimpleNamespace(run_id="r-bpr")),
        "popularity": SimpleNamespace(info=SimpleNamespace(run_id="r-pop")),
    }
    # The challenger came from another train run: no family of this one is labelled with it.
    assert mc.roles(registry, runs) == {"implicit_bpr": "champion v2"}


def test_plot_by_market_draws_a_panel_per_metric_and_a_bar_per_family_and_market():
    long = mc.metrics_by_market(METRICS, ["ndcg_at_3", "hit_rate_at_3"])
    figure = mc.plot_by_market(
        long, ["ndcg_at_3", "hit_rate_at_3"], {"implicit_bpr": "champion v2"}
    )
    top, bottom = figure.axes
    assert [t.get_text() for t in top.get_xticklabels()] == ["all", "BR", "SE"]
    assert [t.get_text() for t in bottom.get_xticklabels()] == ["all", "SE"]
    assert [len(bars) for bars in top.containers] == [3, 3]
    heights = [bar.get_height() for bar in top.containers[1]]
    assert heights == [0.72, 0.74, 0.70]
    labels = [t.get_text() for t in figure.legends[0].get_texts()]
    assert labels == ["popularity", "implicit_bpr (champion v2)"]


@pytest.fixture
def client(tmp_path):
    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def _train(client: MlflowClient, experiment: str, families: dict[str, float]) -> str:
    parent = client.create_run(experiment, tags={"recsys.step": "train"}, run_name="train")
    for family, ndcg in families.items():
        child = client.create_run(
            experiment,
            tags={"mlflow.parentRunId": parent.info.run_id, "recsys.family": family},
            run_name=family,
        )
        client.log_metric(child.info.run_id, "ndcg_at_3/SE", ndcg)
        trial = client.create_run(
            experiment,
            tags={"mlflow.parentRunId": child.info.run_id, "recsys.family": family},
            run_name=f"{family} trial 1",
        )
        client.set_terminated(trial.info.run_id)
        client.set_terminated(child.info.run_id)
    client.set_terminated(parent.info.run_id)
    return parent.info.run_id


def test_the_latest_finished_train_run_and_its_family_runs_are_found(client):
    experiment = client.create_experiment("recsys")
    _train(client, experiment, {"popularity": 0.5})
    newest = _train(client, experiment, {"implicit_bpr": 0.7, "popularity": 0.6})
    client.create_run(experiment, tags={"recsys.step": "train"})  # still running: not read
    run = mc.latest_train_run(client, "recsys")
    assert run.info.run_id == newest
    runs = mc.family_runs(client, run)
    assert list(runs) == ["popularity", "implicit_bpr"]
    assert mc.family_metrics(runs) == {
        "popularity": {"ndcg_at_3/SE": 0.6},
        "implicit_bpr": {"ndcg_at_3/SE": 0.7},
    }
    assert mc.describe(run)["run_id"] == newest


def test_no_train_run_and_no_registered_model_say_which_step_to_run(client):
    with pytest.raises(RecsysError, match=r"no finished train run .*'recsys': run train"):
        mc.latest_train_run(client, "recsys")
    with pytest.raises(RecsysError, match="no registered model 'm': run train"):
        mc.aliases(client, "m")
