"""Opening a workspace resolves paths from the pipeline's folder, saves figures as PNG, and
says what to set when the pipeline's state is not where it looks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from recsys.errors import RecsysError
from recsys.notebooks.workspace import open_workspace
from tests.conftest import write_conf


def test_paths_are_resolved_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # restored after the test: open_workspace changes directory
    run = tmp_path / "run"
    run.mkdir()
    write_conf(run)
    workspace = open_workspace("test.yaml", workdir=run, figures="out/figures")
    assert Path(os.getcwd()) == run.resolve()
    assert workspace.figures == (run / "out" / "figures").resolve()
    assert workspace.config.catalog.warehouse_dir == str(run / "warehouse")

    figure = Figure()
    figure.subplots().plot([0, 1], [1, 0])
    saved = workspace.save(figure, "line")
    assert saved.path == workspace.figures / "line.png"
    assert saved._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_state_is_reported_before_anything_is_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RecsysError, match=r"config file not found: .*RECSYS_WORKDIR"):
        open_workspace("conf/local.yaml", workdir=tmp_path)
    write_conf(tmp_path)
    workspace = open_workspace("test.yaml", workdir=tmp_path)
    with pytest.raises(RecsysError, match=r"no MLflow store at sqlite:///.*: run train first"):
        workspace.mlflow  # noqa: B018
    with pytest.raises(RecsysError, match=r"no catalog at .*metastore: run the pipeline first"):
        workspace.spark  # noqa: B018
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "metastore").exists()
