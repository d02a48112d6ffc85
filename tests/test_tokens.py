"""Token lists with prefix patterns: the Python and the Spark matcher agree, and the patterns
suggested for unknown tokens cover them without matching an offer id."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from recsys.tokens import covering_patterns, entry_problem, matches, matches_column, overlaps

ENTRIES = ["contract:*", "household:senior", "tenure:1*"]
CASES = [
    ("contract:two_year", True),
    ("contract:", True),  # the empty rest is still "starts with"
    ("contracts:x", False),
    ("household:senior", True),
    ("household:partner", False),
    ("tenure:12-23m", True),
    ("tenure:0-11m", False),
    ("", False),
]


@pytest.mark.parametrize(("token", "expected"), CASES)
def test_a_token_matches_a_listed_token_or_a_patterns_prefix(token, expected):
    assert matches(token, ENTRIES) is expected


def test_spark_matches_as_python_does_and_null_matches_nothing(spark):
    rows = [(token,) for token, _ in CASES] + [(None,)]
    df = spark.createDataFrame(rows, "item_id string")
    got = {
        r["item_id"]: r["is_token"]
        for r in df.select(
            "item_id", matches_column(F.col("item_id"), ENTRIES).alias("is_token")
        ).collect()
    }
    assert got == {**dict(CASES), None: False}


def test_an_empty_list_matches_nothing(spark):
    assert not matches("genre:pop", [])
    row = spark.range(1).select(matches_column(F.lit("genre:pop"), []).alias("m")).first()
    assert row["m"] is False


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("contract:*", None),
        ("contract:two_year", None),
        ("*", "'*' alone would match every item"),
        ("*:yes", "'*' may only end an entry"),
        ("con*tract", "'*' may only end an entry"),
    ],
)
def test_only_a_trailing_star_with_a_prefix_is_a_pattern(entry, problem):
    found = entry_problem(entry)
    assert (found is None) if problem is None else (problem in found)


def test_a_pattern_overlaps_the_tokens_and_patterns_it_shares_a_token_with():
    assert overlaps("genre:*", ["genre:pop"])
    assert overlaps("genre:p*", ["genre:*"])  # narrower than a listed pattern
    assert overlaps("genre:*", ["genre:p*"])  # wider: genre:pop is in both
    assert overlaps("genre:pop", ["genre:*"])
    assert not overlaps("sex:*", ["genre:*", "signal:household"])


def test_covering_patterns_use_the_prefix_unless_it_would_match_an_offer():
    tokens = ["age:young", "age:senior", "area:rural", "vip", "premium:gold"]
    assert covering_patterns(tokens, avoid=["premium:family", "free"]) == [
        "age:*",
        "area:*",
        "premium:gold",
        "vip",
    ]
