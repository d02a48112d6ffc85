"""Off-policy value of a model's greedy top-k lists, replayed on logged impressions.

A logging policy (the legacy one, or an experiment's exploration) showed user u offer o with
a logged propensity p, and the user took it (y = 1) or not. A target policy shows u its own
list L_u. Under a cascade (the surface's model, and the simulator's) the user looks at rank r
with probability b_r, takes a looked-at offer with its own probability, and takes at most one:
the list converts with probability ``V(u) = 1 - prod_r (1 - b_r P(accept L_u[r]))``. Each
logged impression of an offer at rank r of the list informs the r-th term:

- IPS (inverse propensity): ``w / p * y`` with ``w = b_rank(o)`` when the list holds o, else
  0: it estimates ``sum_r b_r P(accept L_u[r])``, every look counted as if the user could take
  several offers, which stands above V by the chance of two takes;
- SNIPS (self-normalised): the IPS sum over the sum of ``w / p`` scaled by ``sum_r b_r``, which
  trades a little bias for much less variance (the same estimand as IPS);
- DR (doubly robust): ``V(m) + d / p * (y - m(u, o))``, with a direct model m of acceptance
  (``rewards_df``: a conversion model fitted on an earlier window), ``V(m)`` the cascade value
  of the list under m and ``d = b_r prod_{s != r} (1 - b_s m(u, L_u[s]))`` the change of V
  per unit of the r-th offer's probability (the one-step correction of the plug-in value).
  It is unbiased when m is right, and off by a term of second order in m's error when only the
  propensities are right: small at conversion rates of a few percent. It is the only one of
  the three that estimates V itself and that credits offers the logging policy never showed to
  such users (through m, so only as far as m generalises).

A user's value is the mean over their impressions; a policy's, the mean over users, so a
paired bootstrap over users compares two policies on the same logged views.

The users with logged impressions are the ones the logging policy chose to show offers to,
not the users a list would be served to: a legacy policy that shows free users offers more
often than paid ones fills the log with the users most likely to accept.
:func:`post_stratified` re-weights the per-user values to a population's mix of strata (the
plan each user holds, per market), which is the rate a test serving everyone measures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys.vocabulary import KEYS

LOGGED_COLUMNS = ("market", "user_id", "offer_id", "propensity", "label")
REWARD_COLUMNS = ("market", "user_id", "offer_id", "reward")
PER_USER_COLUMNS = ("market", "user_id", "impressions", "ips", "dr", "ratio", "ratio_norm")
ESTIMATORS = ("ips", "snips", "dr")
_SURE = 1 - 1e-12  # b_r m below 1, so that the log of a slot's miss stays finite
# The gate's column and the report's: DR, the estimator the gate decides on.
POLICY_VALUE = "policy_value"


def _with_reward(pairs_df: DataFrame, rewards_df: DataFrame, fallback: float) -> DataFrame:
    """``pairs_df`` (market, user_id, offer_id, ...) with ``reward``: the direct model's
    probability for the pair, else ``fallback``."""
    return pairs_df.join(rewards_df, on=[*KEYS, "offer_id"], how="left").withColumn(
        "reward", F.coalesce("reward", F.lit(fallback))
    )


def per_user(
    lists_df: DataFrame,
    logged_df: DataFrame,
    candidates_df: DataFrame,
    rewards_df: DataFrame,
    position_bias: list[float],
    k: int,
) -> DataFrame:
    """Per user with logged impressions: :data:`PER_USER_COLUMNS`.

    Parameters
    ----------
    lists_df : DataFrame
        The target policy's lists: keys, ``item_id``, ``rank`` (ranks above ``k`` ignored).
    logged_df : DataFrame
        :data:`LOGGED_COLUMNS`: one row per logged impression (propensity > 0).
    candidates_df : DataFrame
        The users' keys (any grain): whose impressions count.
    rewards_df : DataFrame
        The direct model: :data:`REWARD_COLUMNS`, P(accept) of each (user, offer) pair that
        is listed or logged; a pair it lacks gets the mean of the others.
    position_bias : list of float
        b_r, the chance a user looks at rank r (its last value repeats past its end).
    k : int
        List length.

    Returns
    -------
    DataFrame
        ``ips`` and ``dr``: the user's mean per impression (the module's formulas); ``ratio``
        the mean of ``w / p`` and ``ratio_norm`` that of ``w / p / sum_r b_r`` (SNIPS's
        denominator).
    """
    bias = F.element_at(
        F.array(*[F.lit(float(b)) for b in position_bias]),
        F.least(F.col("rank"), F.lit(len(position_bias))),
    )
    users_df = candidates_df.select(*KEYS).distinct()
    fallback = float(rewards_df.agg(F.avg("reward")).first()[0] or 0.0)
    top_df = _with_reward(
        lists_df.where(F.col("rank") <= k)
        .select(*KEYS, F.col("item_id").alias("offer_id"), "rank", bias.alias("bias"))
        .join(users_df, on=list(KEYS), how="inner"),
        rewards_df,
        fallback,
    ).withColumn("_miss", F.log1p(-F.least(F.col("bias") * F.col("reward"), F.lit(_SURE))))
    # log of the chance that no slot converts under m, summed in logs over the user's slots
    direct_df = top_df.groupBy(*KEYS).agg(
        F.sum("_miss").alias("_none"), F.sum("bias").alias("total_bias")
    )
    slots_df = top_df.join(direct_df, on=list(KEYS), how="inner").select(
        *KEYS,
        "offer_id",
        "bias",
        (F.col("bias") * F.exp(F.col("_none") - F.col("_miss"))).alias("slope"),
    )
    impressions_df = _with_reward(
        logged_df.join(users_df, on=list(KEYS), how="inner"), rewards_df, fallback
    )
    ratio = F.coalesce(F.col("bias"), F.lit(0.0)) / F.col("propensity")
    slope = F.coalesce(F.col("slope"), F.lit(0.0)) / F.col("propensity")
    direct = F.coalesce(1 - F.exp(F.col("_none")), F.lit(0.0))
    total_bias = F.coalesce(F.col("total_bias"), F.lit(0.0))
    return (
        impressions_df.join(slots_df, on=[*KEYS, "offer_id"], how="left")
        .join(direct_df, on=list(KEYS), how="left")
        .select(
            *KEYS,
            (ratio * F.col("label")).alias("_ips"),
            (direct + slope * (F.col("label") - F.col("reward"))).alias("_dr"),
            ratio.alias("_ratio"),
            F.when(total_bias > 0, ratio / total_bias).otherwise(F.lit(0.0)).alias("_norm"),
        )
        .groupBy(*KEYS)
        .agg(
            F.count(F.lit(1)).alias("impressions"),
            F.avg("_ips").alias("ips"),
            F.avg("_dr").alias("dr"),
            F.avg("_ratio").alias("ratio"),
            F.avg("_norm").alias("ratio_norm"),
        )
    )


def by_stratum(per_user_df: DataFrame, strata: Sequence[str]) -> pd.DataFrame:
    """The per-user figures summed per stratum in one pass: all :func:`summary` and
    :func:`post_stratified` need, a few rows per market whatever the users.

    Parameters
    ----------
    per_user_df : DataFrame
        :func:`per_user`'s rows with the ``strata`` columns added.
    strata : sequence of str
        The columns that define a stratum, e.g. ``("market", "current_plan")``.

    Returns
    -------
    pandas.DataFrame
        ``strata``, ``users``, ``impressions``, the sums ``ips``, ``ratio_norm`` and ``dr``,
        and ``dr_var``, the sample variance of ``dr`` (0 for a single user).
    """
    return (
        per_user_df.groupBy(*strata)
        .agg(
            F.count(F.lit(1)).alias("users"),
            F.sum("impressions").alias("impressions"),
            F.sum("ips").alias("ips"),
            F.sum("ratio_norm").alias("ratio_norm"),
            F.sum("dr").alias("dr"),
            F.coalesce(F.var_samp("dr"), F.lit(0.0)).alias("dr_var"),
        )
        .toPandas()
    )


def summary(strata: pd.DataFrame, by: tuple[str, ...] = ()) -> pd.DataFrame:
    """IPS, SNIPS and DR per ``by`` group (one row, pooled, without), and the users and
    impressions behind them, from :func:`by_stratum`'s sums: the means of the per-user
    figures, SNIPS as the IPS sum over the normalised ratios' sum."""
    sums = _sums(strata, by, ["users", "impressions", "ips", "ratio_norm", "dr"])
    return pd.DataFrame(
        {
            "ips": sums["ips"] / sums["users"],
            "snips": sums["ips"] / sums["ratio_norm"].clip(lower=1e-12),
            "dr": sums["dr"] / sums["users"],
            "users": sums["users"],
            "impressions": sums["impressions"],
        }
    )


