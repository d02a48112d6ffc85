"""The conversion model's engine: XGBoost against Spark MLlib's GBT and logistic regression.

    .venv/bin/python bench/conversion_engines.py --world FOLDER [--rounds 2]
        [--experiments ID ...] [--out bench/results/conversion_engines]

FOLDER holds a pipeline's state (``.recsys/``, as ``bench/decision.py --keep`` leaves it, or
``make demo``'s checkout). Each engine is fitted by the conversion family's own code (same
examples from the snapshot's ``full`` supervision, same features; only the estimator
differs), timed, and its greedy top-3 lists over every user's eligible offers are valued
with the world's true acceptance probabilities under the simulator's position model: the
expected acceptances of a user who opens the surface, as a share of the oracle's lift over
popularity (ranked by acceptances). Engines run in turn, interleaved over ``--rounds``, in
one Spark session. With ``--experiments``, the examples include the logged tests named, as
``train.models.conversion.experiments`` adds them to the served fit: the decision benchmark's
second round.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def _engines():
    from pyspark.ml.classification import GBTClassifier, LogisticRegression

    from recsys.models.conversion import Conversion

    class MLlibGBT(Conversion):
        def _estimator(self):
            return GBTClassifier(
                featuresCol="features",
                labelCol="label",
                weightCol="weight",
                maxIter=int(self.params["n_estimators"]),
                maxDepth=int(self.params["max_depth"]),
                stepSize=float(self.params["learning_rate"]),
                seed=self.seed,
            )

    class MLlibLogistic(Conversion):
        def _estimator(self):
            return LogisticRegression(
                featuresCol="features", labelCol="label", weightCol="weight", regParam=1e-3
            )

    return {"xgboost": Conversion, "mllib_gbt": MLlibGBT, "mllib_logistic": MLlibLogistic}


def _value(lists_df: DataFrame, truth_df: DataFrame, bias: list[float]) -> float:
    """Sum over users of P(a user who opens the surface takes an offer of the list)."""
    b = F.element_at(F.array(*[F.lit(x) for x in bias]), F.least("rank", F.lit(len(bias))))
    looked = lists_df.join(truth_df, "user_id").select(
        "user_id",
        "rank",
        (b * F.coalesce(F.col("p_accept")[F.col("offer_id")], F.lit(0.0))).alias("bp"),
    )
    before = (
        Window.partitionBy("user_id").orderBy("rank").rowsBetween(Window.unboundedPreceding, -1)
    )
    alive = F.exp(F.coalesce(F.sum(F.log(1 - F.col("bp"))).over(before), F.lit(0.0)))
    taken = looked.select((alive * F.col("bp")).alias("taken"))
    return taken.agg(F.sum("taken")).first()[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=2, help="repeats, interleaved")
    parser.add_argument(
        "--experiments",
        nargs="+",
        default=[],
        help="experiment ids whose logged tests the fits also learn from (the decision "
        "benchmark's round 2: plan-offers-2026-11)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "conversion_engines")
    args = parser.parse_args(argv)
    os.chdir(args.world)  # the config's relative paths (.recsys/...) are the world's

    from recsys import schemas as S
    from recsys.config import load_config
    from recsys.eligibility import with_eligibility
    from recsys.models.baselines import Popularity
    from recsys.ranking import top_k
    from recsys.session import build_session
    from recsys.supervision import Supervision
    from recsys.tables import read_table
    from recsys.vocabulary import FULL

    config = load_config(ROOT / "conf" / "local.yaml")
    spark = build_session(config, app_name="recsys bench conversion engines")
    snapshot = config.interactions.snapshot_date
    rows_df = read_table(spark, config, S.INTERACTIONS).where(
        F.col("snapshot_date") == F.lit(snapshot)
    )
    supervised = Supervision(spark, config, rows_df, experiments=args.experiments).for_split(FULL)
    full_df = rows_df.where(F.col("split") == FULL).persist()
    examples = supervised.examples_df.count()
    users_df = read_table(spark, config, S.USERS)
    catalog_df = read_table(spark, config, S.CATALOG)
    candidates_df = (
        with_eligibility(users_df, catalog_df, config.recommend.eligibility)
        .where("eligible")
        .join(users_df.select("market", "user_id", "current_plan"), ["market", "user_id"])
        .select("market", "user_id", "offer_id", "current_plan")
        .persist()
    )
    truth_df = read_table(spark, config, S.WORLD_TRUTH).select("user_id", "p_accept").persist()
    bias, k = config.simulate.position_bias, config.recommend.k
    popular = _value(
        top_k(Popularity().fit(full_df, supervised).score(candidates_df), k), truth_df, bias
    )
    open_offers = F.explode(F.map_filter("p_accept", lambda _, p: p > 0)).alias("offer_id", "p")
    oracle_df = (
        truth_df.select("user_id", open_offers)
        .withColumn(
            "rank",
            F.row_number().over(Window.partitionBy("user_id").orderBy(F.desc("p"), "offer_id")),
        )
        .where(F.col("rank") <= k)
    )
    oracle = _value(oracle_df, truth_df, bias)
    params = config.train.models.conversion.params.model_dump()
    runs = []
    for round_number in range(1, args.rounds + 1):
        for name, engine in _engines().items():
            started = time.perf_counter()
            model = engine(params, seed=config.train.seed).fit(full_df, supervised)
            fitted = time.perf_counter() - started
            value = _value(top_k(model.score(candidates_df), k), truth_df, bias)
            runs.append(
                {
                    "round": round_number,
                    "engine": name,
                    "fit_seconds": round(fitted, 2),
                    "share_of_oracle_lift": (value - popular) / (oracle - popular),
                }
            )
            print(json.dumps(runs[-1]), flush=True)
    users = users_df.count()
    result = {
        "command": " ".join(["bench/conversion_engines.py", *(argv or sys.argv[1:])]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "users": users,
        "examples": examples,
        "params": params,
        "per_user": {"popularity": popular / users, "oracle": oracle / users},
        "runs": runs,
    }
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    tests = f", with experiments {', '.join(args.experiments)}" if args.experiments else ""
    lines = [
        "# Conversion model engines",
        "",
        f"Command: `{result['command']}` ({result['machine']}).",
        "",
        f"{users:,} users; {examples:,} training examples (the `full` supervision{tests}); "
        f"parameters {params}. Share: of the oracle's lift over popularity in expected "
        "acceptances of a user who opens the surface, with the world's true probabilities.",
        "",
        "| round | engine | fit seconds | share of oracle lift |",
        "|---:|---|---:|---:|",
        *(
            f"| {r['round']} | {r['engine']} | {r['fit_seconds']:.1f} | "
            f"{100 * r['share_of_oracle_lift']:.1f}% |"
            for r in runs
        ),
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spark.stop()


if __name__ == "__main__":
    main()
