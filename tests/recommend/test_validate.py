"""Validation names every kind of broken snapshot, and passes a sound one."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from pyspark.sql import types as T

from recsys import schemas as S
from recsys.recommend import validate

# Nullable everywhere, so that a broken row can be built.
SCHEMA = T.StructType(
    [T.StructField(f.name, f.dataType, True) for f in S.PLAN_RECOMMENDATIONS_SCHEMA]
)
NOW = dt.datetime(2026, 11, 1, 6, 0)
DAY = dt.date(2026, 11, 1)


def _row(user, rank, offer, arm="treatment", reason="signal:offline", **changes):
    row = {
        "user_id": user,
        "market": "SE",
        "rank": rank,
        "offer_id": offer,
        "plan_id": offer,
        "display_name": offer and offer.title(),
        "locale": "sv_SE",
        "price_amount": offer and Decimal("129"),
        "currency": "SEK",
        "price_display": offer and "129,00 kr",
        "score": offer and 1.0,
        "p_convert": offer and 0.01,
        "expected_value": offer and 7.0,
        "reason_code": reason,
        "experiment_id": "exp",
        "arm": arm,
        "propensity": 1.0,
        "model_name": "m",
        "model_version": "1",
        "mlflow_run_id": "r",
        "generated_at": NOW,
        "snapshot_date": DAY,
    }
    row.update(changes)
    return tuple(row[c] for c in S.PLAN_RECOMMENDATION_COLUMNS)


def _frames(spark, rows):
    snapshot_df = spark.createDataFrame(rows, SCHEMA)
    users_df = spark.createDataFrame(
        [("SE", "a", "treatment"), ("SE", "b", "treatment"), ("SE", "h", "holdout")],
        "market string, user_id string, arm string",
    )
    verdicts_df = spark.createDataFrame(
        [
            ("SE", "a", "premium_individual", True),
            ("SE", "a", "premium_family", True),
            ("SE", "a", "free", False),
            ("SE", "b", "premium_family", True),
            ("SE", "h", "premium_family", True),
        ],
        "market string, user_id string, offer_id string, eligible boolean",
    )
    return snapshot_df, users_df, verdicts_df


SOUND = [
    ("a", 1, "premium_family"),
    ("a", 2, "premium_individual"),
    ("b", 1, "premium_family"),
]


def _problems(spark, rows, previous=None, k=2):
    snapshot_df, users_df, verdicts_df = _frames(spark, rows)
    previous_df = previous and spark.createDataFrame(previous, SCHEMA)
    return validate.problems(
        snapshot_df, users_df, verdicts_df, previous_df, k=k, max_mix_shift=0.5
    )


def test_a_sound_snapshot_passes(spark):
    rows = [_row(*r) for r in SOUND] + [_row("h", 0, None, arm="holdout", reason="holdout")]
    assert _problems(spark, rows, previous=rows) == []


def test_each_broken_contract_is_named(spark):
    rows = [
        _row("a", 1, "premium_family"),
        _row("a", 2, "free"),  # ineligible
        _row("b", 1, "premium_family", mlflow_run_id=None),  # a null stamp
        _row("x", 1, "premium_family"),  # not a user of the run
        # the holdout user "h" has no row
    ]
    found = _problems(spark, rows)
    # x has no verdicts at all, so its offer counts as ineligible too.
    assert "2 rows with an offer the user is not eligible for (e.g. SE/a, SE/x)" in found
    assert "1 rows with a null mlflow_run_id" in found
    assert "1 users not in this run (e.g. SE/x)" in found
    assert "1 users of the run without rows (e.g. SE/h)" in found


def test_short_lists_and_wrong_no_offer_rows_are_caught(spark):
    rows = [
        _row("a", 1, "premium_family"),  # a has 2 eligible offers and k = 2: one is short
        _row("b", 0, None, reason="no_eligible_offer"),  # b has one eligible offer
        _row("h", 1, "premium_family", arm="holdout"),  # holdout users see nothing
    ]
    found = _problems(spark, rows)
    assert found == ["3 users without ranks 1..min(2, eligible offers) (e.g. SE/a, SE/b, SE/h)"]


def test_a_top_slot_that_moves_too_far_is_refused(spark):
    rows = [_row(*r) for r in SOUND] + [_row("h", 0, None, arm="holdout", reason="holdout")]
    previous = [
        _row("a", 1, "premium_individual"),
        _row("b", 1, "premium_individual"),
    ]
    found = _problems(spark, rows, previous=previous)
    assert any(p.startswith("SE: premium_family holds 100.0% of the top slot") for p in found)


def test_an_offer_without_a_price_passes_but_half_a_price_does_not(spark):
    # A market without prices serves its offers with neither amount nor display.
    unpriced = {"price_amount": None, "price_display": None}
    rows = [
        _row("a", 1, "premium_family", **unpriced),
        _row("a", 2, "premium_individual", **unpriced),
        _row("b", 1, "premium_family", **unpriced),
        _row("h", 0, None, arm="holdout", reason="holdout"),
    ]
    assert _problems(spark, rows) == []
    rows[0] = _row("a", 1, "premium_family", price_display=None)
    rows[3] = _row("h", 0, None, arm="holdout", reason="holdout", price_amount=Decimal("1"))
    # The half price counts in both columns, the price on a row without an offer in one.
    assert _problems(spark, rows) == [
        "2 rows with a wrong null in price_amount",
        "1 rows with a wrong null in price_display",
    ]
