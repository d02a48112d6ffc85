"""Localized prices and names (CLDR via Babel) and the value of a conversion."""

from __future__ import annotations

from decimal import Decimal

import pytest
from chispa import assert_approx_df_equality, assert_df_equality

from recsys.catalog import catalog_df
from recsys.config import ValueConfig
from recsys.markets import MarketCatalog
from recsys.recommend.offers import (
    offer_terms_df,
    offer_value,
    price_amount,
    price_display,
    with_expected_value,
)

NBSP, NNBSP = "\u00a0", "\u202f"


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "expected"),
    [
        ("1080", "JPY", "ja_JP", "￥1,080"),  # no minor unit
        ("119", "SEK", "sv_SE", f"119,00{NBSP}kr"),  # comma decimal, symbol on the right
        ("10.99", "EUR", "de_DE", f"10,99{NBSP}€"),
        ("1234.5", "EUR", "fr_FR", f"1{NNBSP}234,50{NBSP}€"),  # narrow space groups thousands
        ("21.9", "BRL", "pt_BR", f"R${NBSP}21,90"),
        ("23.99", "PLN", "pl_PL", f"23,99{NBSP}zł"),
        ("1290", "USD", "en_US", "$1,290.00"),
        ("119", "INR", "hi_IN", "₹119.00"),
    ],
)
def test_prices_follow_the_locale(amount, currency, locale, expected):
    assert price_display(Decimal(amount), currency, locale) == expected


def test_amounts_keep_the_currency_minor_units():
    assert price_amount(Decimal("1080.4"), "JPY") == Decimal("1080")
    assert price_amount(Decimal("10.985"), "EUR") == Decimal("10.98")  # half to even
    assert price_amount(Decimal("3.1234"), "KWD") == Decimal("3.123")


VALUE = ValueConfig(
    tenure_months={"default": 6, "annual_individual": 12},
    promo_cost_months={"trial_individual_1m": 0.5},
)


def test_value_counts_paid_months_and_the_promotion_cost():
    plain = offer_value("premium_individual", Decimal("100"), 30, None, None, Decimal(100), VALUE)
    assert plain == 600.0
    # A 30-day trial: 5 paid months of 6, less half a month of promotion cost.
    trial = offer_value("trial_individual_1m", Decimal("100"), 30, 30, None, Decimal(100), VALUE)
    assert trial == 500.0 - 50.0
    # 3 months at 50, then 3 at the plan's 100.
    discount = offer_value(
        "discount_individual_3m", Decimal("50"), 30, None, 3, Decimal(100), VALUE
    )
    assert discount == 450.0
    # A yearly price, per 30 days, over 12 months.
    annual = offer_value("annual_individual", Decimal("1095"), 365, None, None, Decimal(100), VALUE)
    assert annual == pytest.approx(1080.0)


def test_every_offer_of_every_market_has_terms_in_its_language(spark, config):
    markets = config.markets
    terms = offer_terms_df(spark, catalog_df(spark, markets), VALUE).collect()
    assert len(terms) == sum(len(m.offers) for m in markets.markets.values())
    for row in terms:
        market = markets.markets[row["market"]]
        assert row["display_name"] == markets.offer_types[row["offer_id"]].names[market.language]
        assert row["price_display"] == price_display(
            market.offers[row["offer_id"]], market.currency, market.locale
        )
        assert row["value"] >= 0


def test_an_offer_without_a_price_has_no_price_columns_and_no_value(spark):
    markets = MarketCatalog.model_validate(
        {
            "offer_types": {"travel": {"kind": "addon"}, "home": {"kind": "addon"}},
            "markets": {
                "NL": {"currency": "EUR", "locale": "nl_NL", "offers": ["travel", "home"]},
                "BE": {"currency": "EUR", "locale": "nl_BE", "offers": {"travel": 5, "home": 9}},
            },
        }
    )
    terms_df = offer_terms_df(spark, catalog_df(spark, markets), VALUE)
    expected = spark.createDataFrame(
        [
            ("NL", "travel", None, None, None),
            ("NL", "home", None, None, None),
            ("BE", "travel", Decimal("5.0000"), f"€{NBSP}5,00", 30.0),
            ("BE", "home", Decimal("9.0000"), f"€{NBSP}9,00", 54.0),
        ],
        "market string, offer_id string, price_amount decimal(18,4), price_display string, "
        "value double",
    )
    assert_df_equality(
        terms_df.select(*expected.columns), expected, ignore_row_order=True, ignore_nullable=True
    )


def test_expected_value_is_p_convert_where_the_offer_has_no_price(spark):
    terms_df = spark.createDataFrame(
        [("NL", "travel", None), ("BE", "travel", 30.0)],
        "market string, offer_id string, value double",
    )
    scored_df = spark.createDataFrame(
        [
            ("NL", "u1", "travel", 0.2),
            ("BE", "u2", "travel", 0.2),
            ("BE", "u3", "travel", None),  # not calibrated: nothing to fall back to
            ("BE", "u4", "gone", 0.5),  # no longer sold: no terms
        ],
        "market string, user_id string, offer_id string, p_convert double",
    )
    expected = spark.createDataFrame(
        [
            ("NL", "travel", "u1", 0.2, None, 0.2),
            ("BE", "travel", "u2", 0.2, 30.0, 6.0),
            ("BE", "travel", "u3", None, 30.0, None),
        ],
        "market string, offer_id string, user_id string, p_convert double, value double, "
        "expected_value double",
    )
    assert_approx_df_equality(
        with_expected_value(scored_df, terms_df).select(*expected.columns),
        expected,
        1e-12,
        ignore_row_order=True,
        ignore_nullable=True,
    )
