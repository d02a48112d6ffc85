"""The hidden response model: how likely a synthetic user is to accept an offer.

Acceptance is a logit choice. An offer's utility to a user is

    U(u, o) = intercept(kind) + fit(u, plan of o) + promo(u, o) - price_coef * s_u * burden(o)
              + noise * z(u, o)

- ``fit`` is where hidden traits meet plans: households of three or more want Family, pairs Duo,
  students Student, heavy and offline listeners who dislike ads Premium, price-sensitive light
  listeners the cheap short plan, audiobook listeners the add-on;
- ``burden`` is the offer's monthly-equivalent price relative to Premium Individual in the same
  market, and the price sensitivity ``s_u`` grows as a market's price level falls;
- ``z(u, o)`` is a fixed idiosyncratic taste per user and offer: no model can see it, so no
  model can be perfect.

A user holding plan ``c`` accepts ``o`` with probability sigmoid(U(u, o) - hold * fit(u, c))
when ``o`` is feasible for them, else 0. The same functions give the logged history, the
simulator's answers, and the oracle.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.markets import OfferType
from recsys.rand import Rng

INTERCEPT = {"plan": -3.3, "promo": -3.3, "addon": -4.4}
PRICE_COEF = 1.5
HOLD = 0.8  # share of the current plan's fit an offer must beat: upgrading gains the difference
TRIAL_BONUS = 0.9
TRIAL_BURDEN = 0.3  # a free month still weighs: the user expects to pay afterwards
DISCOUNT_BONUS = 0.5  # per unit of price sensitivity above average
ANNUAL_COMMITMENT = -0.7

FREE = S.FREE_PLAN


def _trait(name: str) -> Column:
    return F.col(name)


def premium_core() -> Column:
    """What every premium plan gives: no ads, offline, unlimited skips."""
    return (
        1.1 * _trait("offline_need")
        + 0.6 * F.log1p(_trait("listening_hours"))
        + 0.9 * (1 - _trait("ad_tolerance"))
    )


def _is(condition: Column) -> Column:
    return condition.cast("double")


def plan_fit(plan_id: str) -> Column:
    """How well a plan suits the user, before price (0 for free)."""
    household = _trait("household_size")
    core = premium_core()
    if plan_id == FREE:
        return F.lit(0.0)
    if plan_id == "premium_duo":
        return (
            0.8 * core
            + 2.2 * _is(household == 2)
            - 1.2 * _is(household == 1)
            - 0.5 * _is(household >= 3)
        )
    if plan_id == "premium_family":
        return (
            0.8 * core
            + 2.6 * _is(household >= 3)
            + 0.3 * _is(household == 2)
            - 1.8 * _is(household == 1)
        )
    if plan_id == "premium_student":
        return core + 2.0 * _is(_trait("is_student"))
    if plan_id == "premium_mini":
        return (
            0.9 * (1 - _trait("ad_tolerance"))
            + 0.8 * (_trait("price_sensitivity") - 1)
            - 0.5 * F.log1p(_trait("listening_hours"))
            + 1.2
        )
    return core  # premium_individual, and any other premium plan a catalogue defines


def current_plan_fit(plan: Column, plan_ids: list[str]) -> Column:
    """fit(u, c) of the plan each user holds now (0 for free)."""
    fit = F.lit(0.0)
    for plan_id in plan_ids:
        fit = F.when(plan == plan_id, plan_fit(plan_id)).otherwise(fit)
    return fit


def addon_fit() -> Column:
    return 4.5 * _trait("audiobook_affinity")


def offer_utility(
    offer_id: str, offer: OfferType, burden: Column, rng: Rng, noise: float
) -> Column:
    """U(u, o) for every user row; ``burden`` is the offer's relative monthly price."""
    sensitivity = _trait("price_sensitivity")
    fit = addon_fit() if offer.kind == "addon" else plan_fit(offer.plan_id)
    promo = F.lit(0.0)
    if offer.trial_days:
        promo = promo + TRIAL_BONUS
        burden = burden * TRIAL_BURDEN
    if offer.discount_months:
        promo = promo + DISCOUNT_BONUS * (sensitivity - 1)
    if offer.period_days >= 300:
        promo = promo + ANNUAL_COMMITMENT + 0.5 * F.log1p(_trait("listening_hours"))
    return (
        INTERCEPT[offer.kind]
        + fit
        + promo
        - PRICE_COEF * sensitivity * burden
        + noise * rng.normal(f"taste/{offer_id}")
    )


def is_feasible(
    offer: OfferType,
    current_plan: Column,
    current_tier: Column,
    has_used_trial: Column,
    addons: Column,
    offer_id: str,
) -> Column:
    """Whether the user could take the offer at all (true world, not the serving rules)."""
    if offer.kind == "addon":
        return current_plan.isin(*offer.requires_plans) & ~F.array_contains(addons, offer_id)
    upgrade = F.lit(offer.tier) > current_tier
    if offer.period_days >= 300:  # annual prepay: also a switch of billing on the same plan
        upgrade = upgrade | (F.lit(offer.plan_id) == current_plan)
    feasible = upgrade
    if offer.trial_days:
        feasible = feasible & ~has_used_trial & (current_tier <= 1)
    if offer.requires_verification:
        feasible = feasible & _trait("is_student")
    return feasible


def sigmoid(x: Column) -> Column:
    return 1 / (1 + F.exp(-x))


def accept_probability(utility: Column, current_fit: Column, feasible: Column) -> Column:
    return F.when(feasible, sigmoid(utility - HOLD * current_fit)).otherwise(F.lit(0.0))
