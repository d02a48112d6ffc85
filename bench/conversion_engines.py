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

from offline import (  # bench/ is the script's folder, so first on sys.path
    add_world_arguments,
    open_world,
)

from recsys.ranking import top_k

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_world_arguments(parser)
    parser.add_argument("--rounds", type=int, default=2, help="repeats, interleaved")
    parser.add_argument("--out", type=Path, default=RESULTS / "conversion_engines")
    args = parser.parse_args(argv)
    args.out = args.out.resolve()  # before the world's folder becomes the working one
    world = open_world(args, "recsys bench conversion engines")
    config, supervised = world.config, world.supervised
    examples = supervised.examples_df.count()
    popular, oracle = world.anchors
    params = config.train.models.conversion.params.model_dump()
    runs = []
    for round_number in range(1, args.rounds + 1):
        for name, engine in _engines().items():
            started = time.perf_counter()
            model = engine(params, seed=config.train.seed).fit(world.full_df, supervised)
            fitted = time.perf_counter() - started
            lists_df = top_k(model.score(world.candidates_df), world.k)
            runs.append(
                {
                    "round": round_number,
                    "engine": name,
                    "fit_seconds": round(fitted, 2),
                    "share_of_oracle_lift": world.share(lists_df),
                }
            )
            print(json.dumps(runs[-1]), flush=True)
    users = world.users_df.count()
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
    world.spark.stop()


if __name__ == "__main__":
    main()
