"""The data a run starts from: the synthetic world, own files, and the interaction
matrices built from either."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from recsys.config.section import Section, distinct, token_entries
from recsys.schemas import BEHAVIOUR_TOKENS, EVENT_TYPES


class WorldConfig(Section):
    """The synthetic subscription world (docs/synthetic-world.md)."""

    users: Annotated[int, Field(ge=100, le=2_000_000_000)] = 100_000
    seed: int = 42
    end_date: dt.date = dt.date(2026, 11, 1)
    days: Annotated[int, Field(ge=14, le=730)] = 90
    users_per_partition: Annotated[int, Field(ge=1_000)] = 250_000
    prior_trial_share: Annotated[float, Field(ge=0, le=1)] = 0.3
    noise: Annotated[float, Field(ge=0, le=5)] = Field(
        default=0.8, description="Std-dev of each user's idiosyncratic taste per offer (logits)."
    )
    legacy_policy: dict[str, dict[str, Annotated[float, Field(ge=0)]]] = Field(
        default_factory=dict,
        description="Logged legacy exposure policy: current plan -> offer -> relative weight "
        "(generate-world needs one; own data does not).",
    )


class SourceConfig(Section):
    """Where raw events come from: a catalog table, or CSV/Parquet files with the events schema."""

    table: str | None = "events"
    path: str | None = None
    format: Literal["csv", "parquet"] = "parquet"

    @model_validator(mode="after")
    def _one_source(self) -> SourceConfig:
        if (self.table is None) == (self.path is None):
            raise ValueError("set exactly one of table and path")
        return self


class IngestConfig(Section):
    """Your own users and events files (README "Bring your own data"), read by ``ingest``.

    With both set, ``pipeline`` runs ingest instead of generate-world and stops after
    recommend. Relative paths are against the current directory.
    """

    events: str | None = Field(default=None, description="Events file, folder or glob.")
    users: str | None = Field(default=None, description="Users file, folder or glob.")
    format: Literal["csv", "parquet", "auto"] = Field(
        default="auto", description="auto: from the extension (.csv, .parquet)."
    )
    max_drop_share: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.5,
        description="Refuse users or events files with fewer rows than the table they "
        "replace by more than this share (1: any size); a synthetic world is replaced freely.",
    )

    @model_validator(mode="after")
    def _both_or_neither(self) -> IngestConfig:
        if (self.events is None) != (self.users is None):
            raise ValueError("set both events and users (own data), or neither (synthetic world)")
        return self

    @property
    def is_set(self) -> bool:
        """Whether the config describes own data rather than the synthetic world."""
        return self.events is not None and self.users is not None


class InteractionsConfig(Section):
    """Building the user-item matrices (docs/interactions.md)."""

    snapshot_date: dt.date | None = Field(
        default=None,
        description="Events strictly before this day (UTC) count; null: the day (UTC) the "
        "config is loaded. load_config fills it in, so every step of a run reads one day.",
    )
    holdout_days: Annotated[int, Field(ge=1, le=365)] = 21
    past_windows: Annotated[int, Field(ge=0, le=52)] = Field(
        default=1,
        description="Windows of holdout_days before the tune split whose user features are "
        "kept too (splits past_1, past_2, ...): supervised families learn from the examples "
        "of each, labelled inside it.",
    )
    half_life_days: Annotated[float, Field(gt=0, le=3650)] | None = Field(
        default=30.0,
        description="Time decay of an event's weight relative to the split; null: none, for "
        "data whose dates are made up (a converted wide table), where a decay would only "
        "tell the splits apart.",
    )
    aggregation: Literal["log", "cap"] = "log"
    cap: Annotated[float, Field(gt=0)] = 10.0
    weights: dict[str, Annotated[float, Field(ge=0, le=1000)]]
    max_values: dict[str, Annotated[float, Field(gt=0)]] = Field(
        description="Largest plausible value per event type; larger is quarantined as absurd."
    )
    max_bad_share: Annotated[float, Field(ge=0, le=1)] = 0.05
    max_drop_share: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.5,
        description="Refuse a snapshot's interactions with fewer rows than the version they "
        "replace (that snapshot's, else the latest earlier one) by more than this share "
        "(1: any size).",
    )
    min_event_ts: dt.datetime = Field(
        default=dt.datetime(2000, 1, 1),
        description="Events before this instant (UTC) are quarantined as early_timestamp: "
        "a date of 1970 or year 1 is a default value, not a real event.",
    )
    max_id_length: Annotated[int, Field(ge=1)] = Field(
        default=256,
        description="User and item ids longer than this many characters are quarantined "
        "as id_too_long.",
    )
    attribution_days: Annotated[float, Field(gt=0, le=90)] = Field(
        default=7.0,
        description="An impression counts as accepted when the user takes the same offer "
        "within this many days of it.",
    )
    source: SourceConfig = SourceConfig()
    behaviour_tokens: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: list(BEHAVIOUR_TOKENS),
        min_length=1,
        description="The non-offer items of the matrix: what a behaviour event's item_id may "
        "be. An entry ending in * is a prefix pattern: 'contract:*' is every token starting "
        "with 'contract:'. '*' alone is refused, and no entry may match an offer id.",
    )
    behaviour_events: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="Behaviour event types of your own data, beyond the built-in ones.",
    )

    _distinct = field_validator("behaviour_tokens", "behaviour_events")(distinct)
    _token_entries = field_validator("behaviour_tokens")(token_entries)

    @model_validator(mode="after")
    def _known_event_types(self) -> InteractionsConfig:
        # Own event types are declared in behaviour_events, not by giving them a weight: a
        # misspelt weight key must fail here rather than leave the real type unweighted.
        built_in = sorted(set(self.behaviour_events) & set(EVENT_TYPES))
        if built_in:
            raise ValueError(f"behaviour_events: {built_in} are built-in event types")
        for key in ("weights", "max_values"):
            unknown = sorted(set(getattr(self, key)) - set(self.event_types) - {"default"})
            if unknown:
                raise ValueError(
                    f"{key}: unknown event types {unknown}; known: {list(self.event_types)} "
                    "(declare your own data's event types in interactions.behaviour_events)"
                )
        return self

    @property
    def event_types(self) -> tuple[str, ...]:
        """The built-in event types, then the behaviour event types of own data."""
        return (*EVENT_TYPES, *self.behaviour_events)
