"""The experiment: the simulated A/B test on the synthetic world, and its analysis."""

from __future__ import annotations

import itertools
from typing import Annotated, Literal

from pydantic import Field, field_validator

from recsys.config.section import Section


class SimulateConfig(Section):
    """The demo's A/B test on the synthetic world: who looks at which slot, for how long."""

    window_days: Annotated[int, Field(ge=1, le=365)] = 28
    seed: int = 2026
    reach: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.6, description="Share of users who open a marketing surface in the window."
    )
    position_bias: list[Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: [1.0, 0.6, 0.4],
        min_length=1,
        description="Chance that a user on the surface looks at rank 1, 2, ...; the last "
        "value holds for lower ranks.",
    )
    organic_rate: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.1,
        description="Share of users who visit the plan page on their own, in every arm.",
    )
    pre_days: Annotated[int, Field(ge=1, le=365)] = Field(
        default=28, description="Days before the window that CUPED's covariates cover."
    )

    @field_validator("position_bias")
    @classmethod
    def _non_increasing(cls, bias: list[float]) -> list[float]:
        if any(lower > higher for higher, lower in itertools.pairwise(bias)):
            raise ValueError(f"must not increase with rank, got {bias}")
        return bias


GUARDRAILS = ("cancellation", "downgrade", "trial_abuse")


class AnalyzeConfig(Section):
    """Reading the experiment (docs/experiments.md): metrics, tests and the decision rule."""

    success_metric: Literal["conversion", "revenue"] = Field(
        default="revenue", description="What must improve significantly to ship."
    )
    level: Annotated[float, Field(gt=0.5, lt=1)] = 0.95
    srm_alpha: Annotated[float, Field(gt=0, lt=0.5)] = Field(
        default=0.001, description="A sample-ratio test below this marks the result invalid."
    )
    cuped: bool = Field(
        default=True, description="Decide on the CUPED-adjusted estimate (the raw is reported)."
    )
    mde: Annotated[float, Field(gt=0, le=10)] = Field(
        default=0.02,
        description="Smallest relative lift worth detecting: sizes the 'keep testing' advice.",
    )
    power: Annotated[float, Field(gt=0.5, lt=1)] = 0.8
    guardrails: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: dict.fromkeys(GUARDRAILS, 0.005),
        description="Guardrail -> non-inferiority margin: the largest tolerated increase of "
        "its rate, treatment minus control.",
    )
    reference_offer: str = Field(
        default="premium_individual",
        description="Pooled revenue is counted in months of this offer's price in each market.",
    )
    report_dir: str = Field(default=".recsys/reports", description="Where reports are written.")

    @field_validator("guardrails")
    @classmethod
    def _known_guardrails(cls, margins: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(margins) - set(GUARDRAILS))
        if unknown:
            raise ValueError(f"unknown guardrails {unknown}; known: {list(GUARDRAILS)}")
        return margins
