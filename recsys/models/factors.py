"""Models that score by a dot product of user and item factors, fitted one way or another.

Spark MLlib ALS, ``implicit`` ALS and ``implicit`` BPR differ only in how the factors are
learned; scoring, saving and loading are shared here. Items are a market's offers *and*
behaviour tokens (docs/interactions.md): users get factors from their behaviour, and the
offer columns of the reconstruction are their plan affinities.

An affinity is not a conversion rate. Logged conversions happen where the old policy showed
offers, so what users took is mostly what they were shown; collaborative filtering learns
taste (page views, behaviour), not exposure. ``prior_weight`` w adds the market's offer prior
to the affinity, ``score = affinity + w * log(share of the market's offer confidence)``, the
log of "P(convert) = P(exposed) x P(accept | taste)" up to scale. w = 0 is the plain model;
the search picks w on the validation window like any hyperparameter.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Collection

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recsys.columns import literal_map
from recsys.models.base import EXPLAIN_KEYS, Recommender
from recsys.models.baselines import POPULAR_IN_MARKET, UNSEEN_LOG_SHARE, offer_log_share
from recsys.tokens import matches_column

USER_FACTOR_COLUMNS = ("market", "user_id", "user_factors")
ITEM_FACTOR_COLUMNS = ("market", "item_id", "item_factors")


def dot(left: Column, right: Column) -> Column:
    """Dot product of two equally long float arrays, in double; null if either is null."""
    return F.aggregate(
        F.zip_with(left, right, lambda x, y: x.cast("double") * y.cast("double")),
        F.lit(0.0),
        lambda total, x: total + x,
    )


def market_sizes(interactions_df: DataFrame) -> list:
    """One row per market: ``market``, ``users`` and ``items`` (index ranges), ``nnz``."""
    return (
        interactions_df.groupBy("market")
        .agg(
            (F.max("user_idx") + 1).alias("users"),
            (F.max("item_idx") + 1).alias("items"),
            F.count(F.lit(1)).alias("nnz"),
        )
        .collect()  # one row per market
    )


class FactorModel(Recommender):
    """Holds ``user_factors_df`` (market, user_id, user_factors), ``item_factors_df``
    (market, item_id, item_factors) and ``prior_df`` (market, offer_id, log_share);
    subclasses fill the factors in ``_fit_factors``."""

    user_factors_df: DataFrame
    item_factors_df: DataFrame
    prior_df: DataFrame

    def _fit(self, interactions_df: DataFrame) -> None:
        self._fit_factors(interactions_df)
        self.prior_df = offer_log_share(interactions_df)

    @abstractmethod
    def _fit_factors(self, interactions_df: DataFrame) -> None: ...

    def _score(self, candidates_df: DataFrame) -> DataFrame:
        items_df = self.item_factors_df.select(
            "market", F.col("item_id").alias("offer_id"), "item_factors"
        )
        affinity = dot(F.col("user_factors"), F.col("item_factors"))
        prior = F.coalesce(F.col("log_share"), F.lit(UNSEEN_LOG_SHARE))
        score = affinity + self._prior_weight() * prior
        return (
            candidates_df.join(self.user_factors_df, on=["market", "user_id"], how="left")
            .join(F.broadcast(items_df), on=["market", "offer_id"], how="left")
            .join(F.broadcast(self.prior_df), on=["market", "offer_id"], how="left")
            .select("market", "user_id", "offer_id", score.alias("score"))
        )

    def explain(
        self,
        lists_df: DataFrame,
        interactions_df: DataFrame,
        *,
        reason_tokens: Collection[str] | None = None,
    ) -> DataFrame:
        """The user's behaviour that pulls hardest toward the offer: of the behaviour tokens
        the user has, the one with the largest positive ``confidence x token_factors .
        offer_factors`` (implicit's ``explain`` in spirit, without the per-user solve). It
        reads as the token (``signal:household``, ``genre:latin``); with no positive pull the
        market prior carried the offer: ``popular_in_market``."""
        items_df = self.item_factors_df
        offers_df = items_df.select(
            "market", F.col("item_id").alias("offer_id"), F.col("item_factors").alias("_offer")
        )
        pull = F.col("confidence") * dot(F.col("item_factors"), F.col("_offer"))
        behaviour_df = interactions_df.where(~F.col("is_offer"))
        if reason_tokens is not None:
            behaviour_df = behaviour_df.where(matches_column(F.col("item_id"), reason_tokens))
        strongest_df = (
            lists_df.select(*EXPLAIN_KEYS)
            .join(
                behaviour_df.select("market", "user_id", "item_id", "confidence"),
                on=["market", "user_id"],
                how="inner",
            )
            .join(F.broadcast(items_df), on=["market", "item_id"], how="inner")
            .join(F.broadcast(offers_df), on=["market", "offer_id"], how="inner")
            .withColumn("_pull", pull)
            .where(F.col("_pull") > 0)
            .groupBy(*EXPLAIN_KEYS)
            # The largest pull; on an exact tie, the larger token (max of a struct).
            .agg(F.max(F.struct("_pull", "item_id")).alias("_best"))
        )
        reason = F.coalesce(F.col("_best.item_id"), F.lit(POPULAR_IN_MARKET))
        return lists_df.join(strongest_df, on=list(EXPLAIN_KEYS), how="left").select(
            *EXPLAIN_KEYS, reason.alias("reason_code")
        )

    def _prior_weight(self) -> Column:
        default = float(self.params.get("prior_weight", 0.0))
        pinned = {
            market: float(params["prior_weight"])
            for market, params in self.market_params.items()
            if "prior_weight" in params
        }
        if not pinned:
            return F.lit(default)
        return F.coalesce(literal_map(pinned)[F.col("market")], F.lit(default))

    def _names(self) -> tuple[str, ...]:
        return ("user_factors", "item_factors", "prior")

    def _state(self) -> dict[str, DataFrame]:
        return {
            "user_factors": self.user_factors_df,
            "item_factors": self.item_factors_df,
            "prior": self.prior_df,
        }

    def _load_state(self, state: dict[str, DataFrame]) -> None:
        self.user_factors_df = state["user_factors"]
        self.item_factors_df = state["item_factors"]
        self.prior_df = state["prior"]
