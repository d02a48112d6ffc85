"""The conversion model against an oracle: a response with known structure, logged under a
policy that never showed one (segment, offer) pair, which the model must still rank first."""

from __future__ import annotations

import datetime as dt
import logging
import math

import numpy as np
import pytest
from pyspark.sql import functions as F

from recsys.features import offer_features, plan_tiers, user_features, with_pair_features
from recsys.models import FAMILIES
from recsys.models.conversion import OFFER_FIT
from recsys.ranking import top_k
from recsys.supervision import Supervised

USERS = 1_600
# offer -> (plan_id, kind, tier, trial_days, price)
OFFERS = {
    "solo": ("solo", "plan", 2, None, 10.0),
    "solo_trial": ("solo", "promo", 2, 30, 10.0),
    "family": ("family", "plan", 4, None, 16.0),
    "family_trial": ("family", "promo", 4, 30, 16.0),
}


def _logit(user: int, offer: str) -> float:
    """Trials pull everyone; households want the family tier, others do not; free users are
    keener than basic ones."""
    _, _, tier, trial, _ = OFFERS[offer]
    household = user % 2 == 0
    free = user % 4 < 2
    family = tier == 4
    return -3.0 + 1.2 * bool(trial) + (2.0 if household else -1.0) * family + (0.5 if free else 0.0)


def _plan(user: int) -> str:
    return "free" if user % 4 < 2 else "basic"


def _shown(user: int) -> list[str]:
    """The logging policy never shows the family trial to free users."""
    offers = list(OFFERS)
    return [o for o in offers if not (_plan(user) == "free" and o == "family_trial")]


@pytest.fixture(scope="module")
def logged_world(spark):
    rng = np.random.default_rng(5)
    catalog_df = spark.createDataFrame(
        [("AA", o, p, k, t, 30, tr, None, pr) for o, (p, k, t, tr, pr) in OFFERS.items()]
        + [("AA", "basic", "basic", "plan", 1, 30, None, None, 5.0)],
        "market string, offer_id string, plan_id string, kind string, tier int, "
        "period_days int, trial_days int, discount_months int, price double",
    )
    user_ids = [f"u{u}" for u in range(USERS)]
    rows_df = spark.createDataFrame(
        [("AA", u, 0, f"u{u}", "signal:household", False, 2.0) for u in range(USERS) if u % 2 == 0]
        + [("AA", u, 1, f"u{u}", "genre:pop", False, 1.0) for u in range(USERS)],
        "market string, user_idx long, item_idx long, user_id string, item_id string, "
        "is_offer boolean, confidence double",
    )
    state_df = spark.createDataFrame(
        [("AA", user_ids[u], _plan(u), [], False, False) for u in range(USERS)],
        "market string, user_id string, current_plan string, active_addons array<string>, "
        "has_used_trial boolean, is_student_verified boolean",
    )
    profile_df = spark.createDataFrame(
        [("AA", uid, dt.date(2026, 1, 1), None) for uid in user_ids],
        "market string, user_id string, signup_date date, household_size_hint int",
    )
    users_df = user_features(rows_df, state_df, profile_df, at=dt.date(2026, 10, 1)).persist()
    offers_df = offer_features(catalog_df, "solo")
    tiers_df = plan_tiers(catalog_df)
    examples = []
    for u in range(USERS):
        for offer in _shown(u):
            for _ in range(3):
                p = 1 / (1 + math.exp(-_logit(u, offer)))
                examples.append(
                    ("AA", user_ids[u], offer, float(rng.random() < p), 0.25, False, u % 2)
                )
    pairs_df = spark.createDataFrame(
        examples,
        "market string, user_id string, offer_id string, label double, propensity double, "
        "is_organic boolean, fold int",
    )
    acceptances_df = spark.createDataFrame([], "market string, offer_id string, acceptances long")
    supervised = Supervised(
        with_pair_features(pairs_df, users_df, offers_df, tiers_df).persist(),
        users_df,
        offers_df,
        tiers_df,
        acceptances_df,
        "impressions",
        False,
    )
    candidates_df = spark.createDataFrame(
        [("AA", user_ids[u], o, _plan(u)) for u in range(USERS) for o in OFFERS],
        "market string, user_id string, offer_id string, current_plan string",
    )
    yield rows_df, supervised, candidates_df
    supervised.examples_df.unpersist()
    users_df.unpersist()


