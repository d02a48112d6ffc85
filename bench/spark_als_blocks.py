"""Benchmark Spark ALS's block count: seconds per fit of the `train` matrix at several
``numUserBlocks`` = ``numItemBlocks``, to choose the rule in recsys.models.spark_als.

    .venv/bin/python bench/spark_als_blocks.py [--users 1000000] [--blocks 1 2 4 7 10]
        [--rounds 2] [--world CONF]

A world is generated and its interactions built in a temporary catalog, as
bench/train_models.py does (or, with ``--world``, the catalog a config file names is read as
it is). One process then fits Spark ALS (implicit, factors 16, 10 iterations, regularization
0.1, alpha 10, all markets in one block-diagonal matrix, as ``train`` does) on the ``train``
split at each block count, ``rounds`` times, the counts interleaved within a round and their
order reversed every other round. A fit is timed until both factor frames are counted.
Results go to bench/results/spark_als_blocks.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from pathlib import Path

from pipeline import machine, measured_on  # bench/ is the script's folder, so first on sys.path
from train_models import ALS, RESULTS, run_size


def measure(conf: Path, rounds: int, counts: list[int]) -> dict:
    from pyspark.sql import functions as F

    from recsys import schemas as S
    from recsys.config import load_config
    from recsys.models.factors import market_sizes
    from recsys.models.spark_als import als_factor_rdds, block_diagonal, fit_als_model
    from recsys.session import build_session
    from recsys.tables import read_table
    from recsys.vocabulary import TRAIN

    config = load_config(conf)
    spark = build_session(config, app_name="bench spark_als_blocks")
    train_df = read_table(spark, config, S.INTERACTIONS).where(F.col("split") == TRAIN)
    sizes = market_sizes(train_df)
    rows_df, _ = block_diagonal(train_df, sizes)
    rows_df = rows_df.select("user", "item", "confidence").persist()
    nnz = rows_df.count()

    def fit(blocks: int) -> float:
        started = time.perf_counter()
        model = fit_als_model(rows_df, sizes, ALS, seed=7, blocks=blocks)
        model.userFactors.count()
        model.itemFactors.count()
        seconds = time.perf_counter() - started
        for rdd in als_factor_rdds(spark).values():
            rdd.unpersist(False)
        return round(seconds, 2)

    fit(counts[0])  # warm-up, untimed
    times: dict[int, list[float]] = {b: [] for b in counts}
    for number in range(rounds):
        for blocks in counts if number % 2 == 0 else counts[::-1]:
            times[blocks].append(fit(blocks))
        print(f"round {number + 1}: {json.dumps({b: t[-1] for b, t in times.items()})}", flush=True)
    cores = spark.sparkContext.defaultParallelism
    spark.stop()
    return {
        "nnz": nnz,
        "cores": cores,
        "seconds": {str(b): t for b, t in times.items()},
        "median_seconds": {str(b): statistics.median(t) for b, t in times.items()},
    }


def write(record: dict) -> None:
    (RESULTS / "spark_als_blocks.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# Spark ALS block count",
        "",
        measured_on(record),
        f"Reproduce: `{record['reproduce']}`. Spark ALS (implicit, factors 16, 10 iterations, "
        "regularization 0.1, alpha 10) on the `train` split, all markets in one block-diagonal "
        "matrix, as `train` fits it; numUserBlocks = numItemBlocks = blocks. Spark's own "
        "default is 10; recsys uses one block per core (fewer for a small matrix).",
        "",
        "| world users | ratings | cores | blocks | median fit s | fits (s) |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for r in record["results"]:
        for blocks, seconds in r["seconds"].items():
            lines.append(
                f"| {r['world_users']:,} | {r['nnz']:,} | {r['cores']} | {blocks} | "
                f"{r['median_seconds'][blocks]} | {', '.join(map(str, seconds))} |"
            )
    (RESULTS / "spark_als_blocks.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 2, 4, 7, 10])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--world", help="config of an already built world to measure on")
    parser.add_argument("--measure", nargs=2, metavar=("CONF", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        conf, out = args.measure
        Path(out).write_text(json.dumps(measure(Path(conf), args.rounds, args.blocks)))
        return
    if args.world:
        measured = measure(Path(args.world), args.rounds, args.blocks)
        results = [{"world_users": args.users[0], **measured}]
    else:
        results = [
            run_size(
                users,
                args.rounds,
                script=__file__,
                task="fitting Spark ALS",
                extra=["--blocks", *map(str, args.blocks)],
            )
            for users in args.users
        ]
    command = ".venv/bin/python bench/spark_als_blocks.py --users " + " ".join(
        str(u) for u in args.users
    )
    command += f" --blocks {' '.join(map(str, args.blocks))} --rounds {args.rounds}"
    write(
        {
            "benchmark": "spark als blocks",
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "reproduce": command
            + (" --world <config of a generated world of that size>" if args.world else ""),
            "results": results,
        }
    )


if __name__ == "__main__":
    main()
