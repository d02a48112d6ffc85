"""An oracle with a known answer (implicit's checkerboard): two groups of users, each using
only its own half of the items. One item per user is withheld; every collaborative-filtering
model must rank it first among the items the user has not used."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from recsys.models import BASELINES, FAMILIES
from recsys.ranking import top_k

USERS, HALF = 40, 5
# Collaborative filtering learns from the rows alone; supervised families need labels.
CF_FAMILIES = sorted(f for f in FAMILIES if f not in BASELINES and not FAMILIES[f].supervised)
PARAMS = {
    "spark_als": {"factors": 4, "regularization": 0.01, "alpha": 10, "iterations": 15},
    "implicit_als": {"factors": 4, "regularization": 0.01, "alpha": 10, "iterations": 15},
    "implicit_bpr": {
        "factors": 4,
        "learning_rate": 0.05,
        "regularization": 0.01,
        "iterations": 300,
    },
}


def _group_items(user: int) -> list[int]:
    return list(range(HALF)) if user % 2 == 0 else list(range(HALF, 2 * HALF))


def _withheld(user: int) -> int:
    return _group_items(user)[(user // 2) % HALF]


@pytest.fixture(scope="module")
def checkerboard(spark):
    rows, candidates = [], []
    for user in range(USERS):
        for item in _group_items(user):
            if item != _withheld(user):
                rows.append(("XX", user, item, f"u{user}", f"o{item}", True, 1.0))
        used = set(_group_items(user)) - {_withheld(user)}
        candidates += [
            ("XX", f"u{user}", f"o{item}", "free") for item in range(2 * HALF) if item not in used
        ]
    interactions_df = spark.createDataFrame(
        rows,
        "market string, user_idx long, item_idx long, user_id string, item_id string, "
        "is_offer boolean, confidence double",
    )
    candidates_df = spark.createDataFrame(
        candidates, "market string, user_id string, offer_id string, current_plan string"
    )
    expected = {f"u{user}": f"o{_withheld(user)}" for user in range(USERS)}
    return interactions_df, candidates_df, expected


@pytest.mark.parametrize("family", CF_FAMILIES)
def test_the_withheld_item_ranks_first(family, checkerboard):
    interactions_df, candidates_df, expected = checkerboard
    model = FAMILIES[family](PARAMS[family], seed=11).fit(interactions_df)
    firsts = top_k(model.score(candidates_df), 1).select("user_id", "offer_id").collect()
    got = {r["user_id"]: r["offer_id"] for r in firsts}
    wrong = {u: (got.get(u), item) for u, item in expected.items() if got.get(u) != item}
    assert not wrong, f"{family}: (ranked first, withheld) for {len(wrong)} users: {wrong}"


def test_popularity_cannot_solve_it(checkerboard):
    """The data set is not trivial: the same list for everyone gets half the users wrong."""
    interactions_df, candidates_df, expected = checkerboard
    model = FAMILIES["popularity"]({}, seed=11).fit(interactions_df)
    firsts = top_k(model.score(candidates_df), 1).where(F.col("rank") == 1).collect()
    right = sum(expected[r["user_id"]] == r["offer_id"] for r in firsts)
    assert right <= USERS * 0.6
