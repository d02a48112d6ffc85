"""Offline evaluation of a model on one window: candidates, labels, metrics per user and market.

A model is judged only on what it could have done: its candidates are the offers each user
was eligible for at the start of the window (the same rules as serving, the configured ones
included, from the user's state then), and labels are the offers users converted to in the
window that were among those candidates. Users with no such label are not evaluated (they are
counted). Every evaluated user counts, whether or not the model scored them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys.config import EligibilityRules
from recsys.eligibility import with_eligibility
from recsys.evaluation import policy_value
from recsys.evaluation.metrics import metric_column, per_user_metrics_at
from recsys.evaluation.reliability import Reliability, reliability
from recsys.models.base import Recommender
from recsys.ranking import top_k
from recsys.vocabulary import ALL, KEYS

# Who the logging policy showed offers to differs from whom lists serve by the plan held.
STRATA = ("market", "current_plan")
RANKING_METRICS = ("precision", "recall", "hit_rate", "ndcg", "map", "mrr")


@dataclass(frozen=True)
class Window:
    """What one evaluation window needs: candidates and labels of its labelled users.

    ``candidates_df``: (market, user_id, offer_id, current_plan) of labelled users only; the
    rest cannot change a metric, so they are not scored. ``labels_df``: (market, user_id,
    item_id, price).
    """

    candidates_df: DataFrame
    labels_df: DataFrame
    offers_df: DataFrame  # (market, offer_id): every offer of the catalogue, for coverage
    # Logged impressions of the window (policy_value.LOGGED_COLUMNS), the candidates of their
    # users and the direct model of the doubly-robust estimate; None without impressions.
    logged: Logged | None = None

    def persist(self) -> Window:
        level = StorageLevel.MEMORY_AND_DISK
        return Window(
            self.candidates_df.persist(level),
            self.labels_df.persist(level),
            self.offers_df.persist(level),
            self.logged.persist() if self.logged else None,
        )

    def unpersist(self) -> None:
        for df in (self.candidates_df, self.labels_df, self.offers_df):
            df.unpersist()
        if self.logged:
            self.logged.unpersist()


@dataclass(frozen=True)
class Logged:
    """What the off-policy value of a model's lists needs on one window."""

    impressions_df: DataFrame  # policy_value.LOGGED_COLUMNS
    candidates_df: DataFrame  # (market, user_id, offer_id, current_plan) of their users
    rewards_df: DataFrame  # policy_value.REWARD_COLUMNS: the direct model of DR
    # (market, current_plan, users) of every user at the snapshot: whom the lists will serve
    population_df: DataFrame

    def persist(self) -> Logged:
        level = StorageLevel.MEMORY_AND_DISK
        return Logged(*(df.persist(level) for df in self._frames()))

    def unpersist(self) -> None:
        for df in self._frames():
            df.unpersist()

    def _frames(self) -> tuple[DataFrame, DataFrame, DataFrame, DataFrame]:
        return (self.impressions_df, self.candidates_df, self.rewards_df, self.population_df)


def window(
    state_df: DataFrame,
    outcomes_df: DataFrame,
    catalog_df: DataFrame,
    rules: EligibilityRules | None = None,
) -> Window:
    """Build a window from users' state at its start and what they converted to in it.

    ``state_df``: one row per user with the eligibility state columns (``user_state``).
    ``outcomes_df``: (market, user_id, item_id) conversions in the window (a label split of
    ``interactions``). ``catalog_df``: the ``catalog`` table. ``rules``: the configured
    eligibility rules (``recommend.eligibility``), so that an offer serving would never show
    is neither a candidate nor a label.
    """
    # Only users who converted in the window can be labelled: the eligibility of everyone
    # else (most users, times every offer) would be computed for nothing.
    state_df = state_df.join(outcomes_df.select(*KEYS), on=list(KEYS), how="left_semi")
    eligible_df = (
        with_eligibility(state_df, catalog_df, rules)
        .where(F.col("eligible"))
        .join(state_df.select(*KEYS, "current_plan"), on=list(KEYS), how="inner")
        .select(*KEYS, "offer_id", "current_plan")
    )
    prices_df = catalog_df.select("market", F.col("offer_id").alias("item_id"), "price")
    labels_df = (
        outcomes_df.select(*KEYS, "item_id")
        .distinct()
        .join(
            eligible_df.select(*KEYS, F.col("offer_id").alias("item_id")),
            on=[*KEYS, "item_id"],
            how="inner",
        )
        .join(F.broadcast(prices_df), on=["market", "item_id"], how="inner")
        .select(*KEYS, "item_id", F.col("price").cast("double").alias("price"))
    )
    candidates_df = eligible_df.join(
        labels_df.select(*KEYS).distinct(), on=list(KEYS), how="left_semi"
    )
    return Window(candidates_df, labels_df, catalog_df.select("market", "offer_id"))


