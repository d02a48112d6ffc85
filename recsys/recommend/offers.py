"""What each offer of each market looks like on a marketing surface, and what a conversion to
it is worth: config-sized (markets x offers), so it is computed on the driver with Babel's CLDR
data and broadcast to the lists.

- ``display_name``: the catalogue's name in the market's language;
- ``price_amount``: the price as a decimal rounded to the currency's minor units (none for
  JPY), in the catalogue's decimal type;
- ``price_display``: the price formatted by CLDR rules for the market's locale and currency
  (``119,00 kr`` in sv_SE, ``￥1,080`` in ja_JP), never a hand-written format;
- ``value``: the expected revenue of a conversion over ``recommend.value.tenure_months``,
  after free or discounted months, less ``promo_cost_months`` of the monthly price.

An offer without a price (a market of own data without prices) has none of the three: its
``expected_value`` is its ``p_convert`` (:func:`with_expected_value`).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from babel.numbers import format_currency, get_currency_precision
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys.config import ValueConfig

DAYS_PER_MONTH = 30

OFFER_TERMS_SCHEMA = T.StructType(
    [
        T.StructField("market", T.StringType(), False),
        T.StructField("offer_id", T.StringType(), False),
        T.StructField("plan_id", T.StringType(), False),
        T.StructField("display_name", T.StringType(), False),
        T.StructField("locale", T.StringType(), False),
        T.StructField("currency", T.StringType(), False),
        # The price columns and value: null for an offer without a price.
        T.StructField("price_amount", T.DecimalType(18, 4), True),
        T.StructField("price_display", T.StringType(), True),
        T.StructField("value", T.DoubleType(), True),
    ]
)


def price_amount(price: Decimal, currency: str) -> Decimal:
    """``price`` rounded to the minor units CLDR gives ``currency``."""
    return price.quantize(Decimal(1).scaleb(-get_currency_precision(currency)), ROUND_HALF_EVEN)


def price_display(price: Decimal, currency: str, locale: str) -> str:
    """``price`` formatted for ``locale`` by CLDR rules (symbol, its side, separators)."""
    return format_currency(price_amount(price, currency), currency, locale=locale)


def offer_value(
    offer_id: str,
    price: Decimal,
    period_days: int,
    trial_days: int | None,
    discount_months: int | None,
    regular_price: Decimal,
    value: ValueConfig,
) -> float:
    """Expected revenue of one conversion to the offer, in its currency.

    ``price`` is what the offer charges per ``period_days`` (after the free period of a
    trial; during the discount of a discounted offer); ``regular_price`` is the monthly
    price of its plan once a discount ends.
    """
    tenure = value.tenure_months.get(offer_id, value.tenure_months["default"])
    monthly = float(price) * DAYS_PER_MONTH / period_days
    if trial_days:
        revenue = max(tenure - trial_days / DAYS_PER_MONTH, 0.0) * monthly
    elif discount_months:
        discounted = min(discount_months, tenure)
        revenue = discounted * monthly + (tenure - discounted) * float(regular_price)
    else:
        revenue = tenure * monthly
    return round(revenue - value.promo_cost_months.get(offer_id, 0.0) * monthly, 4)


def offer_terms_df(spark: SparkSession, catalog_df: DataFrame, value: ValueConfig) -> DataFrame:
    """Grain (market, offer_id): the display and value columns of :data:`OFFER_TERMS_SCHEMA`.

    ``catalog_df``: the ``catalog`` table (a few rows per market), collected to the driver.
    An offer without a price gets null price columns and value.
    """
    rows = catalog_df.collect()
    plan_prices = {
        (r["market"], r["offer_id"]): r["price"] * DAYS_PER_MONTH / r["period_days"]
        for r in rows
        if r["kind"] == "plan" and r["price"] is not None
    }
    terms = []
    for r in rows:
        price = r["price"]
        regular = plan_prices.get((r["market"], r["plan_id"]), price)
        priced = price is not None
        terms.append(
            (
                r["market"],
                r["offer_id"],
                r["plan_id"],
                r["display_name"],
                r["locale"],
                r["currency"],
                price_amount(price, r["currency"]) if priced else None,
                price_display(price, r["currency"], r["locale"]) if priced else None,
                offer_value(
                    r["offer_id"],
                    price,
                    r["period_days"],
                    r["trial_days"],
                    r["discount_months"],
                    regular,
                    value,
                )
                if priced
                else None,
            )
        )
    return spark.createDataFrame(terms, OFFER_TERMS_SCHEMA)


def with_expected_value(scored_df: DataFrame, terms_df: DataFrame) -> DataFrame:
    """``scored_df`` with the offer's ``value`` and ``expected_value = p_convert x value``.

    An offer without a price has no value, so its ``expected_value`` is its ``p_convert``:
    the objective ``expected_value`` then ranks a market without prices by the probability
    of converting. A market prices every offer or none (:class:`~recsys.markets.Market`), so
    money and probabilities are never compared within one.

    Parameters
    ----------
    scored_df : DataFrame
        One row per (market, user_id, offer_id) with ``p_convert`` (null where uncalibrated).
    terms_df : DataFrame
        :func:`offer_terms_df`: grain (market, offer_id), with ``value``.

    Returns
    -------
    DataFrame
        ``scored_df``'s rows of offers ``terms_df`` has, with ``value`` and ``expected_value``.
    """
    value = F.col("value")
    return scored_df.join(
        F.broadcast(terms_df.select("market", "offer_id", "value")),
        on=["market", "offer_id"],
        how="inner",
    ).withColumn(
        "expected_value",
        F.when(value.isNull(), F.col("p_convert")).otherwise(F.col("p_convert") * value),
    )
