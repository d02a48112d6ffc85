"""The console script end to end, in this process (sharing the test session)."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from recsys import tracking
from recsys.cli import main


def _sql(capsys, conf_path, query, *extra):
    assert main(["sql", query, "--conf", str(conf_path), *extra]) == 0
    return capsys.readouterr().out


def test_generate_world_then_query_every_market(capsys, conf_path, config):
    users = 1_000
    args = ["--conf", str(conf_path), "--set", f"world.users={users}"]
    assert main(["generate-world", *args]) == 0
    out = _sql(
        capsys,
        conf_path,
        "select market, count(*) as n from recsys.users group by market",
        "--format",
        "json",
    )
    rows = [json.loads(line) for line in out.splitlines()]
    assert {r["market"] for r in rows} == set(config.markets.markets)
    assert sum(r["n"] for r in rows) == users

    # Rerunning replaces the tables; it never duplicates them.
    assert main(["generate-world", *args]) == 0
    out = _sql(capsys, conf_path, "select count(*) as n, count(distinct user_id) as d from users")
    assert out.splitlines()[2].split(" | ") == [str(users), str(users)]
    assert out.splitlines()[0].split(" | ") == ["n   ", "d   "]


@pytest.mark.slow  # every step of the demo in turn
def test_pipeline_runs_every_step_and_serves_the_interim_model_before_any_champion(
    capsys, conf_path, config
):
    # With a gate margin no model can clear, train registers a challenger and names the best
    # family on the holdout interim; recommend serves it and says so, and the experiment runs
    # on its lists. The baselines and the conversion model train, one trial each: every
    # family and the search are trained end to end in tests/training/test_job.py.
    args = ["--set", "world.users=1000", "--set", "train.max_trials=1"]
    args += ["--set", "train.gate.margin=1.0"]
    for family in ("spark_als", "implicit_als", "implicit_bpr"):
        args += ["--set", f"train.models.{family}.enabled=false"]
    assert main(["pipeline", "--conf", str(conf_path), *args]) == 0
    err = capsys.readouterr().err
    assert "no version of recsys-plan-recommender has passed the gate yet: serving the " in err
    tracking.setup(config)
    client = MlflowClient()
    name = config.train.registered_model
    aliases = client.get_registered_model(name).aliases
    assert "champion" not in aliases
    interim = client.get_model_version(name, aliases["interim"])
    assert interim.tags["recsys.promoted"] == "false"
    out = _sql(
        capsys,
        conf_path,
        "select distinct model_version from plan_recommendations_current",
        "--format",
        "json",
    )
    served = [json.loads(line)["model_version"] for line in out.splitlines()]
    assert served == [str(interim.version)]
    out = _sql(capsys, conf_path, "select count(*) from experiment_results", "--format", "json")
    assert json.loads(out)["count(1)"] > 0


def test_bad_sql_is_one_clear_line(capsys, conf_path):
    assert main(["sql", "select nope from nowhere", "--conf", str(conf_path)]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("recsys: spark error: [TABLE_OR_VIEW_NOT_FOUND]")
    assert "`nowhere`" in err.splitlines()[-1]
    assert "Traceback" not in err
