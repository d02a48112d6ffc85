"""Training: the model families and their search, the candidate, and the promotion gate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from recsys.config.section import Section, distinct


class ALSParams(Section):
    """Implicit-feedback ALS (Spark MLlib or ``implicit``): confidence = 1 + alpha * value."""

    factors: Annotated[int, Field(ge=1, le=1024)] = 16
    regularization: Annotated[float, Field(ge=0)] = 0.1
    alpha: Annotated[float, Field(gt=0)] = 10.0
    iterations: Annotated[int, Field(ge=1, le=1000)] = 10
    prior_weight: Annotated[float, Field(ge=0)] = Field(
        default=0.0, description="Weight of the market's log offer share added to affinity."
    )


class BPRParams(Section):
    """Bayesian personalised ranking (``implicit``), trained by SGD on sampled pairs."""

    factors: Annotated[int, Field(ge=1, le=1024)] = 16
    learning_rate: Annotated[float, Field(gt=0, le=10)] = 0.05
    regularization: Annotated[float, Field(ge=0)] = 0.01
    iterations: Annotated[int, Field(ge=1, le=10_000)] = 100
    prior_weight: Annotated[float, Field(ge=0)] = Field(
        default=0.0, description="Weight of the market's log offer share added to affinity."
    )


class _FactorModelSpec(Section):
    """A collaborative-filtering family: default hyperparameters, the values the search may
    try instead, and per-market pins (a market's pin wins over the default and the search)."""

    enabled: bool = True
    params: BaseModel
    search: dict[str, list[float]] = Field(default_factory=dict)
    markets: dict[str, dict[str, float]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _valid_values(self) -> _FactorModelSpec:
        known = list(type(self.params).model_fields)
        for key, values in self.search.items():
            if key not in known:
                raise ValueError(f"search.{key}: unknown parameter; known: {known}")
            if not values:
                raise ValueError(f"search.{key}: give at least one value")
            for value in values:
                self._check(f"search.{key}", {key: value})
        for market, pins in self.markets.items():
            unknown = sorted(set(pins) - set(known))
            if unknown:
                raise ValueError(f"markets.{market}: unknown parameters {unknown}; known: {known}")
            self._check(f"markets.{market}", pins)
        return self

    def _check(self, where: str, changes: Mapping[str, float]) -> None:
        try:
            self.with_params(changes)
        except ValidationError as exc:
            problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"{where}: {problems}") from None

    def with_params(self, changes: Mapping[str, float]) -> BaseModel:
        """The default parameters with ``changes`` applied, validated."""
        return type(self.params).model_validate({**self.params.model_dump(), **changes})


class ALSSpec(_FactorModelSpec):
    params: ALSParams = ALSParams()


class BPRSpec(_FactorModelSpec):
    params: BPRParams = BPRParams()


class ConversionParams(Section):
    """The conversion model's gradient-boosted trees (XGBoost) and example weighting."""

    n_estimators: Annotated[int, Field(ge=1, le=5000)] = 200
    max_depth: Annotated[int, Field(ge=1, le=16)] = 4
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.1
    min_child_weight: Annotated[float, Field(ge=0)] = 1.0
    reg_lambda: Annotated[float, Field(ge=0)] = 1.0
    ips: bool = Field(
        default=False, description="Weight logged impressions by 1 / propensity (clipped)."
    )
    max_weight: Annotated[float, Field(ge=1)] = Field(
        default=20.0, description="The clip of an impression's inverse-propensity weight."
    )
    offer_id_feature: bool | Literal["auto"] = Field(
        default="auto",
        description="The offer's id as a feature beside its attributes; auto: where some "
        "offers of a market have the same attributes (kind, tier, period, trial, discount, "
        "relative price), which the model could not tell apart otherwise.",
    )
    organic_views: bool = Field(
        default=False, description="Learn from plan-page views too, beside impressions."
    )


class ConversionSpec(_FactorModelSpec):
    """The supervised conversion family (``recsys/models/conversion.py``)."""

    params: ConversionParams = ConversionParams()
    search: dict[str, list[float | bool]] = Field(default_factory=dict)
    rows: Literal["auto", "impressions", "candidates"] = Field(
        default="auto",
        description="What it learns from: logged impressions, every eligible offer, or "
        "impressions wherever the offer_log has them (auto).",
    )
    experiments: list[str] = Field(
        default_factory=list,
        description="Experiments whose logs (experiment_exposures / experiment_outcomes) the "
        "served model also learns from: each offer a user looked at, labelled by whether "
        "they took it, with the user's features at the experiment's start. For logs that do "
        "not reach the event stream, such as simulate's.",
    )
    value_events: list[str] = Field(
        default_factory=list,
        description="Event types whose value says something about the user, beyond how "
        "often the event happens: each becomes a feature, the mean value of the user's events "
        "of that type before the moment. List only types whose value measures the user (the "
        "synthetic world's household_colisten: how many listened together), not noise such "
        "as the minutes of one listening session.",
    )


class BaselineSpec(Section):
    enabled: bool = True


class LadderSpec(Section):
    """The rule-based upgrade ladder: what a marketer configures by hand. Left out of a
    config, there is none; its names are checked against the catalogue only when enabled."""

    enabled: bool = True
    steps: dict[str, list[str]] = Field(
        default_factory=dict, description="Current plan -> the offers to show, best first."
    )
    signals: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Behaviour token -> offers it moves ahead of the plan's steps, best first.",
    )

    @model_validator(mode="after")
    def _steps_when_enabled(self) -> LadderSpec:
        if self.enabled and not self.steps:
            raise ValueError(
                "the ladder is enabled but has no steps: set steps (current plan -> offers) "
                "or enabled: false"
            )
        return self


