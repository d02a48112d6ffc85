"""Typed configuration: YAML files validated into pydantic models before any Spark work."""

from recsys.config.train import *  # noqa: F403
from recsys.config.train import Config, load_config, with_ingest

__all__ = ["Config", "load_config", "with_ingest"]
