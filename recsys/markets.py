"""The market catalogue (`conf/markets.yaml`): which offers exist where, at what price, named how.

Validated with Babel's CLDR data: currencies are ISO 4217 codes, locales parse, prices use no
more decimals than the currency has minor units (JPY and IDR have none).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

import yaml
from babel import Locale, UnknownLocaleError
from babel.numbers import get_currency_precision, list_currencies
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from recsys.errors import ConfigError, describe_validation_error

Continent = Literal["Africa", "Asia", "Europe", "North America", "South America", "Oceania"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OfferType(_Model):
    """A global offer template; a market instantiates it with a local price."""

    plan_id: str
    kind: Literal["plan", "addon", "promo"]
    tier: Annotated[int, Field(ge=0, le=10)]
    period_days: Annotated[int, Field(ge=1, le=366)] = 30
    trial_days: Annotated[int, Field(ge=1, le=366)] | None = None
    discount_months: Annotated[int, Field(ge=1, le=24)] | None = None
    requires_verification: bool = False
    requires_plans: tuple[str, ...] = ()
    names: dict[str, str]


class Market(_Model):
    name: str
    continent: Continent
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    locale: str
    language: Annotated[str, Field(pattern=r"^[a-z]{2,3}$")]
    price_level: Annotated[float, Field(gt=0, le=5)]
    user_share: Annotated[float, Field(gt=0, le=1)]
    student_share: Annotated[float, Field(ge=0, le=1)]
    student_verification: bool
    offers: dict[str, Annotated[Decimal, Field(ge=0)]]

    @model_validator(mode="after")
    def _cldr(self) -> Market:
        if self.currency not in list_currencies():
            raise ValueError(f"currency {self.currency!r} is not an ISO 4217 code")
        try:
            locale = Locale.parse(self.locale)
        except (ValueError, UnknownLocaleError) as exc:
            raise ValueError(f"locale {self.locale!r} is not a CLDR locale: {exc}") from None
        if locale.language != self.language:
            raise ValueError(f"locale {self.locale!r} is not in language {self.language!r}")
        digits = get_currency_precision(self.currency)
        for offer, price in self.offers.items():
            if -price.as_tuple().exponent > digits:
                raise ValueError(
                    f"offers.{offer}: price {price} has more decimals than {self.currency} "
                    f"allows ({digits})"
                )
        return self


class MarketCatalog(_Model):
    disclaimer: str
    offer_types: dict[str, OfferType]
    markets: dict[Annotated[str, Field(pattern=r"^[A-Z]{2}$")], Market]

    @model_validator(mode="after")
    def _consistent(self) -> MarketCatalog:
        plans = {t.plan_id for t in self.offer_types.values() if t.kind == "plan"}
        for offer_id, offer in self.offer_types.items():
            if offer.kind == "plan" and offer.plan_id != offer_id:
                raise ValueError(f"offer_types.{offer_id}: a plan's offer id must be its plan_id")
            if offer.plan_id not in plans and offer.kind != "addon":
                raise ValueError(f"offer_types.{offer_id}: plan_id {offer.plan_id!r} is no plan")
            unknown = set(offer.requires_plans) - plans
            if unknown:
                raise ValueError(f"offer_types.{offer_id}.requires_plans: unknown {unknown}")
        total = sum(m.user_share for m in self.markets.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"markets.*.user_share must sum to 1, they sum to {total:.6f}")
        for code, market in self.markets.items():
            for offer_id in market.offers:
                offer = self.offer_types.get(offer_id)
                if offer is None:
                    raise ValueError(f"markets.{code}.offers.{offer_id}: unknown offer type")
                if market.language not in offer.names:
                    raise ValueError(
                        f"offer_types.{offer_id}.names: no name in {market.language!r} "
                        f"(needed by market {code})"
                    )
                if offer.requires_verification and not market.student_verification:
                    raise ValueError(
                        f"markets.{code}.offers.{offer_id}: needs student verification, "
                        f"which {code} does not have"
                    )
            if "free" not in market.offers:
                raise ValueError(f"markets.{code}.offers: every market needs the free plan")
        return self

    def plan_ids(self) -> list[str]:
        """The offer types that are plans (a plan's offer id is its plan id)."""
        return [o for o, t in self.offer_types.items() if t.kind == "plan"]

    def plan_tiers(self) -> dict[str, int]:
        return {o: self.offer_types[o].tier for o in self.plan_ids()}


def load_markets(path: str | Path) -> MarketCatalog:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"market catalogue not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return MarketCatalog.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        title = f"invalid market catalogue ({path})"
        raise ConfigError(describe_validation_error(exc, title)) from None
