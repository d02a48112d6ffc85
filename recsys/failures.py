"""What the `recsys` command says when a run fails: one line on stderr that names the run's
log file (the traces go to that file), and an exit status."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

from recsys import progress
from recsys.config import Config
from recsys.errors import RecsysError

if TYPE_CHECKING:
    from py4j.protocol import Py4JJavaError


def report(exc: BaseException, config: Config, command: str, log_file: Path) -> int:
    """Print ``exc`` as one line that names the log file; its traces go to the log file.

    Parameters
    ----------
    exc : BaseException
        What ended the run; a SystemExit is raised again.
    config : Config
        The run's config, for advice that names its settings.
    command : str
        The subcommand that ran.
    log_file : Path
        The run's log file.

    Returns
    -------
    int
        The exit status: 2 for a problem the user can fix, 1 for a failed Spark job or
        another error, 130 when interrupted.
    """
    from py4j.protocol import Py4JError, Py4JJavaError, Py4JNetworkError
    from pyspark.errors import PySparkException

    from recsys.session import jvm_is_dead

    where = f"(full log: {log_file})"
    if isinstance(exc, KeyboardInterrupt):
        progress.trace("interrupted", exc)
        print(f"recsys: interrupted {where}", file=sys.stderr)
        return 130
    if isinstance(exc, SystemExit):
        raise exc
    progress.trace("recsys failed", exc)
    if isinstance(exc, RecsysError):
        print(f"recsys: error: {exc} {where}", file=sys.stderr)
        return 2
    # Py4J says the connection broke; later calls find nothing listening. Either way, when
    # the JVM process has exited, that is the news, not the socket error. A Java exception
    # came from a JVM that answered, so it is not waited on.
    answered = isinstance(exc, Py4JJavaError)
    if isinstance(exc, Py4JNetworkError) or (
        isinstance(exc, Py4JError | ConnectionError) and not answered and jvm_is_dead()
    ):
        print(f"recsys: error: {_dead_jvm(config, command)} {where}", file=sys.stderr)
        return 1
    busy = _busy_metastore(exc, config)
    if busy:
        print(f"recsys: error: {busy} {where}", file=sys.stderr)
        return 1
    if isinstance(exc, PySparkException):
        print(f"recsys: spark error: {_first_line(exc)} {where}", file=sys.stderr)
        return 1
    if isinstance(exc, Py4JJavaError):  # a failed Spark job: say what failed and its root cause
        print(f"recsys: spark error: {_java_summary(exc)}\n  {where}", file=sys.stderr)
        return 1
    print(f"recsys: error: {type(exc).__name__}: {_first_line(exc)} {where}", file=sys.stderr)
    return 1


def _dead_jvm(config: Config, command: str) -> str:
    """What to say when Spark's JVM has gone: why it most likely went and what to change."""
    from recsys.session import jvm_exit_status

    status = jvm_exit_status()
    how = f"killed by signal {-status}" if status is not None and status < 0 else "exited"
    if status is not None and status > 0:
        how = f"exited with status {status}"
    memory = config.spark.driver_memory or "Spark's default of 1g"
    again = (
        "; then `recsys pipeline --resume` goes on from the step that failed"
        if command == "pipeline"
        else ""
    )
    return (
        f"Spark's JVM died ({how}), most likely out of memory (the kernel's OOM killer, or "
        f"a full heap): give it more with spark.driver_memory (now {memory}), or run less "
        f"beside it{again}"
    )


# Derby, the embedded metastore, lets one JVM at a time open its database.
_DERBY_BUSY = ("XSDB6", "Another instance of Derby may have already booted the database")


def _busy_metastore(exc: BaseException, config: Config) -> str | None:
    """The one line for an error caused by another process holding the embedded metastore,
    or None when ``exc`` is something else."""
    if not config.catalog.metastore_dir:
        return None
    text = "\n".join(_error_texts(exc))
    if not any(marker in text for marker in _DERBY_BUSY):
        return None
    return (
        f"the metastore {config.catalog.metastore_dir} is in use by another recsys process "
        "(the embedded Derby metastore admits one at a time): wait for that one to finish, "
        "or give both a metastore server (see conf/cluster.yaml)"
    )


def _error_texts(exc: BaseException) -> Iterator[str]:
    """The messages of ``exc``, its Python causes and the Java exceptions behind them."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        with suppress(Exception):
            yield str(getattr(error, "_desc", "") or "")
            yield str(getattr(error, "_stackTrace", "") or "")  # PySpark's captured chain
        java = getattr(error, "java_exception", None) or getattr(error, "_origin", None)
        for _ in range(50):  # a Java cause chain, bounded against cycles
            if java is None:
                break
            try:
                yield str(java.toString())
                java = java.getCause()
            except Exception:  # the JVM may be gone; the rest is in the log
                break
        error = error.__cause__ or error.__context__


def _java_summary(exc: Py4JJavaError) -> str:
    """The failing call's first line and the root cause's message (a few lines at most)."""
    error = exc.java_exception
    top = str(error.getMessage() or error.toString()).strip().splitlines()[0]
    while error.getCause() is not None:
        error = error.getCause()
    root = str(error.getMessage() or error.toString()).strip().splitlines()[:6]
    return "\n  ".join([top, "caused by: " + root[0], *root[1:]]) if root else top


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
