"""Reading a config: YAML files, their parents, ``--set`` overrides, then validation.

A config file may name a parent with ``extends: base.yaml`` (resolved next to the file);
mappings merge key by key, the child winning. ``--set dotted.key=value`` overrides are applied
last, their values parsed as YAML scalars (``--set world.users=50_000`` is an int).
Unknown keys and out-of-range values raise :class:`ConfigError` naming the dotted key.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from recsys.config.catalogue import check_catalogue
from recsys.config.data import IngestConfig, InteractionsConfig
from recsys.config.root import Config
from recsys.errors import ConfigError, describe_validation_error
from recsys.markets import load_markets


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> Config:
    """Load, merge, override and validate a config file, and its market catalogue.

    Relative paths in ``catalog`` and the SQLite tracking URI are made absolute against the
    current directory, so every process of a run (and a later ``mlflow ui``) agrees on them.
    A null ``interactions.snapshot_date`` becomes today's date (UTC) here, once: every step
    of the run reads that one day, even when the run goes past midnight.

    Parameters
    ----------
    path : str or Path
        The config file; ``extends`` in it names a parent file next to it.
    overrides : iterable of str
        ``dotted.key=value`` pairs (``--set``), applied after the files, values read as YAML.

    Returns
    -------
    Config
        The validated config, with ``markets`` (the catalogue) and ``source`` (``path``) set.

    Raises
    ------
    ConfigError
        A missing or malformed file, or a bad value, naming the dotted key.
    """
    path = Path(path)
    raw = _read_with_parents(path, seen=())
    for item in overrides:
        _apply_override(raw, item)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(
            describe_validation_error(exc, f"invalid configuration ({path})")
        ) from None

    markets = load_markets(config.markets_file)
    check_catalogue(config, markets)
    catalog = config.catalog.model_copy(
        update={
            "warehouse_dir": _absolute(config.catalog.warehouse_dir),
            "metastore_dir": config.catalog.metastore_dir
            and _absolute(config.catalog.metastore_dir),
        }
    )
    train = config.train.model_copy(
        update={
            "model_dir": _absolute(config.train.model_dir),
            "report_dir": _absolute(config.train.report_dir),
        }
    )
    mlflow = config.mlflow.model_copy(
        update={
            "tracking_uri": _absolute_sqlite(config.mlflow.tracking_uri),
            "artifact_location": config.mlflow.artifact_location
            and _absolute_uri(config.mlflow.artifact_location),
        }
    )
    return config.model_copy(
        update={
            "catalog": catalog,
            "ingest": _absolute_ingest(config.ingest),
            "interactions": _with_snapshot(config.interactions),
            "mlflow": mlflow,
            "train": train,
            "markets": markets,
            "source": str(path),
        }
    )


def _read_with_parents(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: 'extends' forms a cycle")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    if isinstance(data.get("markets_file"), str):
        # Relative to the file that names it, so a config extending base.yaml from
        # elsewhere still finds conf/markets.yaml.
        data["markets_file"] = str((path.parent / data["markets_file"]).resolve())
    parent = data.pop("extends", None)
    if parent is None:
        return data
    base = _read_with_parents(path.parent / parent, (*seen, path.resolve()))
    return _merge(base, data)


def _merge(base: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(base))
    for key, value in child.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects dotted.key=value, got {item!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: value is not valid YAML: {exc}") from None
    *parents, leaf = key.strip().split(".")
    node = raw
    for depth, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {'.'.join(parents[: depth + 1])} is not a section")
        node = child
    node[leaf] = value


def with_ingest(
    config: Config,
    *,
    events: str | None = None,
    users: str | None = None,
    fmt: str | None = None,
) -> Config:
    """``config`` with the given ingest settings (command-line flags) replacing its own."""
    given = {"events": events, "users": users, "format": fmt}
    raw = {**config.ingest.model_dump(), **{k: v for k, v in given.items() if v is not None}}
    try:
        ingest = IngestConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "\n".join(
            f"  {'.'.join(['ingest', *map(str, e['loc'])])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid ingest settings (flags and config):\n{problems}") from None
    return config.model_copy(update={"ingest": _absolute_ingest(ingest)})


def _with_snapshot(interactions: InteractionsConfig) -> InteractionsConfig:
    if interactions.snapshot_date is not None:
        return interactions
    today = dt.datetime.now(dt.UTC).date()
    return interactions.model_copy(update={"snapshot_date": today})


def _absolute_ingest(ingest: IngestConfig) -> IngestConfig:
    return ingest.model_copy(
        update={
            "events": ingest.events and _absolute(ingest.events),
            "users": ingest.users and _absolute(ingest.users),
        }
    )


def _absolute(path: str) -> str:
    return path if "://" in path else str(Path(path).resolve())


def _absolute_uri(path: str) -> str:
    return path if "://" in path else Path(path).resolve().as_uri()


def _absolute_sqlite(uri: str) -> str:
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri
