"""The console script end to end, in this process (sharing the test session)."""

from __future__ import annotations

import json

from recsys.cli import main


def _sql(capsys, conf_path, query, *extra):
    assert main(["sql", query, "--conf", str(conf_path), *extra]) == 0
    return capsys.readouterr().out


def test_generate_world_then_query_every_market(capsys, conf_path, config):
    args = ["--conf", str(conf_path), "--set", "world.users=3000"]
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
    assert sum(r["n"] for r in rows) == 3000

    # Rerunning replaces the tables; it never duplicates them.
    assert main(["generate-world", *args]) == 0
    out = _sql(capsys, conf_path, "select count(*) as n, count(distinct user_id) as d from users")
    assert out.splitlines()[2].split(" | ") == ["3000", "3000"]
    assert out.splitlines()[0].split(" | ") == ["n   ", "d   "]


def test_pipeline_runs_every_step_and_recommend_serves_only_a_champion(capsys, conf_path):
    # On 1,000 users no model beats the baselines with confidence, so train registers a
    # challenger, and recommend stops with the reason rather than serving it. One trial per
    # family: every family still trains, the search itself is tested in tests/training.
    args = ["--set", "world.users=1000", "--set", "train.max_trials=1"]
    assert main(["pipeline", "--conf", str(conf_path), *args]) == 2
    err = capsys.readouterr().err
    assert "recommend: failed" in err
    assert err.splitlines()[-1] == (
        "recsys: error: no version of registered model 'recsys-plan-recommender' has alias "
        "'champion': run train (a version becomes champion only when it passes the gate; the "
        "train report says why it did not)"
    )
    out = _sql(capsys, conf_path, "select count(*) from catalog", "--format", "json")
    assert json.loads(out)["count(1)"] > 100


def test_bad_sql_is_one_clear_line(capsys, conf_path):
    assert main(["sql", "select nope from nowhere", "--conf", str(conf_path)]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("recsys: spark error: [TABLE_OR_VIEW_NOT_FOUND]")
    assert "`nowhere`" in err.splitlines()[-1]
    assert "Traceback" not in err
