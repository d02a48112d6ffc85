"""`recsys ingest` and own data through the console script, in this process."""

from __future__ import annotations

from recsys.cli import main
from recsys.config import load_config, with_ingest
from recsys.pipeline import DEMO_FLOW, OWN_DATA_FLOW, pipeline_steps
from tests.conftest import LOCAL_CONF, database_conf

USERS = "user_id,market,current_plan,signup_date\nu1,SE,free,2025-01-01\n"
EVENTS = "user_id,market,event_type,item_id,event_ts\nu1,SE,listen,genre:pop,2026-10-01\n"


def _files(folder, users=USERS, events=EVENTS):
    (folder / "users.csv").write_text(users)
    (folder / "events.csv").write_text(events)
    return str(folder / "users.csv"), str(folder / "events.csv")


def test_a_broken_file_is_a_message_not_a_traceback(capsys, ingest_conf, tmp_path):
    conf_path, _ = ingest_conf
    users, events = _files(tmp_path, users=USERS + "u2,SE,free,someday\n")
    args = ["ingest", "--conf", str(conf_path), "--users", users, "--events", events]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"recsys: error: users file {users} breaks its contract" in err
    assert "column 'signup_date' does not parse as a date (1 row)" in err
    assert "signup_date=someday" in err


def test_simulate_on_ingested_data_says_it_is_demo_only(capsys, ingest_conf, tmp_path):
    conf_path, config = ingest_conf
    users, events = _files(tmp_path)
    args = ["--conf", str(conf_path), "--users", users, "--events", events, "--format", "csv"]
    assert main(["ingest", *args]) == 0
    capsys.readouterr()
    assert main(["simulate", "--conf", str(conf_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith(
        f"recsys: error: no {config.table('world_truth')} table for this data: simulate is "
        "demo-only"
    )


def test_pipeline_on_own_data_runs_ingest_and_stops_after_recommend(
    capsys, spark, config, tmp_path
):
    users, events = _files(tmp_path, events="user_id\nu1\n")
    conf_path = database_conf(
        tmp_path,
        config,
        "ingest_tests",
        ingest={"users": users, "events": events},
    )
    assert main(["pipeline", "--conf", str(conf_path)]) == 2
    err = capsys.readouterr().err
    assert "real data: skipping simulate and analyze" in err
    assert f"ingest (step 1 of {len(OWN_DATA_FLOW)}): failed" in err
    assert "generate-world (step" not in err and "generate-world: started" not in err
    assert f"recsys: error: events file {events} lacks the required columns" in err

    own = load_config(conf_path)
    assert pipeline_steps(own, None) == list(OWN_DATA_FLOW)
    assert pipeline_steps(own, "analyze") == list(OWN_DATA_FLOW)
    assert pipeline_steps(own, "generate-world") == ["ingest"]
    assert pipeline_steps(own, "train") == ["ingest", "build-interactions", "train"]


def test_pipeline_on_the_synthetic_world_is_unchanged():
    demo = load_config(LOCAL_CONF)
    assert pipeline_steps(demo, None) == list(DEMO_FLOW)
    assert pipeline_steps(demo, "ingest") == ["generate-world"]
    assert pipeline_steps(demo, "recommend") == list(DEMO_FLOW[:4])
    flags = with_ingest(demo, users="u.csv", events="e.csv")
    assert pipeline_steps(flags, None) == list(OWN_DATA_FLOW)
