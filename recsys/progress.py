"""Progress logging: what step, which market, how many rows, how many seconds.

Spark's own log4j output is kept to errors (see ``log4j2.properties``); these lines are what a
person watching a long job reads.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("recsys")


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger("recsys")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # py4j logs every gateway call at INFO; keep it out of the progress lines.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    # xgboost.spark logs each fit's start and end at INFO; the conversion model logs its own.
    logging.getLogger("XGBoost-PySpark").setLevel(logging.WARNING)


@contextmanager
def step(name: str, logger: logging.Logger = log) -> Iterator[None]:
    """Log the start and end of a unit of work with its wall time (and failure, if any)."""
    started = time.perf_counter()
    logger.info("%s: started", name)
    try:
        yield
    except BaseException:
        logger.error("%s: failed after %.1fs", name, time.perf_counter() - started)
        raise
    logger.info("%s: done in %.1fs", name, time.perf_counter() - started)
