"""Errors that the CLI reports as one clear message instead of a stack trace."""

from __future__ import annotations

from pydantic import ValidationError


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
