"""The shipped market catalogue meets the product's coverage requirements (issue 2)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from babel.numbers import get_currency_precision

from recsys.errors import ConfigError
from recsys.markets import load_markets
from tests.conftest import ROOT

MARKETS = load_markets(ROOT / "conf" / "markets.yaml")
REQUIRED_PLANS = {
    "free",
    "premium_individual",
    "premium_duo",
    "premium_family",
    "premium_student",
    "premium_mini",
}


def test_coverage_of_markets_currencies_and_languages():
    markets = MARKETS.markets.values()
    assert len(MARKETS.markets) >= 12
    assert len({m.continent for m in markets}) >= 4
    currencies = {m.currency for m in markets}
    assert len(currencies) >= 8
    assert any(get_currency_precision(c) == 0 for c in currencies)
    assert len({m.language for m in markets}) >= 6


def test_plans_addons_and_promotions_exist():
    types = MARKETS.offer_types
    assert {o.plan_id for o in types.values() if o.kind == "plan"} >= REQUIRED_PLANS
    assert any(o.kind == "addon" for o in types.values())
    promos = [o for o in types.values() if o.kind == "promo"]
    assert any(o.trial_days for o in promos)
    assert any(o.discount_months for o in promos)
    assert any(o.period_days >= 365 for o in promos)


def test_not_every_plan_everywhere_and_students_only_where_verified():
    offered = {code: set(m.offers) for code, m in MARKETS.markets.items()}
    assert any("premium_mini" not in o for o in offered.values())
    assert any("premium_mini" in o for o in offered.values())
    for code, market in MARKETS.markets.items():
        assert ("premium_student" in offered[code]) <= market.student_verification, code
    assert any(not m.student_verification for m in MARKETS.markets.values())


def test_names_are_localised_and_prices_say_they_are_illustrative():
    assert "illustrative" in MARKETS.disclaimer.lower()
    family = MARKETS.offer_types["premium_family"].names
    assert len(set(family.values())) >= 5  # not one English name copied everywhere


SMALL = """
disclaimer: illustrative
offer_types:
  free: {plan_id: free, kind: plan, tier: 0, names: {en: Free}}
  gold: {plan_id: gold, kind: plan, tier: 1, names: {en: Gold}}
  cover: {plan_id: cover, kind: addon, tier: 0, names: {en: Cover}}
  gold_extra: {plan_id: gold_extra, kind: addon, tier: 0, requires_plans: [gold],
               names: {en: Gold extra}}
markets:
  US: {name: US, continent: North America, currency: USD, locale: en_US, language: en,
       price_level: 1, user_share: 1, student_share: 0, student_verification: false,
       offers: {free: 0, cover: 5, gold_extra: 2}}
"""


def test_an_addon_without_requires_plans_rides_on_every_plan_free_included(tmp_path, caplog):
    path = tmp_path / "markets.yaml"
    path.write_text(SMALL, encoding="utf-8")
    markets = load_markets(path)
    assert markets.offer_types["cover"].requires_plans == ("free", "gold")
    assert markets.offer_types["gold_extra"].requires_plans == ("gold",)
    # US does not sell gold, so nobody there can ever take gold_extra: said, not silent.
    assert markets.unreachable_addons() == ["US.gold_extra"]
    assert "no user can ever be offered US.gold_extra" in caplog.text


def test_an_empty_requires_plans_is_refused_with_what_to_write_instead(tmp_path):
    path = tmp_path / "markets.yaml"
    path.write_text(SMALL.replace("requires_plans: [gold]", "requires_plans: []"), "utf-8")
    with pytest.raises(ConfigError, match="leave requires_plans out to offer it on every plan"):
        load_markets(path)


# Own data: a market needs its code, currency, locale and offers; nothing else, neither
# prices nor the free plan (docs/own-data.md).
MINIMAL = """
offer_types:
  travel: {kind: addon}
  home: {kind: addon, names: {nl: Woonverzekering}}
markets:
  748L: {currency: EUR, locale: nl_NL, offers: [travel, home]}
  749L: {currency: EUR, locale: nl_NL, offers: {travel: 5, home: 9}}
"""


def _load(tmp_path, text):
    path = tmp_path / "markets.yaml"
    path.write_text(text, encoding="utf-8")
    return load_markets(path)


def test_a_minimal_catalogue_for_own_data_loads_and_the_world_says_what_it_lacks(tmp_path, caplog):
    markets = _load(tmp_path, MINIMAL)
    market = markets.markets["748L"]  # a branch's code, not an ISO country
    assert market.language == "nl"  # from the locale
    assert market.offers == {"travel": None, "home": None}  # a list: offers without prices
    assert markets.markets["749L"].offers == {"travel": Decimal(5), "home": Decimal(9)}
    assert markets.unpriced_markets() == ["748L"]
    assert markets.offer_types["travel"].plan_id == "travel"
    assert markets.display_name("travel", "nl") == "travel"  # no names: the id
    assert markets.display_name("home", "nl") == "Woonverzekering"
    # The free plan, the plan of a user who holds none, is known without being declared or
    # sold: add-ons ride on it, and users on it are no error.
    assert markets.offer_types["free"].kind == "plan"
    assert markets.offer_types["free"].tier == 0
    assert "free" in markets.plan_ids()
    assert markets.offer_types["travel"].requires_plans == ("free",)
    assert "free" not in market.offers  # never offered where it is not sold
    assert markets.unreachable_addons() == []
    assert "no user can ever be offered" not in caplog.text
    with pytest.raises(ConfigError) as err:
        markets.for_world()
    for key in ("continent", "price_level", "user_share", "offers.free"):
        assert f"markets.748L.{key}" in str(err.value)
    assert "prices in markets.748L.offers" in str(err.value)
    assert "prices in markets.749L" not in str(err.value)


def test_a_null_price_is_no_price_and_a_market_prices_every_offer_or_none(tmp_path):
    nulls = MINIMAL.replace("[travel, home]", "{travel: null, home: }")
    assert _load(tmp_path, nulls).markets["748L"].offers == {"travel": None, "home": None}
    mixed = MINIMAL.replace("[travel, home]", "{travel: 5, home: null}")
    with pytest.raises(ConfigError, match="home without a price beside offers with one"):
        _load(tmp_path, mixed)


@pytest.mark.parametrize(
    ("offers", "message"),
    [
        ("[travel, travel]", "travel listed more than once"),
        ("[{travel: 5}]", "a list holds offer ids alone"),
        ("[]", "at least 1 item"),
    ],
)
def test_a_list_of_offers_is_checked(tmp_path, offers, message):
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, MINIMAL.replace("[travel, home]", offers))


def test_a_declared_free_plan_stays_a_plan(tmp_path):
    addon_free = MINIMAL.replace("offer_types:\n", "offer_types:\n  free: {kind: addon}\n")
    with pytest.raises(ConfigError, match="the free plan is the plan of a user who holds none"):
        _load(tmp_path, addon_free)
