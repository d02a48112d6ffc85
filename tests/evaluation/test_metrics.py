"""Spark ranking metrics against a pure-Python reference, and the bootstrap interval."""

from __future__ import annotations

import math
import random

import pytest
from chispa import assert_approx_df_equality
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys.evaluation import metrics
from recsys.evaluation.metrics import (
    METRICS,
    MRR,
    bootstrap_ci,
    bootstrap_cis,
    bootstrap_mean_ci,
    metric_column,
    per_user_metrics,
    per_user_metrics_at,
    summarize,
)
from recsys.rand import Rng

RECS = "market string, user_id string, item_id string, rank int"
LABELS = "market string, user_id string, item_id string, price double"
OUT = T.StructType(
    [T.StructField("market", T.StringType()), T.StructField("user_id", T.StringType())]
    + [T.StructField(m, T.DoubleType()) for m in METRICS]
)


def reference(ranked: list[str], relevant: dict[str, float], k: int) -> tuple[float, ...]:
    """The textbook definitions, one user at a time."""
    top = ranked[:k]
    rel = [1.0 if item in relevant else 0.0 for item in top]
    hits = sum(rel)
    dcg = sum(r / math.log2(i + 2) for i, r in enumerate(rel))
    idcg = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    ap = sum(sum(rel[: i + 1]) / (i + 1) for i, r in enumerate(rel) if r)
    first_hit = next((i + 1 for i, r in enumerate(rel) if r), None)
    return (
        hits / k,
        hits / len(relevant),
        1.0 if hits else 0.0,
        dcg / idcg,
        ap / min(len(relevant), k),
        1 / first_hit if first_hit else 0.0,
        float(sum(relevant[item] for item in top if item in relevant)),
    )


