"""Long steps are never silent: the innermost open step says it is still running, with the
Spark stages at work and their tasks done."""

from __future__ import annotations

import logging
import time

from recsys import progress


def test_a_long_step_says_it_is_still_running_and_only_the_innermost_speaks(monkeypatch, caplog):
    monkeypatch.setattr(progress, "HEARTBEAT_SECONDS", 0.2)
    logger = logging.getLogger("tests.progress")
    with caplog.at_level(logging.INFO, logger="tests.progress"):
        with progress.step("outer", logger), progress.step("inner", logger):
            time.sleep(0.7)
        with progress.step("quick", logger):
            pass
    messages = [r.getMessage() for r in caplog.records]

    assert any(m.startswith("inner: still running after") for m in messages), messages
    assert not any(m.startswith("outer: still running") for m in messages), messages
    assert not any(m.startswith("quick: still running") for m in messages), messages
    assert messages[-1].startswith("quick: done in")


def test_the_heartbeat_names_the_spark_stage_at_work(spark, monkeypatch, caplog):
    monkeypatch.setattr(progress, "HEARTBEAT_SECONDS", 0.5)
    logger = logging.getLogger("tests.progress")
    slow = spark.range(0, 4, numPartitions=4).rdd.map(lambda x: time.sleep(1.5) or x)
    with (
        caplog.at_level(logging.INFO, logger="tests.progress"),
        progress.step("counting", logger),
    ):
        assert slow.count() == 4
    beats = [r.getMessage() for r in caplog.records if "still running" in r.getMessage()]

    assert any("; Spark stage " in m and " tasks)" in m for m in beats), beats
