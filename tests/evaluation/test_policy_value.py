"""Off-policy values of a list policy: the Spark estimators against a pure-Python reference,
and unbiasedness against a logging policy whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from chispa import assert_approx_df_equality
from pyspark.sql import functions as F

from recsys.evaluation import policy_value

BIAS = [1.0, 0.6, 0.4]


def _reference(lists, logged, rewards, k):
    """Per user (ips, dr, ratio, ratio_norm) by the module's formulas, in plain Python."""
    fallback = sum(rewards.values()) / len(rewards)

    def m(user, offer):
        return rewards.get((user, offer), fallback)

    def b(rank):
        return BIAS[min(rank, len(BIAS)) - 1]

    out = {}
    for user in {u for _, u, *_ in logged}:
        ranked = {o: r for (u, o, r) in lists if u == user and r <= k}
        misses = {o: 1 - b(r) * m(user, o) for o, r in ranked.items()}
        direct = 1 - float(np.prod(list(misses.values())))
        total = sum(b(r) for r in ranked.values())
        rows = []
        for _, u, offer, p, y in logged:
            if u != user:
                continue
            w = b(ranked[offer]) if offer in ranked else 0.0
            others = [miss for o, miss in misses.items() if o != offer]
            d = w * float(np.prod(others))
            rows.append((w / p * y, direct + d / p * (y - m(user, offer)), w / p, w / p / total))
        out[user] = (*tuple(float(np.mean(c)) for c in zip(*rows, strict=True)), len(rows))
    return out


def test_the_estimators_match_a_python_reference(spark):
    lists = [("a", "x", 1), ("a", "y", 2), ("a", "z", 3), ("b", "y", 1), ("b", "x", 2)]
    logged = [
        ("SE", "a", "x", 0.5, 1.0),
        ("SE", "a", "z", 0.25, 0.0),
        ("SE", "a", "w", 0.25, 1.0),  # not in the list: no IPS credit, DR keeps its residual
        ("SE", "b", "x", 0.2, 1.0),
    ]
    # The direct model knows some pairs; the others get the mean of those it knows.
    rewards = {("a", "x"): 0.1, ("a", "y"): 0.05, ("a", "w"): 0.3, ("b", "x"): 0.08}
    lists_df = spark.createDataFrame(
        [("SE", u, o, r) for u, o, r in lists],
        "market string, user_id string, item_id string, rank int",
    )
    logged_df = spark.createDataFrame(
        logged, "market string, user_id string, offer_id string, propensity double, label double"
    )
    candidates_df = spark.createDataFrame(
        [("SE", "a"), ("SE", "b")], "market string, user_id string"
    )
    rewards_df = spark.createDataFrame(
        [("SE", u, o, r) for (u, o), r in rewards.items()],
        "market string, user_id string, offer_id string, reward double",
    )

    got = policy_value.per_user(lists_df, logged_df, candidates_df, rewards_df, BIAS, 3)

    reference = _reference(lists, logged, rewards, 3)
    expected = spark.createDataFrame(
        [("SE", u, n, ips, dr, ratio, norm) for u, (ips, dr, ratio, norm, n) in reference.items()],
        "market string, user_id string, impressions long, ips double, dr double, "
        "ratio double, ratio_norm double",
    )
    assert_approx_df_equality(
        got, expected, 1e-12, ignore_row_order=True, ignore_nullable=True, ignore_column_order=True
    )


def _known_policy(spark, q, reward):
    """A logging policy shows one of four offers at random with known propensities; users
    take offer o with probability q[o]. The target list is (o3, o1); the direct model gives
    ``reward(o)`` for each pair. Returns the pooled summary."""
    rng = np.random.default_rng(3)
    propensities = {"o0": 0.4, "o1": 0.3, "o2": 0.2, "o3": 0.1}
    offers = list(q)
    logged = []
    for user in range(20_000):
        offer = offers[rng.choice(4, p=[propensities[o] for o in offers])]
        logged.append(
            ("SE", f"u{user}", offer, propensities[offer], float(rng.random() < q[offer]))
        )
    logged_df = spark.createDataFrame(
        logged, "market string, user_id string, offer_id string, propensity double, label double"
    )
    lists_df = spark.createDataFrame(
        [("SE", f"u{u}", o, r) for u in range(20_000) for o, r in (("o3", 1), ("o1", 2))],
        "market string, user_id string, item_id string, rank int",
    )
    candidates_df = logged_df.select("market", "user_id")
    rewards_df = spark.createDataFrame(
        [("SE", f"u{u}", o, reward(o)) for u in range(20_000) for o in offers],
        "market string, user_id string, offer_id string, reward double",
    )
    per_user = policy_value.per_user(lists_df, logged_df, candidates_df, rewards_df, BIAS, 3)
    summary = policy_value.summary(policy_value.by_stratum(per_user, ["market"])).iloc[0]
    assert summary["users"] == 20_000
    return summary


