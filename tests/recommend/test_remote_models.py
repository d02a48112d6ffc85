"""`recommend` with ``train.model_dir`` on a Hadoop filesystem: the registered version is
staged at ``<model_dir>/registry/<name>/v<version>``, where executors can read it, and the
model loaded from there scores as the local copy does. A ``file://`` URI takes the same
Hadoop FileSystem path as ``s3a://`` or ``hdfs://``."""

from __future__ import annotations

from pathlib import Path

import pytest
from chispa import assert_df_equality
from mlflow import MlflowClient

from recsys import schemas as S
from recsys import tracking
from recsys.errors import RecsysError
from recsys.recommend.served import Served

# It stages and scores the served world's registered version (tests/conftest.py).
pytestmark = pytest.mark.slow


def _with_model_dir(config, model_dir: str):
    return config.model_copy(
        update={"train": config.train.model_copy(update={"model_dir": model_dir})}
    )


def _files(folder: Path) -> set[str]:
    """Relative paths of the files under ``folder``, without Hadoop's checksum files."""
    return {
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and not p.name.endswith(".crc")
    }


@pytest.fixture(scope="module")
def client(served):
    _, config = served
    tracking.setup(config)
    return MlflowClient()


def test_a_remote_model_dir_stages_the_version_there_and_scores_as_the_local_copy(
    spark, served, client, tmp_path
):
    _, config = served
    remote = _with_model_dir(config, f"{tmp_path.as_uri()}/models/")
    local = Served(spark, config, client)
    staged = Served(spark, remote, client)
    # Staging twice replaces the copy rather than nesting a second one inside it.
    staged = Served(spark, remote, client)

    name = config.train.registered_model
    folder = tmp_path / "models" / "registry" / name / f"v{staged.version}"
    local_folder = Path(config.train.model_dir) / "registry" / name / f"v{local.version}"
    saved = next(p.parent for p in local_folder.rglob("model.json") if p.is_dir())
    assert _files(folder) == _files(saved)
    for state_df in staged.model._state().values():
        assert all(f.startswith(folder.as_uri()) for f in state_df.inputFiles())

    candidates_df = (
        spark.table(config.table(S.USERS))
        .select("market", "user_id", "current_plan")
        .join(spark.table(config.table(S.CATALOG)).select("market", "offer_id"), "market", "inner")
    )
    order = ("market", "user_id", "offer_id")
    assert_df_equality(
        staged.model.score(candidates_df).orderBy(*order),
        local.model.score(candidates_df).orderBy(*order),
    )


def test_a_filesystem_spark_cannot_reach_fails_naming_the_uri_and_the_cause(spark, served, client):
    _, config = served
    remote = _with_model_dir(config, "nosuch://bucket/models")
    with pytest.raises(RecsysError, match=r"nosuch://bucket/models/registry/.*No FileSystem"):
        Served(spark, remote, client)
