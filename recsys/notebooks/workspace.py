"""The start of every notebook: the config the pipeline ran with, a Spark session on its
catalog, an MLflow client on its tracking store, and the folder the figures are saved to.

Relative paths (the config file, the ``.recsys/`` state it names, the figures folder) are
resolved from one working directory, as the jobs resolve them from theirs: the folder the
pipeline ran in. Jupyter starts a kernel in the notebook's own folder, so the notebooks pass
the repository root (``..`` from ``notebooks/``) unless ``RECSYS_WORKDIR`` names another.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from matplotlib.figure import Figure
from mlflow import MlflowClient
from pyspark import SparkContext
from pyspark.sql import SparkSession

from recsys.config import Config, load_config
from recsys.errors import RecsysError
from recsys.session import build_session

DEFAULT_CONF = "conf/local.yaml"
DEFAULT_FIGURES = "notebooks/figures"
_HINT = (
    "set RECSYS_WORKDIR to the folder the pipeline ran in and RECSYS_CONF to its config "
    "(relative paths are resolved from RECSYS_WORKDIR)"
)


@dataclass(frozen=True)
class SavedFigure:
    """A figure written as a PNG file; Jupyter shows the file inline."""

    path: Path
    figure: Figure

    def _repr_png_(self) -> bytes:
        return self.path.read_bytes()


@dataclass(frozen=True)
class Markdown:
    """Text that Jupyter renders as Markdown (a report written by a job)."""

    text: str

    def _repr_markdown_(self) -> str:
        return self.text


class Workspace:
    """What a notebook reads from: ``config`` (validated, paths absolute), ``spark`` (started
    on first use, on the config's catalog), ``mlflow`` (a client of its tracking store), and
    ``figures`` (where :meth:`save` writes PNG files)."""

    def __init__(self, config: Config, figures: Path) -> None:
        self.config = config
        self.figures = figures
        self._spark: SparkSession | None = None

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            metastore = self.config.catalog.metastore_dir
            if metastore and not Path(metastore).is_dir():
                # An empty embedded metastore would be created here and every read would
                # fail later with "table does not exist": say what is wrong instead.
                raise RecsysError(f"no catalog at {metastore}: run the pipeline first; {_HINT}")
            self._spark = build_session(self.config, app_name="recsys notebook")
        return self._spark

    @cached_property
    def mlflow(self) -> MlflowClient:
        uri = self.config.mlflow.tracking_uri
        if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
            raise RecsysError(f"no MLflow store at {uri}: run train first; {_HINT}")
        return MlflowClient(tracking_uri=uri)

    def save(self, figure: Figure, name: str) -> SavedFigure:
        """Write ``figure`` to ``<figures>/<name>.png``; the result shows it in Jupyter."""
        self.figures.mkdir(parents=True, exist_ok=True)
        path = self.figures / f"{name}.png"
        figure.savefig(path, dpi=100)
        return SavedFigure(path, figure)

    def stop(self) -> None:
        """Stop the Spark session, if one was started, and the JVM it started.

        The embedded Derby metastore admits one process and is released only when the JVM
        that opened it exits, which stopping the session does not do: the JVM lives as long
        as the kernel. So the JVM this kernel launched is ended here (it exits when its stdin
        closes, PySpark's own way of ending it), and a later :attr:`spark` launches a new one.
        A JVM PySpark did not launch (under spark-submit) is left alone.
        """
        if self._spark is None:
            return
        self._spark.stop()
        self._spark = None
        gateway = SparkContext._gateway
        process = getattr(gateway, "proc", None)
        if process is not None:
            gateway.shutdown()
            process.stdin.close()
            process.wait(timeout=120)
            SparkContext._gateway = None
            SparkContext._jvm = None


def open_workspace(
    conf: str | Path = DEFAULT_CONF,
    *,
    workdir: str | Path = ".",
    figures: str | Path = DEFAULT_FIGURES,
) -> Workspace:
    """Make ``workdir`` the working directory, then load ``conf`` and resolve ``figures``
    from there, as a job started in that folder would."""
    folder = Path(workdir).resolve()
    if not folder.is_dir():
        raise RecsysError(f"working directory {folder} does not exist; {_HINT}")
    os.chdir(folder)
    path = Path(conf)
    if not path.is_file():
        raise RecsysError(f"config file not found: {path.resolve()}; {_HINT}")
    return Workspace(load_config(path), Path(figures).resolve())
