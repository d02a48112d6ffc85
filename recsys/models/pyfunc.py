"""Every recsys model as an MLflow pyfunc, so any of them can be registered and loaded.

The logged model carries the saved recsys model as an artifact and the ``recsys`` package as
code, with pinned requirements (so MLflow never starts a Spark session to infer them).
``predict`` takes candidates as a pandas frame and returns their scores; at scale, the
``recommend`` step loads the same saved model into Spark instead.
"""

from __future__ import annotations

import warnings
from importlib.metadata import version
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from recsys.models.base import CANDIDATE_COLUMNS, SCORE_COLUMNS

ARTIFACT = "recsys_model"
_REQUIREMENTS = (
    "pyspark",
    "mlflow",
    "implicit",
    "xgboost-cpu",
    "pandas",
    "numpy",
    "scipy",
    "pyarrow",
    "threadpoolctl",
    "pydantic",
    "pyyaml",
    "babel",
)


def pip_requirements() -> list[str]:
    return [f"{name}=={version(name)}" for name in _REQUIREMENTS]


class RecsysPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.path = context.artifacts[ARTIFACT]

    def predict(
        self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame, params=None
    ) -> pd.DataFrame:
        from pyspark.sql import SparkSession

        from recsys.models.base import load_model

        spark = SparkSession.builder.getOrCreate()
        model = load_model(spark, Path(self.path).as_uri())
        candidates_df = spark.createDataFrame(model_input[list(CANDIDATE_COLUMNS)])
        return model.score(candidates_df).toPandas()


SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", column) for column in CANDIDATE_COLUMNS]),
    outputs=Schema(
        [ColSpec("string", c) for c in SCORE_COLUMNS[:3]] + [ColSpec("double", "score")]
    ),
)


def log_pyfunc(name: str, saved_path: str) -> mlflow.models.model.ModelInfo:
    """Log the model saved at ``saved_path`` (a local folder) under ``name`` in the active run.

    Logged "from code" (the wrapper is named by its file, not pickled), with the ``recsys``
    package alongside, so loading it needs the pinned requirements and nothing else.
    """
    package = Path(__file__).resolve().parents[1]
    with warnings.catch_warnings():
        # The signature is given; an input example would make MLflow score it, which for
        # these models means a Spark job per logged model.
        warnings.filterwarnings("ignore", message=".*input example was not provided.*")
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(Path(__file__).with_name("pyfunc_entry.py")),
            artifacts={ARTIFACT: saved_path},
            code_paths=[str(package)],
            pip_requirements=pip_requirements(),
            signature=SIGNATURE,
        )
