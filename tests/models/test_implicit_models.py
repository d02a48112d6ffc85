"""How the ``implicit`` families spread markets over Spark tasks."""

from __future__ import annotations

from pyspark.sql import functions as F

from recsys.models.implicit_models import by_size


def test_the_largest_market_is_in_the_first_partition_and_groups_need_no_second_shuffle(spark):
    sizes = {"SE": 2, "BR": 9, "DE": 5}
    rows_df = spark.createDataFrame(
        [(market, n) for market, count in sizes.items() for n in range(count)],
        "market string, n int",
    ).repartition(3)

    placed_df = by_size(rows_df, sizes)

    where = (
        placed_df.select("market", "_rank", F.spark_partition_id().alias("partition"))
        .distinct()
        .collect()
    )
    assert sorted((r["partition"], r["_rank"], r["market"]) for r in where) == [
        (0, 0, "BR"),
        (1, 1, "DE"),
        (2, 2, "SE"),
    ]
    grouped = placed_df.groupBy("_rank", "market").applyInArrow(
        lambda rows: rows.select(["market"]).slice(0, 1), schema="market string"
    )
    plan = grouped._jdf.queryExecution().executedPlan().toString()
    assert "Exchange rangepartitioning" in plan, plan
    assert "Exchange hashpartitioning" not in plan, plan
    assert sorted(r["market"] for r in grouped.collect()) == ["BR", "DE", "SE"]
