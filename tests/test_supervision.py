"""What the conversion model learns from: a window's labelled impressions and page views."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality

from recsys import schemas as S
from recsys.errors import RecsysError
from recsys.supervision import CANDIDATES, IMPRESSIONS, labelled_log, rows_source

BEGIN, END = dt.datetime(2026, 9, 20), dt.datetime(2026, 10, 11)


def test_a_window_keeps_usable_impressions_and_views_labelled_before_its_end(spark):
    at = dt.datetime
    rows = [
        # taken inside the window: a positive
        ("SE", "u1", "premium_family", "offer_impression", at(2026, 9, 21), 0.25, at(2026, 9, 22)),
        # taken after the window's end: not a positive of this window
        ("SE", "u2", "premium_duo", "offer_impression", at(2026, 10, 9), 0.5, at(2026, 10, 12)),
        # a propensity of 0, and a missing one: left out, never divided by
        ("SE", "u3", "premium_duo", "offer_impression", at(2026, 9, 25), 0.0, None),
        ("SE", "u4", "premium_duo", "offer_impression", at(2026, 9, 25), None, None),
        # before the window, and an acceptance row: not examples
        ("SE", "u5", "premium_duo", "offer_impression", at(2026, 9, 19), 0.5, None),
        ("SE", "u1", "premium_family", "acceptance", at(2026, 9, 22), None, at(2026, 9, 22)),
        # a plan-page view: an organic example, no propensity
        ("SE", "u6", "premium_individual", "plan_page_view", at(2026, 10, 1), None, None),
    ]
    log_df = spark.createDataFrame(rows, S.OFFER_LOG_SCHEMA.fieldNames()[:-1])
    expected = spark.createDataFrame(
        [
            ("SE", "u1", "premium_family", 1.0, 0.25, False),
            ("SE", "u2", "premium_duo", 0.0, 0.5, False),
            ("SE", "u6", "premium_individual", 0.0, None, True),
        ],
        "market string, user_id string, offer_id string, label double, propensity double, "
        "is_organic boolean",
    )
    assert_df_equality(
        labelled_log(log_df, BEGIN, END), expected, ignore_row_order=True, ignore_nullable=True
    )


def test_the_rows_follow_the_impressions_unless_set():
    snapshot = dt.date(2026, 11, 1)
    assert rows_source("auto", has_impressions=True, snapshot=snapshot) == IMPRESSIONS
    assert rows_source("auto", has_impressions=False, snapshot=snapshot) == CANDIDATES
    assert rows_source("candidates", has_impressions=True, snapshot=snapshot) == CANDIDATES
    with pytest.raises(RecsysError, match="offer_log has no offer_impression rows for snapshot"):
        rows_source("impressions", has_impressions=False, snapshot=snapshot)
