"""Cross-checks of a config against the market catalogue it names: every plan, offer, market
and behaviour token a section mentions must exist there."""

from __future__ import annotations

from collections.abc import Iterable

from recsys.config.data import InteractionsConfig, WorldConfig
from recsys.config.experiment import AnalyzeConfig
from recsys.config.recommend import RecommendConfig
from recsys.config.root import Config
from recsys.config.train import LadderSpec, TrainConfig
from recsys.errors import ConfigError
from recsys.markets import MarketCatalog
from recsys.tokens import is_pattern, matches, overlaps


def check_catalogue(config: Config, markets: MarketCatalog) -> None:
    """Check the names ``config`` gives against the market catalogue.

    Parameters
    ----------
    config : Config
        A validated config.
    markets : MarketCatalog
        The catalogue its ``markets_file`` names.

    Raises
    ------
    ConfigError
        At the first name the catalogue lacks, naming its dotted key.
    """
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


def _check_policy_offers(world: WorldConfig, markets: MarketCatalog) -> None:
    plans = {t.plan_id for t in markets.offer_types.values()}
    for plan, weights in world.legacy_policy.items():
        if plan not in plans:
            raise ConfigError(f"world.legacy_policy.{plan}: unknown plan (plans: {sorted(plans)})")
        for offer in weights:
            if offer not in markets.offer_types:
                raise ConfigError(f"world.legacy_policy.{plan}.{offer}: unknown offer type")


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
