"""Top-k is deterministic: ties break by offer id, unknown scores go last."""

from __future__ import annotations

from chispa import assert_df_equality

from recsys.ranking import top_k


def test_ties_break_by_offer_id_and_nulls_go_last(spark):
    scores_df = spark.createDataFrame(
        [
            ("SE", "u1", "premium_family", 0.5),
            ("SE", "u1", "premium_duo", 0.5),
            ("SE", "u1", "premium_individual", None),
            ("SE", "u1", "audiobooks_addon", 0.9),
            ("DE", "u1", "premium_duo", None),
            ("DE", "u1", "premium_family", None),
        ],
        "market string, user_id string, offer_id string, score double",
    )
    expected = spark.createDataFrame(
        [
            ("SE", "u1", "audiobooks_addon", 0.9, 1),
            ("SE", "u1", "premium_duo", 0.5, 2),
            ("SE", "u1", "premium_family", 0.5, 3),
            ("DE", "u1", "premium_duo", None, 1),
            ("DE", "u1", "premium_family", None, 2),
        ],
        "market string, user_id string, offer_id string, score double, rank int",
    )
    assert_df_equality(top_k(scores_df, 3), expected, ignore_row_order=True, ignore_nullable=True)
