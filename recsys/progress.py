"""Progress logging: what step, which market, how many rows, how many seconds.

The terminal gets recsys's own lines and one line per error. Everything else a run produces
(Spark's JVM output, Py4J's and PySpark's tracebacks, MLflow's and Alembic's start-up notices,
Python warnings) goes to the run's log file, which the error line names; ``--verbose`` puts
it back on the terminal too.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("recsys")

# Tracebacks for the log file only: the terminal has the error's one line already.
TRACE = "recsys.trace"
# Log files kept per folder; older ones are removed when a run starts a new one.
KEEP_LOG_FILES = 50
# Libraries that log to the terminal on their own: Py4J (each broken gateway call, with a
# traceback), MLflow and Alembic (database migrations at INFO), xgboost.spark (each fit), and
# Python warnings. PySpark's query-context loggers are set up in :func:`_quiet_pyspark`.
_CHATTY = ("py4j", "mlflow", "alembic", "XGBoost-PySpark", "py.warnings")
_PYSPARK_LOGGERS = ("SQLQueryContextLogger", "DataFrameQueryContextLogger")
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

_installed: list[logging.Handler] = []


def setup_logging(level: str = "INFO", log_file: Path | None = None, verbose: bool = False) -> None:
    """Send recsys's progress lines to stderr, and the rest of a run's output to ``log_file``.

    Parameters
    ----------
    level
        The least level of recsys's lines on the terminal (the log file gets INFO and above).
    log_file
        Where the full record goes: recsys's lines, tracebacks, and the libraries' own
        logging. None keeps no file; the libraries' chatter is then dropped (or, with
        ``verbose``, printed).
    verbose
        Also print the libraries' own logging on the terminal, as they would by themselves.
    """
    for handler in _installed:
        handler.close()
    _installed.clear()
    terminal = logging.StreamHandler(sys.stderr)
    terminal.setFormatter(logging.Formatter(_FORMAT))
    terminal.setLevel(level)
    handlers: list[logging.Handler] = [terminal]
    keep: logging.Handler = logging.NullHandler()
    if log_file is not None:
        keep = logging.FileHandler(log_file, encoding="utf-8")
        keep.setFormatter(logging.Formatter(_FORMAT))
        handlers.append(keep)
    _installed.extend(handlers)

    root = logging.getLogger("recsys")
    root.handlers[:] = handlers
    root.setLevel(min(logging.getLevelName(level), logging.INFO) if log_file else level)
    root.propagate = False
    trace = logging.getLogger(TRACE)
    trace.handlers[:] = [keep]
    trace.propagate = False

    # py4j logs every gateway call at INFO; keep it out of the progress lines.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    # xgboost.spark logs each fit's start and end at INFO; the conversion model logs its own.
    logging.getLogger("XGBoost-PySpark").setLevel(logging.WARNING)
    if verbose:
        return
    # MLflow configures its loggers when first imported; told not to, it leaves them to us.
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    logging.captureWarnings(True)
    for name in _CHATTY:
        logger = logging.getLogger(name)
        logger.handlers[:] = [keep]
        logger.propagate = False
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.INFO)
    _quiet_pyspark(keep)


def _quiet_pyspark(handler: logging.Handler) -> None:
    """Send PySpark's error records (a JSON line with the Java stack trace, logged for every
    failed query before the exception reaches us) to ``handler`` instead of stderr."""
    from pyspark.logger import PySparkLogger

    for name in _PYSPARK_LOGGERS:
        # Created as a PySparkLogger, which takes keyword arguments: PySpark calls it so.
        logger = PySparkLogger.getLogger(name)
        # Assigned, not added: PySparkLogger.addHandler would put its JSON format on the
        # shared handler.
        logger.handlers = [handler]
        logger.propagate = False


def new_log_file(folder: Path, command: str) -> Path:
    """A new, empty log file for one run of ``command`` under ``folder``.

    Named ``recsys-<command>-<UTC time>-<pid>.log``; all but the newest
    :data:`KEEP_LOG_FILES` files of the folder are removed.
    """
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    path = folder / f"recsys-{command}-{stamp}-{os.getpid()}.log"
    path.touch()
    old = sorted(folder.glob("recsys-*.log"), key=lambda p: p.stat().st_mtime)
    for stale in old[:-KEEP_LOG_FILES]:
        stale.unlink(missing_ok=True)
    return path


def trace(message: str, exc: BaseException) -> None:
    """Write ``exc`` with its traceback (and any Java stack trace it carries) to the log file
    only."""
    logging.getLogger(TRACE).error(message, exc_info=(type(exc), exc, exc.__traceback__))


@contextmanager
def step(name: str, logger: logging.Logger = log) -> Iterator[None]:
    """Log the start and end of a unit of work with its wall time (and failure, if any).

    While it runs, the innermost open step says every :data:`HEARTBEAT_SECONDS` that it is
    still running, with the Spark stages running at that moment and their tasks done, so a
    long stage is never silent.
    """
    started = time.perf_counter()
    logger.info("%s: started", name)
    _open_steps.append(name)
    stop = threading.Event()
    beat = threading.Thread(
        target=_heartbeat, args=(name, logger, started, stop), daemon=True, name=f"step {name}"
    )
    beat.start()
    try:
        yield
    except BaseException:
        logger.error("%s: failed after %.1fs", name, time.perf_counter() - started)
        raise
    finally:
        stop.set()
        _open_steps.remove(name)
    logger.info("%s: done in %.1fs", name, time.perf_counter() - started)


# Seconds between "still running" lines of a long step.
HEARTBEAT_SECONDS = 30.0
_open_steps: list[str] = []


def _heartbeat(name: str, logger: logging.Logger, started: float, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        if _open_steps and _open_steps[-1] == name:  # an inner step speaks for its outer ones
            stages = _spark_stages()
            logger.info(
                "%s: still running after %.0fs%s",
                name,
                time.perf_counter() - started,
                f"; Spark {stages}" if stages else "",
            )


def _spark_stages() -> str:
    """The active Spark stages and their tasks done, as one phrase ("" without Spark)."""
    from pyspark import SparkContext  # the Python side only; no JVM is started here

    context = SparkContext._active_spark_context
    if context is None:
        return ""
    try:
        tracker = context.statusTracker()
        infos = [tracker.getStageInfo(i) for i in tracker.getActiveStageIds()]
    except Exception:  # a JVM that is going away: the line goes out without Spark's part
        return ""
    return ", ".join(
        f"stage {i.stageId} ({i.numCompletedTasks}/{i.numTasks} tasks)" for i in infos if i
    )
