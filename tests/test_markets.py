"""The shipped market catalogue meets the product's coverage requirements (issue 2)."""

from __future__ import annotations

from babel.numbers import get_currency_precision

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