class ModelsConfig(Section):
    popularity: BaselineSpec = BaselineSpec()
    ladder: LadderSpec = LadderSpec(enabled=False)
    spark_als: ALSSpec = ALSSpec()
    implicit_als: ALSSpec = ALSSpec()
    implicit_bpr: BPRSpec = BPRSpec()
    conversion: ConversionSpec = ConversionSpec()


class GateConfig(Section):
    """Promotion to ``champion``: beat the champion and every baseline on ``metric@k``, with
    the lower end of the paired bootstrap interval above ``margin`` and above
    ``min_relative_gain`` x the opponent's figure.

    ``policy_value`` is the doubly-robust off-policy value of a model's top-k lists on the
    holdout window's logged impressions (``recsys/evaluation/policy_value.py``); ``auto``
    is ``policy_value`` where the offer_log has impressions, else ``ndcg``."""

    metric: Literal[
        "auto", "policy_value", "precision", "recall", "hit_rate", "ndcg", "map", "mrr"
    ] = "auto"
    k: Annotated[int, Field(ge=1, le=100)] = 3
    position_bias: list[Annotated[float, Field(gt=0, le=1)]] = Field(
        default=[1.0, 0.6, 0.4],
        min_length=1,
        description="Chance a user looks at rank r (the last repeats), for policy_value.",
    )
    margin: Annotated[float, Field(ge=0)] = Field(
        default=0.0, description="The least gain, in the metric's units."
    )
    min_relative_gain: Annotated[float, Field(ge=0, lt=1)] = Field(
        default=0.01,
        description="The least gain as a share of the opponent's figure: a lower bound of "
        "+0.002 on an NDCG of 0.85 is real but not worth a switch of model.",
    )
    level: Annotated[float, Field(gt=0.5, lt=1)] = 0.95
    replicates: Annotated[int, Field(ge=50, le=10_000)] = 200

    @property
    def column(self) -> str:
        if self.metric == "auto":
            raise ValueError("train.gate.metric auto is resolved by train before it is read")
        if self.metric == "policy_value":
            return "policy_value"
        return f"{self.metric}_at_{self.k}"


class TrainConfig(Section):
    """Training, evaluation, search and promotion (docs/models.md)."""

    ks: list[Annotated[int, Field(ge=1, le=100)]] = Field(default=[1, 3, 5], min_length=1)
    seed: int = 7
    max_trials: Annotated[int, Field(ge=1, le=1000)] = 4
    search_users: Annotated[int, Field(ge=1_000)] | None = Field(
        default=200_000,
        description="Trials are fitted and scored on a hashed sample of about this many "
        "users when the tune split has more; null: every user. The chosen parameters are "
        "refitted on every user.",
    )
    registered_model: str = Field(default="recsys-plan-recommender", pattern=r"^[\w.-]+$")
    model_dir: str = Field(
        default=".recsys/models",
        description="Where fitted models are saved before MLflow logs them; shared storage "
        "on a cluster.",
    )
    report_dir: str = Field(default=".recsys/reports", description="Where reports are written.")
    resume: bool = Field(
        default=False,
        description="Go on with the latest train run of this snapshot that did not finish "
        "(killed, failed) and had the same settings and rows: the families it finished are "
        "read back, not fitted again. Off: every run starts over.",
    )
    gate: GateConfig = GateConfig()
    models: ModelsConfig = ModelsConfig()
    candidate: str = Field(
        default="auto",
        description="The family that goes to the gate. auto: the best on validation by the "
        "gate's metric, or the simplest family whose gap to it the paired interval cannot "
        "tell from zero; a family name: that family, whatever validation says (to put a "
        "family you mean to test before the gate and the approver).",
    )

    _distinct_ks = field_validator("ks")(distinct)

    @model_validator(mode="after")
    def _gate_k_is_evaluated(self) -> TrainConfig:
        if self.gate.k not in self.ks:
            raise ValueError(f"gate.k={self.gate.k} must be one of ks={self.ks}")
        return self

    @model_validator(mode="after")
    def _candidate_is_enabled(self) -> TrainConfig:
        if self.candidate == "auto":
            return self
        enabled = [f for f in type(self.models).model_fields if getattr(self.models, f).enabled]
        if self.candidate not in enabled:
            raise ValueError(
                f"candidate {self.candidate!r} is not an enabled family (train.models): "
                f"auto or one of {enabled}"
            )
        return self
