"""The jobs as separate processes: spark-submit and the console script, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, console_script, write_conf

pytestmark = pytest.mark.slow


def test_spark_submit_job_then_recsys_sql(tmp_path):
    conf = write_conf(tmp_path)  # its own metastore: Derby admits one process at a time
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    subprocess.run(
        [
            console_script("spark-submit"),
            "--master",
            "local[2]",
            str(ROOT / "jobs" / "generate_world.py"),
            "--conf",
            str(conf),
            "--set",
            "world.users=1000",
        ],
        check=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    done = subprocess.run(
        [
            console_script("recsys"),
            "sql",
            "select count(distinct market) as markets from recsys.users",
            "--conf",
            str(conf),
            "--format",
            "json",
        ],
        check=True,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert json.loads(done.stdout) == {"markets": 14}
