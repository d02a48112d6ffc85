"""Typed configuration: YAML files validated into pydantic models before any Spark work.

A config file may name a parent with ``extends: base.yaml`` (resolved next to the file);
mappings merge key by key, the child winning. ``--set dotted.key=value`` overrides are applied
last, their values parsed as YAML scalars (``--set world.users=50_000`` is an int).
Unknown keys and out-of-range values raise :class:`ConfigError` naming the dotted key.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from recsys.errors import ConfigError, describe_validation_error
from recsys.markets import MarketCatalog, load_markets
from recsys.schemas import BEHAVIOUR_TOKENS, EVENT_TYPES
from recsys.tokens import entry_problem, is_pattern, matches, overlaps


def _distinct(values: list) -> list:
    """A list validator: every value at most once."""
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"listed more than once: {repeated}")
    return values


def _token_entries(values: list[str] | None) -> list[str] | None:
    """A token list validator: tokens and prefix patterns (``contract:*``), see recsys.tokens."""
    problems = [p for p in map(entry_problem, values or ()) if p]
    if problems:
        raise ValueError("; ".join(problems))
    return values


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SparkConfig(_Section):
    master: str | None = Field(
        default="local[*]",
        description="Spark master; ignored when spark-submit already chose one.",
    )
    app_name: str = "recsys"
    shuffle_partitions: Annotated[int, Field(ge=1, le=100_000)] | Literal["auto"] = "auto"
    driver_memory: str | None = Field(default=None, pattern=r"^\d+[kmgt]?$")
    hive: bool = Field(default=True, description="Hive-format catalog (persistent tables).")
    checkpoint_dir: str | None = None
    extra: dict[str, str] = Field(default_factory=dict, description="Any other spark.* setting.")

    @field_validator("extra")
    @classmethod
    def _spark_keys(cls, extra: dict[str, str]) -> dict[str, str]:
        bad = [k for k in extra if not k.startswith("spark.")]
        if bad:
            raise ValueError(f"keys must start with 'spark.': {bad}")
        return extra


class CatalogConfig(_Section):
    database: str = Field(default="recsys", pattern=r"^[a-z_][a-z0-9_]*$")
    warehouse_dir: str = ".recsys/warehouse"
    metastore_dir: str | None = Field(
        default=".recsys/metastore",
        description="Embedded Derby metastore folder; null on a cluster with its own metastore.",
    )
    keep_versions: Annotated[int, Field(ge=1, le=100)] = 2


class MlflowConfig(_Section):
    tracking_uri: str = "sqlite:///.recsys/mlflow.db"
    experiment: str = "recsys"
    artifact_location: str | None = Field(
        default=None,
        description="Where a new experiment keeps its artifacts; null: the tracking server's "
        "default. With a SQLite store MLflow would otherwise use ./mlruns of the cwd.",
    )


class WorldConfig(_Section):
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


class SourceConfig(_Section):
    """Where raw events come from: a catalog table, or CSV/Parquet files with the events schema."""

    table: str | None = "events"
    path: str | None = None
    format: Literal["csv", "parquet"] = "parquet"

    @model_validator(mode="after")
    def _one_source(self) -> SourceConfig:
        if (self.table is None) == (self.path is None):
            raise ValueError("set exactly one of table and path")
        return self


class IngestConfig(_Section):
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


class InteractionsConfig(_Section):
    """Building the user-item matrices (docs/interactions.md)."""

    snapshot_date: dt.date | None = Field(
        default=None, description="Events strictly before this day (UTC) count; null: today."
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

    _distinct = field_validator("behaviour_tokens", "behaviour_events")(_distinct)
    _token_entries = field_validator("behaviour_tokens")(_token_entries)

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

    def snapshot(self) -> dt.date:
        return self.snapshot_date or dt.datetime.now(dt.UTC).date()


class ALSParams(_Section):
    """Implicit-feedback ALS (Spark MLlib or ``implicit``): confidence = 1 + alpha * value."""

    factors: Annotated[int, Field(ge=1, le=1024)] = 16
    regularization: Annotated[float, Field(ge=0)] = 0.1
    alpha: Annotated[float, Field(gt=0)] = 10.0
    iterations: Annotated[int, Field(ge=1, le=1000)] = 10
    prior_weight: Annotated[float, Field(ge=0)] = Field(
        default=0.0, description="Weight of the market's log offer share added to affinity."
    )


class BPRParams(_Section):
    """Bayesian personalised ranking (``implicit``), trained by SGD on sampled pairs."""

    factors: Annotated[int, Field(ge=1, le=1024)] = 16
    learning_rate: Annotated[float, Field(gt=0, le=10)] = 0.05
    regularization: Annotated[float, Field(ge=0)] = 0.01
    iterations: Annotated[int, Field(ge=1, le=10_000)] = 100
    prior_weight: Annotated[float, Field(ge=0)] = Field(
        default=0.0, description="Weight of the market's log offer share added to affinity."
    )


class _FactorModelSpec(_Section):
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


class ConversionParams(_Section):
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


class BaselineSpec(_Section):
    enabled: bool = True


class LadderSpec(_Section):
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


class ModelsConfig(_Section):
    popularity: BaselineSpec = BaselineSpec()
    ladder: LadderSpec = LadderSpec(enabled=False)
    spark_als: ALSSpec = ALSSpec()
    implicit_als: ALSSpec = ALSSpec()
    implicit_bpr: BPRSpec = BPRSpec()
    conversion: ConversionSpec = ConversionSpec()


class GateConfig(_Section):
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


class TrainConfig(_Section):
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

    _distinct_ks = field_validator("ks")(_distinct)

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


class ValueConfig(_Section):
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


class EligibilityRules(_Section):
    """Rules from config, on top of the fixed ones (see :mod:`recsys.eligibility`)."""

    household_min: dict[str, Annotated[int, Field(ge=1, le=20)]] = Field(
        default_factory=dict,
        description="Offer -> least household_size_hint; users whose hint is unknown keep it.",
    )
    exclude: dict[str, list[str]] = Field(
        default_factory=dict, description="Market -> offers never shown there (e.g. paused)."
    )


Arm = Literal["treatment", "control", "holdout"]


class ExperimentConfig(_Section):
    """Arms by a salted hash of user_id (docs/experiments.md) and the exploration slice."""

    id: str = Field(
        default="plan-offers", pattern=r"^[\w.-]+$", description="Names the test; salts the hash."
    )
    shares: dict[Arm, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: {"treatment": 0.45, "control": 0.45, "holdout": 0.10}
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


class PublishConfig(_Section):
    keep_snapshots: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=3, description="Snapshots kept in plan_recommendations for rollback."
    )
    max_mix_shift: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.5,
        description="Largest change, against the published snapshot, of any offer's share of "
        "the top slot in a market; more fails validation.",
    )


class RecommendConfig(_Section):
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

    _token_entries = field_validator("reason_tokens")(_token_entries)


class SimulateConfig(_Section):
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


class AnalyzeConfig(_Section):
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


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    spark_level: Literal["INFO", "WARN", "ERROR", "FATAL"] = "ERROR"


class Config(_Section):
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


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> Config:
    """Load, merge, override and validate a config file, and its market catalogue.

    Relative paths in ``catalog`` and the SQLite tracking URI are made absolute against the
    current directory, so every process of a run (and a later ``mlflow ui``) agrees on them.
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
    _check_policy_offers(config.world, markets)
    _check_behaviour_tokens(config.interactions, markets)
    _check_train_names(
        config.train,
        markets,
        config.interactions.behaviour_tokens,
        config.interactions.event_types,
    )
    _check_recommend_names(config.recommend, markets)
    _check_reason_tokens(config.recommend, config.interactions.behaviour_tokens)
    if not config.ingest.is_set:  # analyze, which reads it, runs on the synthetic world only
        _check_reference_offer(config.analyze, markets)
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


