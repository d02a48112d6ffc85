"""The baselines every model must beat: market popularity and the marketer's upgrade ladder."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recsys.columns import literal_map
from recsys.models.base import EXPLAIN_KEYS, Recommender
from recsys.tokens import matches

if TYPE_CHECKING:
    from recsys.config import Config

# log share given to an offer nobody in the market interacted with: far below any real one.
UNSEEN_LOG_SHARE = -20.0
# Reason codes of the baselines' lists.
POPULAR_IN_MARKET = "popular_in_market"
LADDER_STEP = "ladder_step"


def offer_log_share(interactions_df: DataFrame) -> DataFrame:
    """(market, offer_id, log_share): log of each offer's share of the market's offer
    confidence in ``interactions_df``."""
    totals = Window.partitionBy("market")
    return (
        interactions_df.where(F.col("is_offer"))
        .groupBy("market", F.col("item_id").alias("offer_id"))
        .agg(F.sum("confidence").alias("_confidence"))
        .select(
            "market",
            "offer_id",
            F.log(F.col("_confidence") / F.sum("_confidence").over(totals)).alias("log_share"),
        )
    )


def acceptance_log_share(acceptances_df: DataFrame, interactions_df: DataFrame) -> DataFrame:
    """(market, offer_id, log_share): log of each offer's share of the market's acceptances
    (trial starts and conversions); offers nobody took rank below, by their confidence."""
    totals = Window.partitionBy("market")
    taken_df = acceptances_df.select(
        "market",
        "offer_id",
        F.log(F.col("acceptances") / F.sum("acceptances").over(totals)).alias("_taken"),
    )
    return (
        offer_log_share(interactions_df)
        .join(taken_df, on=["market", "offer_id"], how="full")
        .select(
            "market",
            "offer_id",
            F.coalesce(
                "_taken", F.lit(UNSEEN_LOG_SHARE) + F.coalesce("log_share", F.lit(UNSEEN_LOG_SHARE))
            ).alias("log_share"),
        )
    )


class Popularity(Recommender):
    """Each offer scored by its share of the market's acceptances (trial starts and
    conversions) before the split, as a log: the same list for everyone in a market
    (eligibility still removes what a user cannot take). Without supervised data (which
    carries the acceptances) it falls back to the share of the market's summed offer
    confidence."""

    family = "popularity"
    supervised = True

    def _fit(self, interactions_df: DataFrame, supervised=None) -> None:
        if supervised is None:
            self.popularity_df = offer_log_share(interactions_df)
        else:
            self.popularity_df = acceptance_log_share(supervised.acceptances_df, interactions_df)

    def _score(self, candidates_df: DataFrame) -> DataFrame:
        return candidates_df.join(
            F.broadcast(self.popularity_df), on=["market", "offer_id"], how="left"
        ).select(
            "market",
            "user_id",
            "offer_id",
            F.coalesce("log_share", F.lit(UNSEEN_LOG_SHARE)).alias("score"),
        )

    def explain(
        self,
        lists_df: DataFrame,
        interactions_df: DataFrame,
        *,
        reason_tokens: Collection[str] | None = None,
    ) -> DataFrame:
        return lists_df.select(*EXPLAIN_KEYS, F.lit(POPULAR_IN_MARKET).alias("reason_code"))

    def _names(self) -> tuple[str, ...]:
        return ("popularity",)

    def _state(self) -> dict[str, DataFrame]:
        return {"popularity": self.popularity_df}

    def _load_state(self, state: dict[str, DataFrame]) -> None:
        self.popularity_df = state["popularity"]


class Ladder(Recommender):
    """A rule-based upgrade ladder, configured by hand (``train.models.ladder``).

    ``params["steps"]``: current plan -> offers, best first. ``params["signals"]``: behaviour
    token -> offers, best first. An offer a signal of the user names outranks every step; among
    signal offers, and among steps, the configured order wins. Offers named nowhere score 0.
    """

    family = "ladder"

    def _fit(self, interactions_df: DataFrame) -> None:
        tokens = sorted(self.params.get("signals", {}))
        self.signals_df = (
            interactions_df.where(F.col("item_id").isin(tokens))
            .groupBy("market", "user_id")
            .agg(F.array_sort(F.collect_set("item_id")).alias("signals"))
        )

    def _score(self, candidates_df: DataFrame) -> DataFrame:
        scored = candidates_df.join(self.signals_df, on=["market", "user_id"], how="left")
        return scored.select("market", "user_id", "offer_id", self._rule_score().alias("score"))

    def _rule_score(self) -> Column:
        steps = {
            f"{plan}|{offer}": float(len(offers) - position)
            for plan, offers in self.params.get("steps", {}).items()
            for position, offer in enumerate(offers)
        }
        step_score = F.coalesce(
            literal_map(steps)[F.concat_ws("|", "current_plan", "offer_id")], F.lit(0.0)
        )
        # A signal's offers score above any step (steps stay below 100 points).
        signal_score = F.lit(0.0)
        for token, offers in self.params.get("signals", {}).items():
            points = literal_map({o: 100.0 * (len(offers) - i) for i, o in enumerate(offers)})
            has_token = F.coalesce(F.array_contains("signals", token), F.lit(False))
            signal_score = F.greatest(
                signal_score,
                F.when(has_token, F.coalesce(points[F.col("offer_id")], F.lit(0.0))).otherwise(0.0),
            )
        return signal_score + step_score

    def explain(
        self,
        lists_df: DataFrame,
        interactions_df: DataFrame,
        *,
        reason_tokens: Collection[str] | None = None,
    ) -> DataFrame:
        """The user's signal that moved the offer ahead (its token, e.g. ``signal:household``),
        else ``ladder_step``: the offer is a configured step up from the user's plan."""
        reason = F.lit(LADDER_STEP)
        signals = [
            (token, offers)
            for token, offers in self.params.get("signals", {}).items()
            if reason_tokens is None or matches(token, reason_tokens)
        ]
        # Checked in reverse so that the first configured signal naming the offer wins.
        for token, offers in reversed(signals):
            fired = F.coalesce(F.array_contains("signals", token), F.lit(False))
            reason = F.when(fired & F.col("offer_id").isin(offers), F.lit(token)).otherwise(reason)
        return lists_df.join(self.signals_df, on=["market", "user_id"], how="left").select(
            *EXPLAIN_KEYS, reason.alias("reason_code")
        )

    def _names(self) -> tuple[str, ...]:
        return ("signals",)

    def _state(self) -> dict[str, DataFrame]:
        return {"signals": self.signals_df}

    def _load_state(self, state: dict[str, DataFrame]) -> None:
        self.signals_df = state["signals"]


def baseline_params(config: Config, family: str) -> dict[str, Any]:
    """The parameters a baseline family fits with: the ladder's rules, or nothing.

    Baselines have no hyperparameters to search, so training and serving both build them
    from the config alone.

    Parameters
    ----------
    config : Config
        The validated run config; ``train.models.ladder`` holds the ladder's rules.
    family : str
        A family name from :data:`recsys.models.BASELINES`.

    Returns
    -------
    dict of str to Any
        ``{"steps": ..., "signals": ...}`` for the ladder, empty for popularity.
    """
    if family == Ladder.family:
        ladder = config.train.models.ladder
        return {"steps": ladder.steps, "signals": ladder.signals}
    return {}