def test_a_hand_computed_user(spark):
    recs = spark.createDataFrame(
        [("SE", "u", "a", 1), ("SE", "u", "b", 2), ("SE", "u", "c", 3), ("SE", "u", "d", 4)], RECS
    )
    labels = spark.createDataFrame([("SE", "u", "a", 10.0), ("SE", "u", "c", 5.0)], LABELS)
    row = per_user_metrics(recs, labels, 3, value_col="price").first()
    assert row["precision"] == pytest.approx(2 / 3)
    assert row["recall"] == pytest.approx(1.0)
    assert row["hit_rate"] == 1.0
    assert row["ndcg"] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert row["map"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert row["mrr"] == 1.0
    assert row["revenue"] == pytest.approx(15.0)


def test_mrr_is_the_reciprocal_rank_of_the_first_hit_within_k(spark):
    # The leave-one-out case: one relevant item per user, at rank 2, 3 or nowhere.
    recs = spark.createDataFrame(
        [("US", u, item, r) for u in ("u", "v", "w") for r, item in enumerate("abc", start=1)],
        RECS,
    )
    labels = spark.createDataFrame(
        [("US", "u", "b", 1.0), ("US", "v", "c", 1.0), ("US", "w", "z", 1.0)], LABELS
    )
    at_3 = {r["user_id"]: r["mrr"] for r in per_user_metrics(recs, labels, 3).collect()}
    at_1 = {r["user_id"]: r["mrr"] for r in per_user_metrics(recs, labels, 1).collect()}
    assert at_3 == {"u": pytest.approx(1 / 2), "v": pytest.approx(1 / 3), "w": 0.0}
    assert at_1 == {"u": 0.0, "v": 0.0, "w": 0.0}


def test_random_cases_match_the_reference_at_every_k_in_one_pass(spark):
    rng = random.Random(7)
    items = [f"o{i}" for i in range(8)]
    ks = [1, 3, 5]
    recs, labels, cases = [], [], []
    for n in range(300):
        market, user = rng.choice(["SE", "BR"]), f"user{n}"
        relevant = {i: float(rng.randint(1, 99)) for i in rng.sample(items, rng.randint(1, 4))}
        ranked = rng.sample(items, rng.randint(0, 7))  # some users get no list at all
        recs += [(market, user, item, r + 1) for r, item in enumerate(ranked)]
        labels += [(market, user, item, price) for item, price in relevant.items()]
        cases.append((market, user, ranked, relevant))
    recs_df = spark.createDataFrame(recs, RECS)
    labels_df = spark.createDataFrame(labels, LABELS)
    got = per_user_metrics_at(recs_df, labels_df, ks, value_col="price")
    expected = spark.createDataFrame(
        [
            (
                market,
                user,
                *(v for k in ks for v in reference(ranked, relevant, k)),
                # The plain MRR: over the whole ranking, whatever its length.
                reference(ranked, relevant, len(items))[METRICS.index("mrr")],
            )
            for market, user, ranked, relevant in cases
        ],
        T.StructType(
            OUT.fields[:2]
            + [T.StructField(metric_column(m, k), T.DoubleType()) for k in ks for m in METRICS]
            + [T.StructField(MRR, T.DoubleType())]
        ),
    )
    assert_approx_df_equality(got, expected, 1e-9, ignore_row_order=True, ignore_nullable=True)

    # The one-k form is the same figures under the bare metric names.
    at_3 = per_user_metrics(recs_df, labels_df, 3, value_col="price")
    assert at_3.columns == ["market", "user_id", *METRICS]
    summary = {r["market"]: r for r in summarize(at_3, by=("market",)).collect()}
    for market in ("SE", "BR"):
        rows = [reference(r, rel, 3) for m, _, r, rel in cases if m == market]
        assert summary[market]["users"] == len(rows)
        assert summary[market]["ndcg"] == pytest.approx(sum(r[3] for r in rows) / len(rows))


def test_bootstrap_interval_matches_normal_theory(spark):
    rng = random.Random(1)
    values = spark.createDataFrame(
        [(f"u{i}", 1.0 if rng.random() < 0.3 else 0.0) for i in range(4000)],
        "user_id string, x double",
    )
    mean, lower, upper = bootstrap_mean_ci(values, "x", replicates=300)
    assert lower < mean < upper
    half_width = 1.96 * math.sqrt(mean * (1 - mean) / 4000)
    assert (upper - lower) / 2 == pytest.approx(half_width, rel=0.25)


def test_the_plain_mrr_reaches_past_the_largest_k(spark):
    recs = spark.createDataFrame(
        [("US", "u", item, r) for r, item in enumerate("abcdef", start=1)], RECS
    )
    labels = spark.createDataFrame([("US", "u", "e", 1.0)], LABELS)
    row = per_user_metrics_at(recs, labels, [1, 3]).first()
    assert row[metric_column("mrr", 3)] == 0.0
    assert row[MRR] == pytest.approx(1 / 5)


def test_intervals_of_several_columns_in_one_pass_match_one_at_a_time(spark):
    rng = random.Random(3)
    values = spark.createDataFrame(
        [(f"u{i}", rng.random(), float(rng.random() < 0.2)) for i in range(500)],
        "user_id string, x double, y double",
    )
    together = bootstrap_cis(values, ["y", "x"], replicates=100, seed=5)
    assert list(together.index) == ["y", "x"]
    for column in ("x", "y"):
        alone = bootstrap_ci(values, column, replicates=100, seed=5).iloc[0]
        for figure in ("mean", "low", "high", "n"):
            assert together.loc[column, figure] == pytest.approx(alone[figure], rel=1e-9)


def _spark_bootstrap(values_df, column, by, replicates, seed, level):
    """The bootstrap done wholly in Spark, a row per (user, replicate): the reference for
    the driver's draws. Weights are Poisson(1) by inverse CDF of ``Rng.uniform``."""
    u = Rng(seed, F.col("user_id")).uniform("bootstrap", F.col("_r"))
    cdf, term, weight = 0.0, math.exp(-1.0), F.lit(0)
    for n in range(12):
        cdf += term
        weight = weight + (u > F.lit(cdf)).cast("int")
        term /= n + 1
    replicate = F.explode(F.sequence(F.lit(0), F.lit(replicates - 1))).alias("_r")
    means = (
        values_df.select(*by, "user_id", column, replicate)
        .withColumn("_w", weight)
        .groupBy(*by, "_r")
        .agg(F.try_divide(F.sum(F.col(column) * F.col("_w")), F.sum("_w")).alias("_m"))
    )
    tail = (1 - level) / 2
    interval = means.groupBy(*by).agg(
        F.percentile("_m", F.lit(tail)).alias("low"),
        F.percentile("_m", F.lit(1 - tail)).alias("high"),
    )
    point = values_df.groupBy(*by).agg(F.avg(column).alias("mean"), F.count(F.lit(1)).alias("n"))
    joined = point.join(interval, on=list(by), how="left") if by else point.crossJoin(interval)
    return joined.select(*by, "mean", "low", "high", "n").toPandas()


@pytest.mark.parametrize("by", [(), ("market",)])
def test_the_bootstrap_on_the_driver_gives_the_intervals_spark_alone_gives(spark, by, monkeypatch):
    """Same weights, bit for bit, as a bootstrap that draws every (user, replicate) in Spark:
    a missing figure, and a market of two users whose replicates can all weigh zero. The
    driver draws 6 users' weights at a time here, so the blocks add up across boundaries."""
    monkeypatch.setattr(metrics, "_CHUNK_CELLS", 1_000)
    rng = random.Random(9)
    rows = [
        ("SE" if i % 3 else "DE", f"u{i}", None if i % 97 == 0 else rng.random())
        for i in range(3000)
    ] + [("IS", "v1", 0.25), ("IS", "v2", 0.75)]
    values = spark.createDataFrame(rows, "market string, user_id string, x double")
    got = bootstrap_ci(values, "x", by=by, replicates=150, seed=4, level=0.9)
    want = _spark_bootstrap(values, "x", by, 150, 4, 0.9)
    got, want = (t.sort_values(list(by)).reset_index(drop=True) for t in (got, want))
    assert got["n"].tolist() == want["n"].tolist()
    for figure in ("mean", "low", "high"):
        assert got[figure].to_numpy() == pytest.approx(want[figure].to_numpy(), rel=1e-12)