def logged(
    state_df: DataFrame,
    impressions_df: DataFrame,
    catalog_df: DataFrame,
    reward_model: Recommender,
    served_df: DataFrame,
    rules: EligibilityRules | None = None,
) -> Logged:
    """The logged impressions of a window, the candidates of their users at its start, and
    the direct model's probabilities for every pair a list or an impression can hold.

    ``state_df``: ``user_state`` at the window's start. ``impressions_df``:
    :data:`~recsys.evaluation.policy_value.LOGGED_COLUMNS`. ``reward_model``: a fitted model
    whose score is the logit of P(accept) (``serves_probability``), fitted on data from
    before the window or cross-fitted on it. ``served_df``: ``user_state`` at the snapshot,
    the users the lists will serve, whose mix of plans ``policy_value_served`` takes: more of
    them hold a paid plan than at the window's start, as the window's conversions moved them.
    """
    population_df = served_df.groupBy(*STRATA).agg(F.count(F.lit(1)).alias("users"))
    state_df = state_df.join(
        impressions_df.select(*KEYS).distinct(), on=list(KEYS), how="left_semi"
    )
    plans_df = state_df.select(*KEYS, "current_plan")
    candidates_df = (
        with_eligibility(state_df, catalog_df, rules)
        .where(F.col("eligible"))
        .join(plans_df, on=list(KEYS), how="inner")
        .select(*KEYS, "offer_id", "current_plan")
    )
    impressions_df = impressions_df.join(plans_df, on=list(KEYS), how="left_semi")
    pairs_df = candidates_df.unionByName(
        impressions_df.join(plans_df, on=list(KEYS), how="inner").select(
            *KEYS, "offer_id", "current_plan"
        )
    ).distinct()
    rewards_df = reward_model.score(pairs_df).select(
        *KEYS, "offer_id", (1 / (1 + F.exp(-F.col("score")))).alias("reward")
    )
    return Logged(impressions_df, candidates_df, rewards_df, population_df)


def policy_values(
    model: Recommender, logged: Logged, k: int, position_bias: list[float]
) -> DataFrame:
    """Per user with logged impressions, the off-policy value of ``model``'s top-``k`` lists
    (:func:`recsys.evaluation.policy_value.per_user`), with the doubly-robust estimate as
    ``policy_value``."""
    lists_df = top_k(model.score(logged.candidates_df), k).select(
        *KEYS, F.col("offer_id").alias("item_id"), "rank"
    )
    return (
        policy_value.per_user(
            lists_df,
            logged.impressions_df,
            logged.candidates_df,
            logged.rewards_df,
            position_bias,
            k,
        )
        .withColumn(policy_value.POLICY_VALUE, F.col("dr"))
        .join(logged.candidates_df.select(*STRATA, "user_id").distinct(), on=list(KEYS), how="left")
    )


def reliability_of(model: Recommender, logged: Logged) -> Reliability:
    """Predicted against observed acceptance of a probability model (``serves_probability``)
    on a window's logged impressions (:func:`recsys.evaluation.reliability.reliability`)."""
    plans_df = logged.candidates_df.select(*KEYS, "current_plan").distinct()
    shown_df = logged.impressions_df.join(plans_df, on=list(KEYS), how="inner")
    scored_df = model.score(shown_df.select(*KEYS, "offer_id", "current_plan").distinct())
    return reliability(
        shown_df.join(scored_df, on=[*KEYS, "offer_id"], how="inner").select(
            "market", (1 / (1 + F.exp(-F.col("score")))).alias("p"), F.col("label").alias("y")
        )
    )


