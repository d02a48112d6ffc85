"""What the console script says when things go wrong, run as a user runs it: in its own
process, on real Spark. Each error is one line on the terminal that names the run's log file;
the traces are in that file."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recsys.cli import main
from recsys.sql import writes
from tests.conftest import ROOT, console_script, write_conf

# Modules that take seconds to import, or start Spark's JVM: help and config errors need none.
HEAVY = ("mlflow", "xgboost", "pandas", "scipy", "recsys.training.job", "recsys.world.job")


def _log_file(err: str) -> Path:
    found = re.search(r"full log: (\S+?\.log)", err)
    assert found, err
    return Path(found.group(1))


def test_help_and_config_errors_answer_before_spark_or_mlflow_is_loaded(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"extends: {ROOT / 'conf' / 'local.yaml'}\nworld: {{users: -5}}\n")
    probe = f"""
import sys
from recsys.cli import main
for argv in (["--help"], ["train", "--help"], ["pipeline", "--help"]):
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code == 0, argv
assert main(["train", "--conf", {str(bad)!r}]) == 2
assert main(["sql", "select 1", "--conf", "no/such.yaml"]) == 2
from pyspark import SparkContext
print("loaded:", sorted(m for m in {HEAVY!r} if m in sys.modules))
print("jvm:", SparkContext._gateway is not None)
"""
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stdout
    assert "jvm: False" in done.stdout
    assert "world.users" in done.stderr  # the config error names its key

    help_text = subprocess.run(
        [console_script("recsys"), "sql", "--help"], capture_output=True, text=True, timeout=60
    )
    assert help_text.returncode == 0
    described = " ".join(help_text.stdout.split())
    assert "--write" in described and "is refused unless --write is given" in described


@pytest.mark.parametrize(
    "statement",
    [
        "select 1",
        "with a as (select 1 as x) select * from a",
        "show tables",
        "show databases",
        "describe users",
        "explain select 1",
        "show create table users",
    ],
)
def test_sql_reads_are_queries(spark, statement):
    assert writes(spark, statement) is None


@pytest.mark.parametrize(
    ("statement", "plan"),
    [
        ("create table t (a int)", "CreateTable"),
        ("create table t as select 1 as a", "CreateTableAsSelect"),
        ("drop table users", "DropTable"),
        ("drop view plan_recommendations_current", "DropView"),
        ("alter view v as select 1", "AlterViewAs"),
        ("create or replace view v as select 1", "CreateView"),
        ("insert into users select * from users", "InsertIntoStatement"),
        ("with a as (select 1) insert overwrite table t select * from a", "InsertIntoStatement"),
        ("truncate table users", "TruncateTable"),
        ("delete from users", "DeleteFromTable"),
        ("alter table users add columns (b int)", "AddColumns"),
        ("create database x", "CreateNamespace"),
        ("drop database recsys cascade", "DropNamespace"),
        ("msck repair table users", "RepairTable"),
    ],
)
def test_sql_writes_are_named_by_their_plan(spark, statement, plan):
    assert writes(spark, statement) == plan


def test_sql_is_read_only_unless_write_is_given(spark, capsys, tmp_path, config):
    from tests.conftest import database_conf

    conf = database_conf(tmp_path, config, "sql_guard")
    spark.sql("CREATE DATABASE IF NOT EXISTS sql_guard")
    args = ["--conf", str(conf)]
    assert main(["sql", "create table kept (a int) using parquet", *args, "--write"]) == 0
    capsys.readouterr()

    assert main(["sql", "drop table kept", *args]) == 2
    err = capsys.readouterr().err
    assert "read-only unless --write" in err and "DropTable" in err
    assert spark.catalog.tableExists("sql_guard.kept")
    assert main(["sql", "select count(*) as n from kept", *args, "--format", "json"]) == 0
    assert capsys.readouterr().out.strip() == '{"n": 0}'


def test_a_misspelt_table_is_one_line_with_the_trace_in_the_log(capsys, conf_path, spark):
    assert main(["sql", "select nope from nowhere", "--conf", str(conf_path)]) == 1
    err = capsys.readouterr().err
    assert not any(line.startswith("{") for line in err.splitlines())  # no JSON log record
    assert "Traceback" not in err and "at org.apache" not in err
    last = err.splitlines()[-1]
    assert last.startswith("recsys: spark error: [TABLE_OR_VIEW_NOT_FOUND]")
    logged = _log_file(last).read_text(encoding="utf-8")
    assert "TABLE_OR_VIEW_NOT_FOUND" in logged
    assert "at org.apache.spark" in logged  # the Java stack trace went to the file


@pytest.mark.slow  # starts a second recsys process and its JVM
def test_a_busy_metastore_is_one_line_naming_the_folder(spark, conf_path, config):
    # This test process's session holds the embedded Derby metastore; a second process on
    # the same one is refused by Derby.
    done = subprocess.run(
        [console_script("recsys"), "sql", "show tables", "--conf", str(conf_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) <= 2, done.stderr  # no Java traces, no Spark start-up chatter
    assert lines[-1].startswith(f"recsys: error: the metastore {config.catalog.metastore_dir} ")
    assert "another recsys process" in lines[-1] and "conf/cluster.yaml" in lines[-1]
    assert "XSDB6" in _log_file(lines[-1]).read_text(encoding="utf-8")


def _children(pid: int) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") :]
            if int(rest.split()[2]) == pid:
                found.append((int(entry.name), name))
    return found


@pytest.mark.slow  # starts a recsys process whose JVM it kills
@pytest.mark.skipif(not Path("/proc").exists(), reason="finds the JVM through /proc")
def test_a_dead_jvm_is_one_line_naming_the_memory_setting(tmp_path):
    conf = write_conf(tmp_path)
    # Minutes of work, and no overflow (ANSI mode ends sum(id) early) before the kill.
    query = "select sum(id % 2) from range(1000000000000)"
    process = subprocess.Popen(
        [console_script("recsys"), "sql", query, "--conf", str(conf)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        lines = []
        for line in process.stderr:  # the session's "spark ... up" line: the query is next
            lines.append(line)
            if " up: master=" in line:
                break
        time.sleep(3)
        jvms = [pid for pid, name in _children(process.pid) if name == "java"]
        assert jvms, lines
        os.kill(jvms[0], signal.SIGKILL)  # as the kernel's OOM killer does
        err = "".join(lines) + process.stderr.read()
        process.wait(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 1, err
    assert "Traceback" not in err and "ConnectionRefusedError" not in err, err
    last = err.splitlines()[-1]
    assert "Spark's JVM died (killed by signal 9)" in last
    assert "spark.driver_memory (now 4g)" in last
    assert _log_file(last).exists()
