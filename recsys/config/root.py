"""The whole configuration: one section per stage of the flow, and what loading adds."""

from __future__ import annotations

from pydantic import Field

from recsys.config.data import IngestConfig, InteractionsConfig, WorldConfig
from recsys.config.experiment import AnalyzeConfig, SimulateConfig
from recsys.config.recommend import RecommendConfig
from recsys.config.runtime import CatalogConfig, LoggingConfig, MlflowConfig, SparkConfig
from recsys.config.section import Section
from recsys.config.train import TrainConfig
from recsys.markets import MarketCatalog


class Config(Section):
    """The whole configuration, as :func:`~recsys.config.load_config` returns it."""

    spark: SparkConfig = SparkConfig()
    catalog: CatalogConfig = CatalogConfig()
    mlflow: MlflowConfig = MlflowConfig()
    world: WorldConfig = WorldConfig()
    ingest: IngestConfig = IngestConfig()
    interactions: InteractionsConfig
    train: TrainConfig
    recommend: RecommendConfig = RecommendConfig()
    simulate: SimulateConfig = SimulateConfig()
    analyze: AnalyzeConfig = AnalyzeConfig()
    logging: LoggingConfig = LoggingConfig()
    markets_file: str = "markets.yaml"

    # Filled by load_config, not by the YAML.
    markets: MarketCatalog | None = Field(default=None, exclude=True)
    source: str | None = Field(default=None, exclude=True)

    def table(self, name: str) -> str:
        """Fully qualified name of a catalog table."""
        return f"{self.catalog.database}.{name}"