def test_dr_recovers_the_cascade_value_ips_the_sum_of_looks(spark):
    """Users who take an offer often: the list converts 1 - (1 - 1.0 q3)(1 - 0.6 q1) = 0.72
    of views, while the looks' acceptances sum to 0.9. DR with the right direct model finds
    the first; IPS and SNIPS, which need no model, estimate the second."""
    q = {"o0": 0.02, "o1": 0.5, "o2": 0.05, "o3": 0.6}
    summary = _known_policy(spark, q, q.get)
    assert summary["dr"] == pytest.approx(1 - (1 - q["o3"]) * (1 - 0.6 * q["o1"]), abs=0.03)
    assert summary["ips"] == pytest.approx(q["o3"] + 0.6 * q["o1"], abs=0.05)
    assert summary["snips"] == pytest.approx(q["o3"] + 0.6 * q["o1"], abs=0.05)


def test_dr_with_a_wrong_direct_model_is_close_at_low_rates(spark):
    """At the rates of plan offers a deliberately wrong direct model leaves DR within its
    sampling error of the cascade value: the propensities are right, and the error the model
    leaves is of second order."""
    q = {"o0": 0.02, "o1": 0.10, "o2": 0.05, "o3": 0.30}
    summary = _known_policy(spark, q, lambda _: 0.05)
    assert summary["dr"] == pytest.approx(1 - (1 - q["o3"]) * (1 - 0.6 * q["o1"]), abs=0.03)
    assert summary["ips"] == pytest.approx(q["o3"] + 0.6 * q["o1"], abs=0.03)
    assert summary["snips"] == pytest.approx(q["o3"] + 0.6 * q["o1"], abs=0.03)


def test_post_stratified_reweights_the_logged_users_to_the_population(spark):
    """The log over-represents free users (2 of 3 logged, 1 in 5 of the population): each
    plan's mean counts by its population share; a plan with no logged user is left out and
    reported as uncovered."""
    per_user_df = spark.createDataFrame(
        [
            ("SE", "u1", "free", 0.2),
            ("SE", "u2", "free", 0.4),
            ("SE", "u3", "premium_individual", 0.0),
            ("NO", "u4", "free", 0.1),
        ],
        "market string, user_id string, current_plan string, dr double",
    ).withColumns({"impressions": F.lit(1), "ips": F.lit(0.0), "ratio_norm": F.lit(0.0)})
    population_df = spark.createDataFrame(
        [
            ("SE", "free", 100),
            ("SE", "premium_individual", 300),
            ("SE", "premium_student", 100),
            ("NO", "free", 50),
        ],
        "market string, current_plan string, users long",
    )
    strata = ("market", "current_plan")
    sums = policy_value.by_stratum(per_user_df, strata)
    population = population_df.toPandas()
    by_market = policy_value.post_stratified(sums, population, strata, by=("market",))
    se = by_market.loc["SE"]
    assert se["served"] == pytest.approx((100 * 0.3 + 300 * 0.0) / 400)
    assert se["coverage"] == pytest.approx(400 / 500)
    # free: variance 0.02 over 2 users; premium_individual: one user, no spread
    assert se["served_se"] == pytest.approx((100**2 * 0.02 / 2) ** 0.5 / 400)
    assert by_market.loc["NO", "served"] == pytest.approx(0.1)
    pooled = policy_value.post_stratified(sums, population, strata).iloc[0]
    assert pooled["served"] == pytest.approx((100 * 0.3 + 50 * 0.1) / 450)
    assert pooled["coverage"] == pytest.approx(450 / 550)
