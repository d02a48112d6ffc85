"""Serving lists: offer values, eligibility rules, experiment arms and publishing."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from recsys.config.section import Section, token_entries
from recsys.vocabulary import CONTROL, HOLDOUT_ARM, TREATMENT


class ValueConfig(Section):
    """What a conversion to an offer is worth, in the market's currency: the revenue over the
    expected tenure (after any free or discounted months), less the promotion's own cost."""

    tenure_months: dict[str, Annotated[float, Field(gt=0, le=120)]] = Field(
        default_factory=lambda: {"default": 6.0},
        description="Offer -> expected months a conversion keeps paying; 'default' for the rest.",
    )
    promo_cost_months: dict[str, Annotated[float, Field(ge=0, le=24)]] = Field(
        default_factory=dict,
        description="Offer -> cost of the promotion in months of the offer's monthly price "
        "(e.g. royalties still paid in a free month).",
    )

    @field_validator("tenure_months")
    @classmethod
    def _has_default(cls, tenure: dict[str, float]) -> dict[str, float]:
        if "default" not in tenure:
            raise ValueError("needs a 'default' entry")
        return tenure


class EligibilityRules(Section):
    """Rules from config, on top of the fixed ones (see :mod:`recsys.eligibility`)."""

    household_min: dict[str, Annotated[int, Field(ge=1, le=20)]] = Field(
        default_factory=dict,
        description="Offer -> least household_size_hint; users whose hint is unknown keep it.",
    )
    exclude: dict[str, list[str]] = Field(
        default_factory=dict, description="Market -> offers never shown there (e.g. paused)."
    )


# recsys.vocabulary.ARMS, spelled out: a Literal type takes literals (tests/test_config.py
# checks that the two agree).
Arm = Literal["treatment", "control", "holdout"]


class ExperimentConfig(Section):
    """Arms by a salted hash of user_id (docs/experiments.md) and the exploration slice."""

    id: str = Field(
        default="plan-offers", pattern=r"^[\w.-]+$", description="Names the test; salts the hash."
    )
    shares: dict[Arm, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: {TREATMENT: 0.45, CONTROL: 0.45, HOLDOUT_ARM: 0.10}
    )
    control: Literal["popularity", "ladder"] = "popularity"
    epsilon: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.0, description="Share of treatment and control users shown a random list."
    )
    markets: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict, description="Market -> its own epsilon."
    )

    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> ExperimentConfig:
        total = sum(self.shares.values())
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"shares must sum to 1, they sum to {total:g}")
        return self

    def share(self, arm: str) -> float:
        return self.shares.get(arm, 0.0)


class PublishConfig(Section):
    keep_snapshots: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=3, description="Snapshots kept in plan_recommendations for rollback."
    )
    max_mix_shift: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.5,
        description="Largest change, against the published snapshot, of any offer's share of "
        "the top slot in a market; more fails validation.",
    )


class RecommendConfig(Section):
    """Serving lists: eligibility, ranking, arms and publishing (docs/recommendations.md)."""

    k: Annotated[int, Field(ge=1, le=20)] = 3
    objective: Literal["propensity", "expected_value"] = "expected_value"
    alias: str = Field(default="champion", description="The registry alias that is served.")
    calibration_users: Annotated[int, Field(ge=1_000)] = Field(
        default=200_000, description="Users sampled (by hash) to fit the calibration."
    )
    audit_share: Annotated[float, Field(ge=0, le=1)] = Field(
        default=1.0, description="Share of users (by hash) whose verdicts go to eligibility_audit."
    )
    reason_tokens: list[str] | None = Field(
        default=None,
        description="Behaviour tokens that may be shown as the reason for an offer; null: "
        "every one. A reason reaches the user: leave out profile attributes (age, gender, "
        "payment method), and set [] where every token is one. An entry ending in * is a "
        "prefix pattern, as in interactions.behaviour_tokens ('genre:*').",
    )
    value: ValueConfig = ValueConfig()
    eligibility: EligibilityRules = EligibilityRules()
    experiment: ExperimentConfig = ExperimentConfig()
    publish: PublishConfig = PublishConfig()

    _token_entries = field_validator("reason_tokens")(token_entries)
