"""`recsys pipeline --resume`: on from the first step that did not finish with the same
settings; a changed setting starts over and says why."""

from __future__ import annotations

import json

import pytest

from recsys.cli import main
from recsys.config import load_config
from recsys.runs import state_dir
from tests.conftest import database_conf


@pytest.mark.slow  # three steps and a rerun: 1 to 3 minutes on 2 shared cores
def test_resume_goes_on_with_the_same_settings_and_starts_over_on_a_change(
    spark, capsys, tmp_path, config
):
    conf = database_conf(tmp_path, config, "resume_tests", world={"users": 200})
    record = state_dir(load_config(conf)) / "pipeline-resume_tests.json"
    spark.sql("CREATE DATABASE IF NOT EXISTS resume_tests")
    pipeline = ["pipeline", "--conf", str(conf)]

    assert main([*pipeline, "--until", "generate-world"]) == 0
    assert json.loads(record.read_text())["finished"] == ["generate-world"]
    capsys.readouterr()

    # generate-world finished with these settings (a run setting such as the driver's memory
    # is not one that decides what the steps write): on from build-interactions.
    until = ["--until", "build-interactions", "--resume"]
    assert main([*pipeline, *until, "--set", "spark.driver_memory=5g"]) == 0
    err = capsys.readouterr().err
    assert "pipeline --resume: generate-world finished with these settings; going on" in err
    assert "generate-world (step 1 of 2): started" not in err
    assert "build-interactions (step 2 of 2): started" in err
    finished = json.loads(record.read_text())["finished"]
    assert finished == ["generate-world", "build-interactions"]

    assert main([*pipeline, *until]) == 0
    err = capsys.readouterr().err
    assert "generate-world, build-interactions finished already with these settings" in err
    assert "started" not in err

    assert main([*pipeline, *until, "--set", "world.users=250"]) == 0
    err = capsys.readouterr().err
    assert (
        "pipeline --resume: settings changed since the last run (world.users: 200 -> 250); "
        "starting over from generate-world"
    ) in err
    assert "generate-world (step 1 of 2): started" in err

    # A step run by hand changes tables the record vouches for: the record is forgotten.
    assert main(["generate-world", "--conf", str(conf)]) == 0
    assert not record.exists()