def _firsts(model, candidates_df) -> dict[str, str]:
    ranked = top_k(model.score(candidates_df), 1).collect()
    return {r["user_id"]: r["offer_id"] for r in ranked}


def test_an_offer_never_shown_to_a_segment_still_ranks_first_for_it(config, logged_world):
    """Free households never saw the family trial, yet it is their best offer (trial pull and
    family fit add up); the model learns both from the pairs it did see, by the offers'
    attributes."""
    rows_df, supervised, candidates_df = logged_world
    params = config.train.models.conversion.params.model_dump()
    model = FAMILIES["conversion"](params, seed=1).fit(rows_df, supervised)
    firsts = _firsts(model, candidates_df)
    best = {f"u{u}": max(OFFERS, key=lambda o, u=u: _logit(u, o)) for u in range(USERS)}
    free_households = [f"u{u}" for u in range(USERS) if u % 4 == 0]
    right = sum(firsts[u] == best[u] == "family_trial" for u in free_households)
    assert right / len(free_households) >= 0.9
    overall = sum(firsts[u] == best[u] for u in best) / USERS
    assert overall >= 0.9


def test_its_score_is_the_logit_of_a_probability_close_to_the_truth(config, logged_world):
    rows_df, supervised, candidates_df = logged_world
    params = config.train.models.conversion.params.model_dump()
    model = FAMILIES["conversion"](params, seed=1).fit(rows_df, supervised)
    scored = model.score(candidates_df).where(F.col("user_id").isin("u1", "u3")).collect()
    for row in scored:
        u = int(row["user_id"][1:])
        truth = 1 / (1 + math.exp(-_logit(u, row["offer_id"])))
        assert 1 / (1 + math.exp(-row["score"])) == pytest.approx(truth, abs=0.06)


def test_it_explains_a_household_pick_by_the_household_signal(config, logged_world):
    rows_df, supervised, candidates_df = logged_world
    params = config.train.models.conversion.params.model_dump()
    model = FAMILIES["conversion"](params, seed=1).fit(rows_df, supervised)
    lists_df = candidates_df.where(
        (F.col("offer_id") == "family_trial") & F.col("user_id").isin("u0", "u4", "u8")
    )
    reasons = {r["user_id"]: r["reason_code"] for r in model.explain(lists_df, rows_df).collect()}
    assert reasons == {"u0": "signal:household", "u4": "signal:household", "u8": "signal:household"}
    # A pattern of recommend.reason_tokens lets every token with its prefix be the reason.
    signals = model.explain(lists_df, rows_df, reason_tokens=["signal:*"]).collect()
    assert {r["reason_code"] for r in signals} == {"signal:household"}
    # A token left out of recommend.reason_tokens is never the reason shown.
    withheld = model.explain(lists_df, rows_df, reason_tokens=["genre:pop"]).collect()
    assert {r["reason_code"] for r in withheld} <= {"genre:pop", OFFER_FIT}
    assert {
        r["reason_code"] for r in model.explain(lists_df, rows_df, reason_tokens=[]).collect()
    } == {OFFER_FIT}


def test_a_window_where_nobody_accepted_says_so_and_gives_finite_scores(config, logged_world):
    rows_df, supervised, candidates_df = logged_world
    nobody = Supervised(
        supervised.examples_df.withColumn("label", F.lit(0.0)),
        *(getattr(supervised, f) for f in ("users_df", "offers_df", "tiers_df", "acceptances_df")),
        "impressions",
        False,
    )
    params = config.train.models.conversion.params.model_dump()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("recsys.models.conversion")
    logger.addHandler(handler)
    try:
        model = FAMILIES["conversion"](params, seed=1).fit(rows_df, nobody)
    finally:
        logger.removeHandler(handler)
    assert any("one class only" in r.getMessage() for r in records)
    scores = [r["score"] for r in model.score(candidates_df.limit(8)).collect()]
    assert all(math.isfinite(s) for s in scores)