def _check_policy_offers(world: WorldConfig, markets: MarketCatalog) -> None:
    plans = {t.plan_id for t in markets.offer_types.values()}
    for plan, weights in world.legacy_policy.items():
        if plan not in plans:
            raise ConfigError(f"world.legacy_policy.{plan}: unknown plan (plans: {sorted(plans)})")
        for offer in weights:
            if offer not in markets.offer_types:
                raise ConfigError(f"world.legacy_policy.{plan}.{offer}: unknown offer type")


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


def _check_behaviour_tokens(interactions: InteractionsConfig, markets: MarketCatalog) -> None:
    tokens = interactions.behaviour_tokens
    clash = sorted(t for t in tokens if not is_pattern(t) and t in markets.offer_types)
    if clash:
        raise ConfigError(
            f"interactions.behaviour_tokens: {clash} are offer ids of the market catalogue; "
            "an item is either an offer or a behaviour token"
        )
    for pattern in filter(is_pattern, tokens):
        offers = sorted(o for o in markets.offer_types if matches(o, [pattern]))
        if offers:
            raise ConfigError(
                f"interactions.behaviour_tokens: the pattern {pattern!r} matches offer ids "
                f"of the market catalogue {offers}; an item is either an offer or a behaviour "
                "token, so use a longer prefix or list the tokens"
            )


