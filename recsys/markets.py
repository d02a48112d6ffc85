"""The market catalogue (`conf/markets.yaml`): which offers exist where, at what price, named how.

Validated with Babel's CLDR data: currencies are ISO 4217 codes, locales parse, prices use no
more decimals than the currency has minor units (JPY and IDR have none).

Own data may leave out prices (a market then prices none of its offers) and the ``free`` plan,
which is the plan of a user who holds none: the catalogue knows it whether or not a market
lists it, and a market that does not list it never offers it.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from babel import Locale, UnknownLocaleError
from babel.numbers import get_currency_precision, list_currencies
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from recsys.errors import ConfigError, validated_yaml
from recsys.schemas import FREE_PLAN

log = logging.getLogger(__name__)

Continent = Literal["Africa", "Asia", "Europe", "North America", "South America", "Oceania"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OfferType(_Model):
    """A global offer template; a market instantiates it with a local price.

    Own data needs only ``kind``: ``plan_id`` defaults to the offer's id, ``tier`` to 0 and
    ``names`` to none (the id is then the display name)."""

    plan_id: str | None = None
    kind: Literal["plan", "addon", "promo"]
    tier: Annotated[int, Field(ge=0, le=10)] = 0
    period_days: Annotated[int, Field(ge=1, le=366)] = 30
    trial_days: Annotated[int, Field(ge=1, le=366)] | None = None
    discount_months: Annotated[int, Field(ge=1, le=24)] | None = None
    requires_verification: bool = False
    # An add-on's plans. Unset: every plan, the free plan included; the loaded catalogue
    # holds the resolved list (MarketCatalog._consistent).
    requires_plans: tuple[str, ...] | None = None
    names: dict[str, str] = Field(default_factory=dict)

    @field_validator("requires_plans")
    @classmethod
    def _some_plan(cls, plans: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if plans == ():
            raise ValueError(
                "an empty list means no plan can carry the add-on, so it is never offered; "
                "leave requires_plans out to offer it on every plan, the free plan included"
            )
        return plans


class Market(_Model):
    """A market: its currency, locale and offers with their local prices. ``language``
    defaults to the locale's; ``continent``, ``price_level`` and ``user_share`` describe the
    synthetic world and only ``generate-world`` needs them (:meth:`MarketCatalog.for_world`).

    ``offers`` maps each offer to its price per ``period_days``, or is a list of offer ids for
    a market without prices (a null price says the same); a market prices every offer or none.
    """

    name: str | None = None
    continent: Continent | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    locale: str
    language: Annotated[str, Field(pattern=r"^[a-z]{2,3}$")] | None = None
    price_level: Annotated[float, Field(gt=0, le=5)] | None = None
    user_share: Annotated[float, Field(gt=0, le=1)] | None = None
    student_share: Annotated[float, Field(ge=0, le=1)] = 0.0
    student_verification: bool = False
    offers: Annotated[dict[str, Annotated[Decimal, Field(ge=0)] | None], Field(min_length=1)]

    @field_validator("offers", mode="before")
    @classmethod
    def _listed(cls, offers: object) -> object:
        """A list names offers without prices: ``[travel, home]`` is ``{travel: null, ...}``."""
        if not isinstance(offers, list):
            return offers
        if not all(isinstance(offer, str) for offer in offers):
            raise ValueError(
                "a list holds offer ids alone (offers without prices); give prices as a "
                "mapping of offer id to price"
            )
        repeated = sorted({offer for offer in offers if offers.count(offer) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} listed more than once")
        return dict.fromkeys(offers)

    @property
    def is_priced(self) -> bool:
        """Whether the market's offers have prices (all of them, or none has one)."""
        return None not in self.offers.values()

    @model_validator(mode="after")
    def _cldr(self) -> Market:
        if self.currency not in list_currencies():
            raise ValueError(f"currency {self.currency!r} is not an ISO 4217 code")
        try:
            locale = Locale.parse(self.locale)
        except (ValueError, UnknownLocaleError) as exc:
            raise ValueError(f"locale {self.locale!r} is not a CLDR locale: {exc}") from None
        if self.language is not None and locale.language != self.language:
            raise ValueError(f"locale {self.locale!r} is not in language {self.language!r}")
        unpriced = [offer for offer, price in self.offers.items() if price is None]
        if unpriced and len(unpriced) < len(self.offers):
            # expected_value = p_convert x value compares the offers of a market: money for
            # some and a bare probability for others would not compare.
            raise ValueError(
                f"offers: {', '.join(unpriced)} without a price beside offers with one; price "
                "every offer of a market or none"
            )
        digits = get_currency_precision(self.currency)
        for offer, price in self.offers.items():
            if price is not None and -price.as_tuple().exponent > digits:
                raise ValueError(
                    f"offers.{offer}: price {price} has more decimals than {self.currency} "
                    f"allows ({digits})"
                )
        return self if self.language else self.model_copy(update={"language": locale.language})


