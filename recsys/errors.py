"""Errors that the CLI reports as one clear message instead of a stack trace."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class RecsysError(Exception):
    """A problem the user can fix: bad input, bad config, a missing table."""


class ConfigError(RecsysError):
    """Configuration that fails validation; raised before any Spark work starts."""


def describe_validation_error(exc: ValidationError, title: str) -> str:
    """One line per problem, each naming the dotted key it is about."""
    lines = [f"{title}:"]
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "<root>"
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def validated_yaml(path: str | Path, model: type[M], what: str) -> M:
    """The YAML file at ``path`` as ``model``.

    Raises
    ------
    ConfigError
        When the file is missing (``what`` names it), is not YAML, or breaks a rule (one line
        per problem, naming the key).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        return model.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, f"invalid {what} ({path})")) from None