def policy_summary(policy_df: DataFrame, population_df: DataFrame) -> pd.DataFrame:
    """Markets x ``policy_value`` (DR), ``policy_value_ips``, ``policy_value_snips``,
    ``policy_value_served`` (DR re-weighted to ``population_df``'s plans,
    :func:`recsys.evaluation.policy_value.post_stratified`) with its ``_se`` and
    ``policy_served_coverage``, and ``policy_users``, plus :data:`ALL` pooled."""
    strata = policy_value.by_stratum(policy_df, STRATA)
    population = population_df.toPandas()
    parts = []
    for by in (("market",), ()):
        estimates = policy_value.summary(strata, by=by)
        served = policy_value.post_stratified(strata, population, STRATA, by=by)
        part = estimates.join(served, how="left")
        parts.append(part if by else part.set_axis([ALL]))
    value = policy_value.POLICY_VALUE
    return (
        pd.concat(parts)
        .rename_axis("market")
        .rename(
            columns={
                "dr": value,
                "ips": f"{value}_ips",
                "snips": f"{value}_snips",
                "served": f"{value}_served",
                "served_se": f"{value}_served_se",
                "coverage": "policy_served_coverage",
                "users": "policy_users",
                "impressions": "policy_impressions",
            }
        )
    )


def per_user(model: Recommender, win: Window, ks: list[int]) -> tuple[DataFrame, DataFrame]:
    """(per-user metrics, top lists) of ``model`` on ``win``.

    Per-user: keys and ``<metric>_at_<k>`` for every metric and k, plus ``revenue_at_<k>``
    (the price of the hits, in the market's currency) and the plain ``mrr`` over the whole
    ranking of the user's candidates. Lists: keys, offer_id, rank, every candidate ranked.
    """
    lists_df = (
        top_k(model.score(win.candidates_df), None)
        .select(*KEYS, F.col("offer_id").alias("item_id"), "rank")
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    per_user_df = per_user_metrics_at(lists_df, win.labels_df, ks, keys=KEYS, value_col="price")
    return per_user_df, lists_df


def summary(
    per_user_df: DataFrame, lists_df: DataFrame, win: Window, ks: list[int]
) -> pd.DataFrame:
    """Markets x figures (a market per row, plus :data:`ALL` for all users pooled).

    Mean of every per-user metric, ``users`` evaluated, and ``coverage_at_<k>``: the share of
    the market's catalogue that appears in some top-k list. Revenue is in each market's
    currency, so it is not pooled (NaN in the ``all`` row).
    """
    metric_columns = [c for c in per_user_df.columns if c not in KEYS]
    aggregates = [F.avg(c).alias(c) for c in metric_columns] + [F.count(F.lit(1)).alias("users")]
    by_market = per_user_df.groupBy("market").agg(*aggregates).toPandas().set_index("market")
    # The pooled means are the market means weighted by users: no second pass over the users.
    users = by_market["users"].sum()
    pooled = by_market[metric_columns].mul(by_market["users"], axis=0).sum() / users
    pooled[[c for c in metric_columns if c.startswith("revenue")]] = float("nan")
    table = pd.concat([by_market, pooled.to_frame(ALL).T.assign(users=users)]).rename_axis("market")

    offers = win.offers_df.groupBy("market").agg(F.count(F.lit(1)).alias("offers")).toPandas()
    offers = offers.set_index("market")["offers"]
    shown = (
        lists_df.groupBy("market")
        .agg(
            *(
                F.countDistinct(F.when(F.col("rank") <= k, F.col("item_id"))).alias(f"shown_{k}")
                for k in ks
            )
        )
        .toPandas()
        .set_index("market")
    )
    for k in ks:
        column = metric_column("coverage", k)
        table[column] = (shown[f"shown_{k}"] / offers).reindex(table.index)
        table.loc[ALL, column] = shown[f"shown_{k}"].sum() / offers.sum()
    return table.sort_index()