def _check_train_names(
    train: TrainConfig,
    markets: MarketCatalog,
    behaviour_tokens: Iterable[str],
    event_types: Iterable[str],
) -> None:
    if train.models.ladder.enabled:  # a disabled ladder is never read: its names need not match
        _check_ladder_names(train.models.ladder, markets, list(behaviour_tokens))
    unknown = sorted(set(train.models.conversion.value_events) - set(event_types))
    if unknown:
        raise ConfigError(
            f"train.models.conversion.value_events: unknown event types {unknown}; known: "
            f"{list(event_types)} (declare your own in interactions.behaviour_events)"
        )
    for family in ("spark_als", "implicit_als", "implicit_bpr"):
        for market in getattr(train.models, family).markets:
            if market not in markets.markets:
                raise ConfigError(f"train.models.{family}.markets.{market}: unknown market")


def _check_ladder_names(ladder: LadderSpec, markets: MarketCatalog, tokens: list[str]) -> None:
    plans = {t.plan_id for t in markets.offer_types.values()}
    for plan, offers in ladder.steps.items():
        if plan not in plans:
            raise ConfigError(f"train.models.ladder.steps.{plan}: unknown plan")
        for offer in offers:
            if offer not in markets.offer_types:
                raise ConfigError(f"train.models.ladder.steps.{plan}: unknown offer {offer!r}")
    for token, offers in ladder.signals.items():
        if is_pattern(token):
            raise ConfigError(
                f"train.models.ladder.signals.{token}: a signal names one behaviour token, "
                "not a pattern"
            )
        if not matches(token, tokens):
            raise ConfigError(
                f"train.models.ladder.signals.{token}: unknown behaviour token; "
                f"known (interactions.behaviour_tokens): {tokens}"
            )
        for offer in offers:
            if offer not in markets.offer_types:
                raise ConfigError(f"train.models.ladder.signals.{token}: unknown offer {offer!r}")


def _check_reason_tokens(recommend: RecommendConfig, behaviour_tokens: Iterable[str]) -> None:
    behaviour_tokens = list(behaviour_tokens)
    unknown = sorted(t for t in recommend.reason_tokens or () if not overlaps(t, behaviour_tokens))
    if unknown:
        raise ConfigError(
            f"recommend.reason_tokens: {unknown} are not behaviour tokens "
            "(interactions.behaviour_tokens)"
        )


def _check_recommend_names(recommend: RecommendConfig, markets: MarketCatalog) -> None:
    offers = set(markets.offer_types)
    for key in ("tenure_months", "promo_cost_months"):
        for offer in getattr(recommend.value, key):
            if offer != "default" and offer not in offers:
                raise ConfigError(f"recommend.value.{key}.{offer}: unknown offer type")
    for offer in recommend.eligibility.household_min:
        if offer not in offers:
            raise ConfigError(f"recommend.eligibility.household_min.{offer}: unknown offer type")
    for market, excluded in recommend.eligibility.exclude.items():
        if market not in markets.markets:
            raise ConfigError(f"recommend.eligibility.exclude.{market}: unknown market")
        for offer in excluded:
            if offer not in markets.markets[market].offers:
                raise ConfigError(
                    f"recommend.eligibility.exclude.{market}: {offer!r} is not sold in {market}"
                )
    for market in recommend.experiment.markets:
        if market not in markets.markets:
            raise ConfigError(f"recommend.experiment.markets.{market}: unknown market")


def _check_reference_offer(analyze: AnalyzeConfig, markets: MarketCatalog) -> None:
    missing = sorted(
        m for m, market in markets.markets.items() if analyze.reference_offer not in market.offers
    )
    if missing:
        raise ConfigError(
            f"analyze.reference_offer: {analyze.reference_offer!r} is not sold in {missing}; "
            "pooled revenue needs an offer every market sells"
        )


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
