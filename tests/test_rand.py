"""The hash-based draws against their distributions (pure-Python/numpy references)."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import functions as F
from scipy import stats

from recsys.rand import Rng, uniforms

N = 20_000


@pytest.fixture(scope="module")
def ids_df(spark):
    return spark.range(N, numPartitions=3)


def test_uniform_is_uniform_and_keyed_by_seed_and_tag(ids_df):
    rng = Rng(7, F.col("id"))
    rows = ids_df.select(
        rng.uniform("a").alias("a"),
        rng.uniform("b").alias("b"),
        Rng(8, F.col("id")).uniform("a").alias("a8"),
    ).toPandas()
    assert rows["a"].between(0, 1, inclusive="neither").all()
    assert stats.kstest(rows["a"], "uniform").pvalue > 1e-4
    assert abs(np.corrcoef(rows["a"], rows["b"])[0, 1]) < 0.05
    assert abs(np.corrcoef(rows["a"], rows["a8"])[0, 1]) < 0.05


@pytest.mark.parametrize("typed", ["long", "string"])
def test_uniforms_on_the_driver_are_the_draws_spark_makes_bit_for_bit(ids_df, typed):
    """A long and a string key, as users are keyed by either."""
    key = F.col("id") if typed == "long" else F.concat(F.lit("u"), F.col("id").cast("string"))
    rng = Rng(11, F.col("key"))
    rows = (
        ids_df.limit(2_000)
        .select(key.alias("key"), F.posexplode(F.sequence(F.lit(0), F.lit(49))).alias("at", "j"))
        .select("at", rng.stem("bootstrap").alias("stem"), rng.uniform("bootstrap", F.col("j")))
        .toDF("at", "stem", "u")
        .toPandas()
    )
    drawn = uniforms(rows["stem"].to_numpy(), 50)
    assert (drawn[np.arange(len(rows)), rows["at"].to_numpy()] == rows["u"].to_numpy()).all()


def test_normal_matches_standard_normal(ids_df):
    z = ids_df.select(Rng(1, F.col("id")).normal("z").alias("z")).toPandas()["z"]
    assert stats.kstest(z, "norm").pvalue > 1e-4


@pytest.mark.parametrize("lam", [0.3, 2.5, 9.0])
def test_poisson_matches_scipy(ids_df, lam):
    n = ids_df.select(Rng(3, F.col("id")).poisson("n", F.lit(lam)).alias("n")).toPandas()["n"]
    assert abs(n.mean() - lam) < 4 * np.sqrt(lam / N)
    observed = np.bincount(n, minlength=40)[:12]
    expected = stats.poisson.pmf(np.arange(12), lam) * N
    keep = expected > 20
    assert (
        stats.chisquare(
            observed[keep], expected[keep] * observed[keep].sum() / expected[keep].sum()
        ).pvalue
        > 1e-4
    )


def test_choice_follows_weights_and_never_picks_unavailable(ids_df):
    weights = {"a": 1.0, "b": 3.0, "c": 6.0}
    log_w = {k: F.lit(float(np.log(w))) for k, w in weights.items()}
    log_w["never"] = F.lit(None).cast("double")
    picks = ids_df.select(Rng(5, F.col("id")).choice("pick", log_w).alias("k")).toPandas()["k"]
    counts = picks.value_counts()
    assert "never" not in counts
    expected = np.array([weights[k] for k in "abc"]) / 10 * N
    assert stats.chisquare([counts[k] for k in "abc"], expected).pvalue > 1e-4
