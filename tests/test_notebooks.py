"""The notebooks under notebooks/ run top to bottom, headless, against the small world the
recommend and experiment tests share (built by the real steps: generate-world,
build-interactions, train, recommend, simulate, analyze), and save their figures.

Each notebook runs in a fresh kernel of this interpreter (a kernel spec written to a
temporary folder whose argv is ``sys.executable``, so whatever ``python3`` kernel a machine
has installed elsewhere is not used). The notebooks that read tables start their own Spark
session; the embedded Derby metastore admits one process at a time (docs/development.md)
and this test run's session holds it, so the kernels read an online backup of it, taken
through Derby itself, whose tables point at the same warehouse files.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from matplotlib import image
from nbclient import NotebookClient

from recsys.recommend import job as recommend_job
from tests.conftest import ROOT

# The notebooks read every table of the served world, each in a kernel of its own.
pytestmark = pytest.mark.slow

NOTEBOOKS = ROOT / "notebooks"
KERNEL = "recsys-tests"
MARKET = "SE"
FIGURES = {
    "model_comparison.ipynb": ["model_comparison"],
    "recommendation_inspection.ipynb": [
        f"recommendations_{MARKET}_{part}"
        for part in ("plan_mix", "reasons", "eligibility", "values")
    ],
    "experiment_readout.ipynb": ["experiment_lift_by_market", "experiment_policy_values"],
}


def backup_metastore(spark, metastore_dir: str, destination: Path) -> Path:
    """A consistent copy of this session's Derby metastore (SYSCS_BACKUP_DATABASE), made
    from the JVM that has it open; returns the copy's folder."""
    connection = spark.sparkContext._jvm.java.sql.DriverManager.getConnection(
        f"jdbc:derby:;databaseName={metastore_dir}"
    )
    try:
        call = connection.prepareCall("CALL SYSCS_UTIL.SYSCS_BACKUP_DATABASE(?)")
        call.setString(1, str(destination))
        call.execute()
        call.close()
    finally:
        connection.close()
    return destination / Path(metastore_dir).name


@pytest.fixture(scope="module")
def notebook_env(spark, experimented, tmp_path_factory) -> dict[str, str]:
    """The environment the notebooks read their parameters from: a config extending the
    served world's, on a copy of its metastore, with figures in a temporary folder."""
    path, config = experimented
    # The recommend tests publish made-up snapshots on this world and roll back among them,
    # so the served view may no longer be what recommend wrote (nor have an audit): serve
    # recommend's own lists again, as after `make demo`.
    recommend_job.run(spark, config)
    folder = tmp_path_factory.mktemp("notebooks")
    metastore = backup_metastore(spark, config.catalog.metastore_dir, folder / "catalog")
    conf = folder / "notebooks.yaml"
    settings = {
        "extends": str(path),
        "catalog": {"metastore_dir": str(metastore)},
        "spark": {"driver_memory": "1g"},
    }
    conf.write_text(yaml.safe_dump(settings), encoding="utf-8")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_GATEWAY")}
    return {
        **environment,
        "RECSYS_CONF": str(conf),
        "RECSYS_WORKDIR": str(folder),
        "RECSYS_FIGURES": str(folder / "figures"),
        "RECSYS_MARKET": MARKET,
    }


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory) -> KernelSpecManager:
    folder = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(folder / KERNEL)
    return KernelSpecManager(kernel_dirs=[str(folder)])


@pytest.mark.parametrize("name", list(FIGURES))
def test_the_notebook_runs_headless_and_saves_its_figures(name, notebook_env, kernel_specs):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not c.get("outputs") for c in notebook.cells), "commit notebooks without outputs"
    manager = KernelManager(kernel_name=KERNEL, kernel_spec_manager=kernel_specs)
    assert manager.kernel_spec.argv[0] == sys.executable
    client = NotebookClient(
        notebook,
        km=manager,
        timeout=300,
        resources={"metadata": {"path": str(NOTEBOOKS)}},  # as Jupyter starts it
    )
    client.execute(env=notebook_env)  # raises CellExecutionError naming the failing cell

    figures = Path(notebook_env["RECSYS_FIGURES"])
    for figure in FIGURES[name]:
        path = figures / f"{figure}.png"
        height, width, _ = image.imread(path).shape
        assert height > 200 and width > 200, path
    shown = [
        o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})
    ]
    assert len(shown) == len(FIGURES[name])  # each saved figure is also shown inline