class MarketCatalog(_Model):
    disclaimer: str = ""
    offer_types: dict[str, OfferType]
    # Letters, digits, "_" and "-": ISO codes (SE), or a branch's code (748L).
    markets: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")], Market]

    @model_validator(mode="after")
    def _consistent(self) -> MarketCatalog:
        # A user who holds no plan is on the free plan (eligibility, user state, features),
        # so the catalogue always knows it; own data need not declare or sell it.
        declared = self.offer_types.get(FREE_PLAN)
        if declared is not None and declared.kind != "plan":
            raise ValueError(
                f"offer_types.{FREE_PLAN}: the free plan is the plan of a user who holds none, "
                f"so its kind is plan, not {declared.kind}"
            )
        declared_types = (
            self.offer_types
            if declared
            else {**self.offer_types, FREE_PLAN: OfferType(kind="plan")}
        )
        types = {
            offer_id: offer.model_copy(update={"plan_id": offer.plan_id or offer_id})
            for offer_id, offer in declared_types.items()
        }
        plans = {t.plan_id for t in types.values() if t.kind == "plan"}
        for offer_id, offer in types.items():
            if offer.kind == "plan" and offer.plan_id != offer_id:
                raise ValueError(f"offer_types.{offer_id}: a plan's offer id must be its plan_id")
            if offer.plan_id not in plans and offer.kind != "addon":
                raise ValueError(f"offer_types.{offer_id}: plan_id {offer.plan_id!r} is no plan")
            unknown = set(offer.requires_plans or ()) - plans
            if unknown:
                raise ValueError(f"offer_types.{offer_id}.requires_plans: unknown {unknown}")
        shares = [m.user_share for m in self.markets.values()]
        if any(share is not None for share in shares):
            if None in shares:
                raise ValueError("markets.*.user_share: set it for every market or for none")
            total = sum(shares)
            if abs(total - 1.0) > 1e-6:
                raise ValueError(f"markets.*.user_share must sum to 1, they sum to {total:.6f}")
        for code, market in self.markets.items():
            for offer_id in market.offers:
                offer = types.get(offer_id)
                if offer is None:
                    raise ValueError(f"markets.{code}.offers.{offer_id}: unknown offer type")
                if offer.names and market.language not in offer.names:
                    raise ValueError(
                        f"offer_types.{offer_id}.names: no name in {market.language!r} "
                        f"(needed by market {code})"
                    )
                if offer.requires_verification and not market.student_verification:
                    raise ValueError(
                        f"markets.{code}.offers.{offer_id}: needs student verification, "
                        f"which {code} does not have"
                    )
        return self.model_copy(
            update={
                "offer_types": {
                    offer_id: offer.model_copy(update={"requires_plans": _carried_by(offer, plans)})
                    for offer_id, offer in types.items()
                }
            }
        )

    def for_world(self) -> MarketCatalog:
        """This catalogue, checked for what the synthetic world needs of every market
        (``continent``, ``price_level``, ``user_share``, the free plan and prices).

        Raises
        ------
        ConfigError
            Naming every market and key that is missing.
        """
        missing = []
        for code, market in self.markets.items():
            missing += [
                f"markets.{code}.{key}"
                for key in ("continent", "price_level", "user_share")
                if getattr(market, key) is None
            ]
            if FREE_PLAN not in market.offers:
                missing.append(f"markets.{code}.offers.{FREE_PLAN}")
            if not market.is_priced:
                missing.append(f"prices in markets.{code}.offers")
        if missing:
            raise ConfigError(
                "the synthetic world needs " + ", ".join(missing) + " in the market catalogue "
                "(own data does not: ingest your files instead of generate-world)"
            )
        return self

    def display_name(self, offer_id: str, language: str) -> str:
        """The offer's name in ``language``; its id where the catalogue names it in none."""
        return self.offer_types[offer_id].names.get(language, offer_id)

    def unreachable_addons(self) -> list[str]:
        """``market.offer``: add-ons that no plan of the market can carry (the free plan is
        every market's, listed or not), so no user of that market is ever eligible for them."""
        return [
            f"{code}.{offer_id}"
            for code, market in self.markets.items()
            for offer_id in market.offers
            if self.offer_types[offer_id].kind == "addon"
            and not set(self.offer_types[offer_id].requires_plans or ())
            & {FREE_PLAN, *market.offers}
        ]

    def unpriced_markets(self) -> list[str]:
        """The markets whose offers have no prices (own data), in catalogue order."""
        return [code for code, market in self.markets.items() if not market.is_priced]

    def plan_ids(self) -> list[str]:
        """The offer types that are plans (a plan's offer id is its plan id)."""
        return [o for o, t in self.offer_types.items() if t.kind == "plan"]

    def plan_tiers(self) -> dict[str, int]:
        return {o: self.offer_types[o].tier for o in self.plan_ids()}


def _carried_by(offer: OfferType, plans: set[str]) -> tuple[str, ...]:
    """The plans an add-on rides on (every plan when unset); none for plans and promotions."""
    if offer.kind != "addon":
        return offer.requires_plans or ()
    return offer.requires_plans if offer.requires_plans is not None else tuple(sorted(plans))


def load_markets(path: str | Path) -> MarketCatalog:
    """The market catalogue at ``path``, validated; warns of add-ons no user can be offered.

    Raises
    ------
    ConfigError
        When the file is missing, not YAML, or breaks a rule (the message names the key).
    """
    catalog = validated_yaml(path, MarketCatalog, "market catalogue")
    unreachable = catalog.unreachable_addons()
    if unreachable:
        log.warning(
            "%s: no user can ever be offered %s: the market sells none of the plans in the "
            "add-on's requires_plans",
            path,
            ", ".join(unreachable),
        )
    return catalog
