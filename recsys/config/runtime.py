"""Where and how a run executes: Spark, the table catalog, MLflow tracking and logging."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from recsys.config.section import Section


class SparkConfig(Section):
    master: str | None = Field(
        default="local[*]",
        description="Spark master; ignored when spark-submit already chose one.",
    )
    app_name: str = "recsys"
    shuffle_partitions: Annotated[int, Field(ge=1, le=100_000)] | Literal["auto"] = "auto"
    driver_memory: str | None = Field(default=None, pattern=r"^\d+[kmgt]?$")
    hive: bool = Field(default=True, description="Hive-format catalog (persistent tables).")
    checkpoint_dir: str | None = None
    extra: dict[str, str] = Field(default_factory=dict, description="Any other spark.* setting.")

    @field_validator("extra")
    @classmethod
    def _spark_keys(cls, extra: dict[str, str]) -> dict[str, str]:
        bad = [k for k in extra if not k.startswith("spark.")]
        if bad:
            raise ValueError(f"keys must start with 'spark.': {bad}")
        return extra


class CatalogConfig(Section):
    database: str = Field(default="recsys", pattern=r"^[a-z_][a-z0-9_]*$")
    warehouse_dir: str = ".recsys/warehouse"
    metastore_dir: str | None = Field(
        default=".recsys/metastore",
        description="Embedded Derby metastore folder; null on a cluster with its own metastore.",
    )
    keep_versions: Annotated[int, Field(ge=1, le=100)] = 2


class MlflowConfig(Section):
    tracking_uri: str = "sqlite:///.recsys/mlflow.db"
    experiment: str = "recsys"
    artifact_location: str | None = Field(
        default=None,
        description="Where a new experiment keeps its artifacts; null: the tracking server's "
        "default. With a SQLite store MLflow would otherwise use ./mlruns of the cwd.",
    )


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    spark_level: Literal["INFO", "WARN", "ERROR", "FATAL"] = "ERROR"
