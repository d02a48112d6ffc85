"""The base of every config section, and the list validators several sections share."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from recsys.tokens import entry_problem


def distinct(values: list) -> list:
    """A list validator: every value at most once."""
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"listed more than once: {repeated}")
    return values


def token_entries(values: list[str] | None) -> list[str] | None:
    """A token list validator: tokens and prefix patterns (``contract:*``), see recsys.tokens."""
    problems = [p for p in map(entry_problem, values or ()) if p]
    if problems:
        raise ValueError("; ".join(problems))
    return values


class Section(BaseModel):
    """A config section: unknown keys are refused and a loaded value never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
