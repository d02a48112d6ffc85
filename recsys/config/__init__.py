"""Typed configuration: YAML files validated into pydantic models before any Spark work.

:func:`load_config` (``loading``) reads a file with its parents and ``--set`` overrides into a
:class:`Config` (``root``), whose sections live by stage of the flow: ``runtime`` (Spark,
catalog, MLflow, logging), ``data`` (world, ingest, interactions), ``train``, ``recommend``
and ``experiment`` (simulate, analyze). ``catalogue`` checks the names a config gives
against its market catalogue.
"""

from recsys.config.data import IngestConfig, InteractionsConfig, SourceConfig, WorldConfig
from recsys.config.experiment import GUARDRAILS, AnalyzeConfig, SimulateConfig
from recsys.config.loading import load_config, with_ingest
from recsys.config.recommend import (
    Arm,
    EligibilityRules,
    ExperimentConfig,
    PublishConfig,
    RecommendConfig,
    ValueConfig,
)
from recsys.config.root import Config
from recsys.config.runtime import CatalogConfig, LoggingConfig, MlflowConfig, SparkConfig
from recsys.config.train import (
    ALSParams,
    ALSSpec,
    BaselineSpec,
    BPRParams,
    BPRSpec,
    ConversionParams,
    ConversionSpec,
    GateConfig,
    LadderSpec,
    ModelsConfig,
    TrainConfig,
)

__all__ = [
    "GUARDRAILS",
    "ALSParams",
    "ALSSpec",
    "AnalyzeConfig",
    "Arm",
    "BPRParams",
    "BPRSpec",
    "BaselineSpec",
    "CatalogConfig",
    "Config",
    "ConversionParams",
    "ConversionSpec",
    "EligibilityRules",
    "ExperimentConfig",
    "GateConfig",
    "IngestConfig",
    "InteractionsConfig",
    "LadderSpec",
    "LoggingConfig",
    "MlflowConfig",
    "ModelsConfig",
    "PublishConfig",
    "RecommendConfig",
    "SimulateConfig",
    "SourceConfig",
    "SparkConfig",
    "TrainConfig",
    "ValueConfig",
    "WorldConfig",
    "load_config",
    "with_ingest",
]
