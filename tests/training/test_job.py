"""`train` end to end on a small generated world, tracked in a real MLflow store (SQLite):
the run tree, per-market metrics, the registered version and its alias, and the report.
A second run whose candidate is only a baseline is judged against the champion refitted on
the same data, and is not promoted unless it beats it.

The tests on the trained world are marked slow: its fixture generates a world and trains
every family, and the resume tests train again. The unit tests of the resume fingerprint,
the killed runs and the gate metric need no world and run by default."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import mlflow
import pytest
from chispa import assert_df_equality
from mlflow import MlflowClient
from pyspark.sql import functions as F

from recsys import tracking
from recsys.errors import RecsysError
from recsys.interactions import job as interactions_job
from recsys.interactions.build import cutoffs
from recsys.models import BASELINES, FAMILIES
from recsys.training import checkpoints
from recsys.training import job as train_job
from recsys.training import register as train_register
from recsys.training.trainer import Trainer, with_gate_metric
from recsys.vocabulary import TRAIN, TUNE, VALIDATION
from recsys.world import job as world_job


@pytest.fixture(scope="module")
def trained(spark, config, tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    small = config.model_copy(
        update={
            "world": config.world.model_copy(update={"users": 4_000}),
            "mlflow": config.mlflow.model_copy(
                update={"tracking_uri": f"sqlite:///{folder / 'mlflow.db'}"}
            ),
            "train": config.train.model_copy(
                update={
                    "max_trials": 1,
                    "search_users": 2_000,  # of ~4,000: the sampled search path
                    "model_dir": str(folder / "models"),
                    "report_dir": str(folder / "reports"),
                }
            ),
        }
    )
    world_job.run(spark, small)
    interactions_job.run(spark, small)
    train_job.run(spark, small)
    tracking.setup(small)
    yield small, MlflowClient()
    mlflow.set_tracking_uri(config.mlflow.tracking_uri)


def _runs(client, config):
    experiment = client.get_experiment_by_name(config.mlflow.experiment)
    return client.search_runs([experiment.experiment_id], max_results=500)


@pytest.mark.slow
def test_one_parent_run_with_a_nested_run_per_family_and_per_trial(trained):
    config, client = trained
    runs = _runs(client, config)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [r.info.run_name for r in parents] == ["train 2026-11-01"]
    parent_id = parents[0].info.run_id
    families = {
        r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id
    }
    assert set(families) == set(FAMILIES)
    for family in ("spark_als", "implicit_als", "implicit_bpr"):
        trials = [
            r for r in runs if r.data.tags.get("mlflow.parentRunId") == families[family].info.run_id
        ]
        assert [r.info.run_name for r in trials] == [f"{family} trial 1"]
        assert all("val_ndcg_at_3/SE" in r.data.metrics for r in trials)
    assert len(parents[0].data.tags["mlflow.source.git.commit"]) in (40, len("unknown"))
    assert 0.3 < float(parents[0].data.params["search_share"]) < 0.7


@pytest.mark.slow
def test_every_family_logs_pooled_and_per_market_metrics_and_a_model(trained):
    """Ranking metrics, and the policy value the gate decides on with its interval."""
    config, client = trained
    markets = sorted(config.markets.markets)
    for run in _runs(client, config):
        if run.info.run_name not in FAMILIES:
            continue
        metrics = run.data.metrics
        for name in ("ndcg_at_3", "hit_rate_at_1", "precision_at_5", "coverage_at_3"):
            assert 0.0 <= metrics[name] <= 1.0, (run.info.run_name, name)
        low, high = metrics["policy_value_ci_low"], metrics["policy_value_ci_high"]
        assert 0.0 < low <= metrics["policy_value"] <= high
        assert {"policy_value_ips", "policy_value_snips"} <= set(metrics)
        # Re-weighted to every user's plan, the rate falls: the log over-represents free users.
        assert 0.0 < metrics["policy_value_served"] < metrics["policy_value"]
        assert 0.9 < metrics["policy_served_coverage"] <= 1.0
        assert {f"ndcg_at_3/{m}" for m in markets} <= set(metrics)
        assert "revenue_at_3/SE" in metrics and "revenue_at_3" not in metrics
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert "metrics_by_market.json" in artifacts


@pytest.mark.slow
def test_the_candidate_is_registered_with_the_alias_that_matches_the_decision(trained):
    """Promoted, it is champion; if not, challenger, and (no champion existing) the best on
    the holdout among it and the baselines is interim: itself, or a baseline registered too."""
    config, client = trained
    name = config.train.registered_model
    versions = {str(v.version): v for v in client.search_model_versions(f"name='{name}'")}
    version = versions["1"]
    assert version.tags["recsys.family"] in FAMILIES
    assert json.loads(version.tags["recsys.params"]) is not None
    aliases = {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}
    if version.tags["recsys.promoted"] == "true":
        assert aliases == {"champion": "1"} and list(versions) == ["1"]
    else:
        assert aliases == {"challenger": "1", "interim": aliases["interim"]}
        interim = versions[aliases["interim"]]
        assert sorted(versions) == sorted({"1", aliases["interim"]})
        assert aliases["interim"] == "1" or interim.tags["recsys.family"] in BASELINES
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
    assert model.metadata.signature.inputs.input_names() == [
        "market",
        "user_id",
        "offer_id",
        "current_plan",
    ]


@pytest.mark.slow
def test_the_report_names_the_candidate_the_gate_and_the_markets(trained):
    config, _ = trained
    report = (Path(config.train.report_dir) / "train-2026-11-01.md").read_text()
    assert "## Models on the holdout (all markets pooled)" in report
    header = next(line for line in report.splitlines() if line.startswith("| model "))
    # Every per-user figure has its interval: the policy values and the ranking metrics,
    # the plain MRR among them.
    for column in ("policy_value", "policy_value_ips", "ndcg_at_3", "hit_rate_at_1", "mrr"):
        assert f" {column} (95% CI) " in header
    assert "Candidate: **" in report and "on validation" in report
    assert "## Gate" in report
    for family in FAMILIES:
        assert f"| {family}" in report
    assert "trials were fitted and scored on a hashed sample of about" in report
    # The gate's metric is the lists' off-policy value: the world logs impressions.
    assert "`policy_value` is the off-policy value of each model's top-3 lists" in report
    assert "## conversion: predicted against observed on the holdout" in report
    assert (Path(config.train.report_dir) / "train-2026-11-01-policy_value.png").stat().st_size > 0


@pytest.mark.slow
def test_a_baseline_candidate_is_judged_against_the_champion(spark, trained):
    config, client = trained
    name = config.train.registered_model
    before = client.get_registered_model(name).aliases
    models = config.train.models
    only_baselines = config.model_copy(
        update={
            "train": config.train.model_copy(
                update={
                    "models": models.model_copy(
                        update={
                            f: getattr(models, f).model_copy(update={"enabled": False})
                            for f in ("spark_als", "implicit_als", "implicit_bpr", "conversion")
                        }
                    )
                }
            )
        }
    )
    train_job.run(spark, only_baselines)
    parent = max(
        (r for r in _runs(client, config) if r.data.tags.get("recsys.step") == "train"),
        key=lambda r: r.info.start_time,
    )
    number = parent.data.tags["recsys.registered_version"]
    version = client.get_model_version(name, number)
    assert version.tags["recsys.family"] in ("popularity", "ladder")
    gate_text = version.tags["recsys.gate"]
    other = "ladder" if version.tags["recsys.family"] == "popularity" else "popularity"
    assert other in gate_text
    aliases = {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}
    if "champion" in before:
        assert f"champion v{before['champion']}" in gate_text
    if version.tags["recsys.promoted"] == "true":
        assert aliases["champion"] == number
    else:
        assert aliases["challenger"] == number
        assert aliases.get("champion") == (
            str(before["champion"]) if "champion" in before else None
        )


def _aliases(client, name):
    return {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}


@pytest.mark.slow
def test_before_any_champion_the_best_on_the_holdout_is_named_interim(spark, trained):
    config, client = trained
    name = "recsys-interim-test"
    models = config.train.models
    ladder_only = config.model_copy(
        update={
            "train": config.train.model_copy(
                update={
                    "registered_model": name,
                    "models": models.model_copy(
                        update={
                            f: getattr(models, f).model_copy(update={"enabled": False})
                            for f in (
                                "popularity",
                                "spark_als",
                                "implicit_als",
                                "implicit_bpr",
                                "conversion",
                            )
                        }
                    ),
                }
            )
        }
    )
    train_job.run(spark, ladder_only)
    # Nothing to compare the ladder with, so the gate promotes nothing; it is still served.
    assert _aliases(client, name) == {"challenger": "1", "interim": "1"}
    gate_text = client.get_model_version(name, "1").tags["recsys.gate"]
    assert gate_text.startswith("nothing to compare against")
    served, alias = tracking.version_by_alias(client, name, "champion")
    assert (str(served.version), alias) == ("1", "interim")
    report = (Path(config.train.report_dir) / "train-2026-11-01.md").read_text()
    assert "no champion yet: ladder is served as interim" in report

    # A promoted version ends the interim.
    tracking.set_aliases(client, name, "1", promote=True)
    assert _aliases(client, name) == {"champion": "1"}
    assert tracking.version_by_alias(client, name, "champion")[1] == "champion"
    with pytest.raises(RecsysError, match="has alias 'challenger'"):
        tracking.version_by_alias(client, name, "challenger")


def _users(df):
    return {r["user_id"] for r in df.select("user_id").distinct().collect()}


@pytest.mark.slow
def test_trials_fit_and_score_a_hashed_sample_of_users_at_scale(spark, trained):
    config, _ = trained
    trainer = Trainer(spark, config)
    validation = trainer.window(TUNE, VALIDATION)
    tune_users, window_users = _users(trainer.rows(TUNE)), _users(validation.candidates_df)

    search = trainer.search()  # 4,000 users and search_users=2,000 in the fixture
    assert search.users == len(tune_users) and 0.3 < search.share < 0.7
    sampled = _users(search.rows_df)
    assert abs(len(sampled) - 2_000) < 200  # binomial sd ~30 users
    assert sampled < tune_users
    # The window keeps the sampled users (a user with no tune rows can be drawn too), with
    # all of their candidates and labels.
    kept = _users(search.window.candidates_df)
    assert window_users & sampled <= kept < window_users
    assert _users(search.window.labels_df) == kept
    for part in ("candidates_df", "labels_df"):
        theirs = getattr(validation, part).where(F.col("user_id").isin(*kept))
        assert getattr(search.window, part).count() == theirs.count()
    again = trainer.search()
    assert _users(again.rows_df) == sampled  # the same users on a rerun
    again.unpersist()
    search.unpersist()
    trainer.interactions_df.unpersist()

    unsampled = config.model_copy(
        update={"train": config.train.model_copy(update={"search_users": None})}
    )
    trainer = Trainer(spark, unsampled)
    everyone = trainer.search()
    assert everyone.share == 1.0 and _users(everyone.rows_df) == tune_users
    assert _users(everyone.window.candidates_df) == window_users
    assert "all" in everyone.describe() and "sample" in search.describe()
    everyone.unpersist()
    validation.unpersist()
    trainer.interactions_df.unpersist()


@pytest.mark.slow
def test_a_snapshot_without_interactions_fails_with_the_step_to_run(spark, trained):
    config, _ = trained
    elsewhere = config.model_copy(
        update={
            "interactions": config.interactions.model_copy(
                update={"snapshot_date": dt.date(2020, 1, 1)}
            )
        }
    )
    with pytest.raises(RecsysError, match=r"snapshot 2020-01-01 have no rows in \['tune'"):
        train_job.run(spark, elsewhere)


def _family_runs(client, parent_id):
    experiment = client.get_run(parent_id).info.experiment_id
    children = client.search_runs(
        [experiment], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )
    return [(r.data.tags["recsys.family"], r.info.status, r) for r in children]


def _resumable(config, without):
    """``config`` with ``train.resume`` on and the families ``without`` disabled."""
    models = config.train.models
    off = {f: getattr(models, f).model_copy(update={"enabled": False}) for f in without}
    train = {"resume": True, "models": models.model_copy(update=off)}
    return config.model_copy(update={"train": config.train.model_copy(update=train)})


@pytest.mark.slow
def test_an_interrupted_train_goes_on_without_refitting_the_families_it_finished(
    spark, trained, monkeypatch
):
    config, client = trained
    resumable = _resumable(config, without=("spark_als", "implicit_als", "conversion"))
    fitted, lost = [], {"implicit_bpr"}
    fit_and_score = Trainer.fit_and_score

    def executor_lost_in(self, family, *args, **kwargs):
        fitted.append(family)
        if family in lost:
            raise RuntimeError(f"executor lost while fitting {family}")
        return fit_and_score(self, family, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit_and_score", executor_lost_in)
    with pytest.raises(RuntimeError, match="executor lost while fitting implicit_bpr"):
        train_job.run(spark, resumable)
    assert fitted == ["popularity", "popularity", "ladder", "ladder", "implicit_bpr"]
    experiment = client.get_experiment_by_name(config.mlflow.experiment).experiment_id
    failed_runs = "attributes.status = 'FAILED' and tags.`recsys.step` = 'train'"
    (failed,) = client.search_runs([experiment], failed_runs, max_results=5)
    before = {
        f: r for f, status, r in _family_runs(client, failed.info.run_id) if f != "implicit_bpr"
    }
    assert set(before) == {"popularity", "ladder"}

    fitted.clear()
    lost.clear()
    train_job.run(spark, resumable)
    # Only the family that was lost is fitted again (a champion of another family may be
    # refitted for the gate, as in any run), in the same MLflow run.
    assert fitted.count("implicit_bpr") == 2
    assert "popularity" not in fitted and "ladder" not in fitted
    parent = client.get_run(failed.info.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["recsys.registered_version"]
    families = _family_runs(client, parent.info.run_id)
    assert sorted((f, status) for f, status, _ in families) == [
        ("implicit_bpr", "FAILED"),
        ("implicit_bpr", "FINISHED"),
        ("ladder", "FINISHED"),
        ("popularity", "FINISHED"),
    ]
    # The report's holdout figures of a carried-over family are those its run logged.
    report = (Path(config.train.report_dir) / "train-2026-11-01.md").read_text()
    for family in ("popularity", "ladder"):
        logged = before[family].data.metrics
        figures = rf"{logged['policy_value']:.4f} \[{logged['policy_value_ci_low']:.4f}, "
        assert re.search(rf"\| {family} +\| {figures}", report), family

    # A finished run is not resumed: with nothing unfinished under its fingerprint, the next
    # train starts its own, as the first one above did.
    fingerprint = parent.data.tags[checkpoints.FINGERPRINT_TAG]
    assert checkpoints.interrupted_run(client, resumable, fingerprint) is None


@pytest.mark.slow
def test_a_candidate_interrupted_in_register_is_not_fitted_again(spark, trained, monkeypatch):
    config, client = trained
    baselines_only = _resumable(
        config, without=("spark_als", "implicit_als", "implicit_bpr", "conversion")
    )
    log_pyfunc, fit_and_score, fitted = train_register.log_pyfunc, Trainer.fit_and_score, []

    def lost_while_logging_the_serving_model(name, saved):
        if name == "serving_model":
            raise RuntimeError("executor lost in register")
        return log_pyfunc(name, saved)

    def counted(self, family, *args, **kwargs):
        fitted.append(family)
        return fit_and_score(self, family, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit_and_score", counted)
    monkeypatch.setattr(train_register, "log_pyfunc", lost_while_logging_the_serving_model)
    with pytest.raises(RuntimeError, match="executor lost in register"):
        train_job.run(spark, baselines_only)
    experiment = client.get_experiment_by_name(config.mlflow.experiment).experiment_id
    (parent,) = client.search_runs(
        [experiment], "attributes.status = 'FAILED' and tags.`recsys.step` = 'train'"
    )
    (candidate,) = [
        r for _, _, r in _family_runs(client, parent.info.run_id) if r.info.status == "FAILED"
    ]
    client.update_run(candidate.info.run_id, status="RUNNING")  # as a killed process leaves it

    monkeypatch.setattr(train_register, "log_pyfunc", log_pyfunc)
    fitted.clear()
    train_job.run(spark, baselines_only)
    assert "popularity" not in fitted and "ladder" not in fitted
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
    families = _family_runs(client, parent.info.run_id)
    assert sorted((f, status) for f, status, _ in families) == [
        ("ladder", "FINISHED"),
        ("popularity", "FINISHED"),
    ]
    version = client.get_run(parent.info.run_id).data.tags["recsys.registered_version"]
    registered = client.get_model_version(config.train.registered_model, version)
    assert registered.tags["recsys.train_run_id"] == candidate.info.run_id


@pytest.mark.slow
def test_a_checkpoint_that_is_gone_stops_the_resume_with_the_way_out(spark, trained, tmp_path):
    config, client = trained
    run = next(r for r in _runs(client, config) if checkpoints.CHECKPOINT_TAG in r.data.tags)
    family, gone = run.data.tags["recsys.family"], tmp_path / "holdout_per_user"
    with pytest.raises(
        RecsysError, match=rf"cannot carry {family} over .* {re.escape(str(gone))} cannot be read"
    ):
        checkpoints._restore(Trainer(spark, config), family, run.info.run_id, str(gone))


def test_a_run_is_resumed_only_with_the_same_settings_and_rows(config):
    snapshot, rows = dt.date(2026, 11, 1), {"train": 10, "holdout": 3}
    base = checkpoints.run_fingerprint(config, snapshot, rows)
    elsewhere = config.model_copy(
        update={"train": config.train.model_copy(update={"resume": True, "report_dir": "/x"})}
    )
    assert checkpoints.run_fingerprint(elsewhere, snapshot, rows) == base
    reseeded = config.model_copy(update={"train": config.train.model_copy(update={"seed": 8})})
    assert checkpoints.run_fingerprint(reseeded, snapshot, rows) != base
    assert checkpoints.run_fingerprint(config, snapshot, {**rows, "holdout": 4}) != base
    assert checkpoints.run_fingerprint(config, dt.date(2026, 11, 2), rows) != base


def test_runs_an_interruption_left_running_are_marked_killed_with_their_trials(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("killed", artifact_location=str(tmp_path / "art"))

    def run(parent=None, finished=False):
        tags = {"mlflow.parentRunId": parent.info.run_id} if parent else {}
        created = client.create_run(experiment, tags=tags)
        if finished:
            client.set_terminated(created.info.run_id)
        return client.get_run(created.info.run_id)

    family = run()  # a process killed mid-trial leaves both open
    done, open_trial = run(family, finished=True), run(family)
    checkpoints._kill(client, family)
    status = [client.get_run(r.info.run_id).info.status for r in (family, done, open_trial)]
    assert status == ["KILLED", "FINISHED", "KILLED"]


@pytest.mark.slow
def test_the_conversion_model_learns_from_the_window_before_its_split(spark, trained):
    """Fitted on train, it learns from the validation window's logged impressions (and the
    past window's), labelled by acceptances before the split: nothing from the holdout it is
    judged on."""
    config, _ = trained
    trainer = Trainer(spark, config)
    supervised = trainer.supervision.for_split(TRAIN)
    assert supervised.source == "impressions" and not supervised.cross_fit
    assert trainer.supervision.for_split(TUNE).cross_fit
    columns = ["market", "user_id", "offer_id", "propensity", "label"]
    # Beside the impressions, the plan-page views (no propensity) that organic_views adds.
    # fold -1: the past window's examples, checked in tests/test_supervision.py.
    window_df = supervised.examples_df.where(F.col("fold") != -1)
    assert supervised.examples_df.where(F.col("fold") == -1).count() > 0
    examples_df = window_df.where(~F.col("is_organic")).select(*columns)
    logged_df = trainer.supervision.logged(TUNE).select(*columns)
    assert examples_df.count() > 1_000
    assert examples_df.exceptAll(logged_df).count() == 0

    split, _ = cutoffs(dt.date(2026, 11, 1), config.interactions.holdout_days)
    tune_split = split - dt.timedelta(days=config.interactions.holdout_days)
    impressions_df = trainer.supervision.log_df.where(
        (F.col("event_type") == "offer_impression")
        & (F.col("event_ts") >= F.lit(tune_split))
        & (F.col("event_ts") < F.lit(split))
    )
    expected = impressions_df.select(
        *columns[:4],
        (F.col("accepted_ts").isNotNull() & (F.col("accepted_ts") < F.lit(split)))
        .cast("double")
        .alias("label"),
    )
    assert_df_equality(logged_df, expected, ignore_row_order=True, ignore_nullable=True)
    positives = examples_df.where(F.col("label") == 1).count()
    assert 0 < positives < examples_df.count()
    trainer.supervision.unpersist()
    trainer.interactions_df.unpersist()


def test_the_gate_metric_auto_follows_the_logged_impressions(config):
    resolved = with_gate_metric(config, "impressions").train.gate
    assert (resolved.metric, resolved.column) == ("policy_value", "policy_value")
    assert with_gate_metric(config, "candidates").train.gate.column == "ndcg_at_3"
    pinned = config.model_copy(
        update={
            "train": config.train.model_copy(
                update={"gate": config.train.gate.model_copy(update={"metric": "policy_value"})}
            )
        }
    )
    with pytest.raises(RecsysError, match="policy_value replays logged impressions"):
        with_gate_metric(pinned, "candidates")
