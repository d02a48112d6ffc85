"""Where a command's run keeps its local state, and the SparkSession it runs in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from recsys import progress
from recsys.config import Config

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def state_dir(config: Config) -> Path:
    """The local folder of this catalog's run state (log files, the pipeline's record).

    Parameters
    ----------
    config : Config
        The run's config.

    Returns
    -------
    Path
        The embedded metastore's parent (``.recsys/`` in ``conf/local.yaml``), else
        ``.recsys/`` in the current directory.
    """
    if config.catalog.metastore_dir:
        return Path(config.catalog.metastore_dir).parent
    return Path(".recsys").resolve()


@contextmanager
def command_session(config: Config, app_name: str, log_file: Path | None) -> Iterator[SparkSession]:
    """The job's session; stopped at the end unless it was already running (a notebook's,
    or a test's), since stopping it would pull it from under its owner.

    Parameters
    ----------
    config : Config
        The run's config, which builds the session.
    app_name : str
        Spark's application name.
    log_file : Path or None
        Where the JVM's output goes.

    Yields
    ------
    SparkSession
    """
    from pyspark.sql import SparkSession

    from recsys.session import build_session, jvm_is_dead

    owned = SparkSession.getActiveSession() is None
    spark = build_session(config, app_name=app_name, jvm_log=log_file)
    try:
        yield spark
    except BaseException:
        # A dead or dying JVM cannot be stopped; trying must not raise over the error that
        # ended the run.
        if owned and not jvm_is_dead(grace_s=0):
            try:
                spark.stop()
            except Exception as error:  # to the log file: stderr's one line is the failure's
                progress.trace("Spark did not stop cleanly after the failure", error)
        raise
    if owned:
        spark.stop()