def post_stratified(
    strata: pd.DataFrame,
    population: pd.DataFrame,
    columns: Sequence[str],
    by: tuple[str, ...] = (),
) -> pd.DataFrame:
    """The DR value re-weighted from the logged users' mix of strata to a population's.

    Parameters
    ----------
    strata : pandas.DataFrame
        :func:`by_stratum`'s sums per stratum.
    population : pandas.DataFrame
        The ``columns`` and ``users``: how many users of the population each stratum holds
        (every user a list would be served to).
    columns : sequence of str
        The columns that define a stratum, e.g. ``("market", "current_plan")``; ``by`` must
        be among them.
    by : tuple of str
        Group columns (none: one pooled row).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``by``: ``served``, the sum over strata of the stratum's mean DR times its
        share of the population, over the strata with logged users; ``served_se``: its
        standard error (strata independent); ``coverage``: the population's share in those
        strata (the rest have no logged user to stand for them and are left out of both
        sums).
    """
    columns = list(columns)
    logged = strata[columns].assign(
        mean=strata["dr"] / strata["users"], var=strata["dr_var"], n=strata["users"]
    )
    joined = population[[*columns, "users"]].merge(logged, on=columns, how="left")
    covered = joined["mean"].notna()
    cells = joined.assign(
        covered=joined["users"].where(covered, 0),
        weighted=(joined["users"] * joined["mean"]).where(covered, 0.0),
        variance=(joined["users"] ** 2 * joined["var"] / joined["n"]).where(covered, 0.0),
    )
    sums = _sums(cells, by, ["users", "covered", "weighted", "variance"])
    covered_users = sums["covered"].where(sums["covered"] > 0)
    return pd.DataFrame(
        {
            "served": sums["weighted"] / covered_users,
            "served_se": np.sqrt(sums["variance"]) / covered_users,
            "coverage": sums["covered"] / sums["users"],
        }
    )


def _sums(frame: pd.DataFrame, by: tuple[str, ...], columns: list[str]) -> pd.DataFrame:
    """``columns`` of ``frame`` summed per ``by`` group, or into one row (index 0) without,
    which an empty frame leaves at zero."""
    keys = list(by) if by else np.zeros(len(frame), dtype=int)
    sums = frame.groupby(keys, sort=True, dropna=False)[columns].sum()
    return sums if by else sums.reindex([0], fill_value=0)
