"""The `catalog` table: one row per (market, offer) from the market catalogue config."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from recsys import schemas as S
from recsys.markets import MarketCatalog


def catalog_df(spark: SparkSession, markets: MarketCatalog) -> DataFrame:
    """Grain: (market, offer_id). Config-sized, so it is built on the driver."""
    rows = []
    for code, market in markets.markets.items():
        for offer_id, price in market.offers.items():
            offer = markets.offer_types[offer_id]
            rows.append(
                (
                    code,
                    offer_id,
                    offer.plan_id,
                    offer.kind,
                    offer.tier,
                    offer.period_days,
                    offer.trial_days,
                    offer.discount_months,
                    offer.requires_verification,
                    list(offer.requires_plans),
                    price,
                    market.currency,
                    market.locale,
                    market.language,
                    markets.display_name(offer_id, market.language),
                )
            )
    return spark.createDataFrame(rows, S.CATALOG_SCHEMA)
