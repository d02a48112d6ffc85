"""Benchmark model fitting: time per family on the same interaction matrix, and the ratio
implicit ALS / Spark ALS at equal factors and iterations.

    .venv/bin/python bench/train_models.py [--users 100000 1000000] [--rounds 3]

For each size a world is generated and its interactions built (each step its own `recsys`
process) in a temporary catalog; then one process fits every family on the ``train`` split,
``rounds`` times, families interleaved within each round so that a noisy moment of this
shared machine hits all of them alike. A fit is timed from ``fit()`` until the fitted state
is materialised (factors counted), after one untimed warm-up fit per family on one market.
The ratio is taken within each round, then the median over rounds.

Beside the families, ``bare_implicit_als`` and ``bare_implicit_bpr`` fit ``implicit`` outside
Spark on the very matrices the Spark path builds per market (collected to the driver and built
beforehand, untimed), one market after another with every core, to show what the Spark
wrapping costs. Results go to bench/results/train_models.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline import machine, measured_on  # bench/ is the script's folder, so first on sys.path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
ALS = {"factors": 16, "regularization": 0.1, "alpha": 10.0, "iterations": 10, "prior_weight": 0.0}
BPR = {
    "factors": 16,
    "learning_rate": 0.05,
    "regularization": 0.01,
    "iterations": 100,
    "prior_weight": 0.0,
}
ORDER = ("spark_als", "implicit_als", "implicit_bpr", "popularity", "ladder")
BARE = {"bare_implicit_als": "implicit_als", "bare_implicit_bpr": "implicit_bpr"}


def market_matrices(train_df) -> list:
    """Each market's user x item confidence matrix, built on the driver (untimed): the same
    matrices the Spark path builds inside its tasks."""
    from scipy.sparse import csr_matrix

    rows = train_df.select("market", "user_idx", "item_idx", "confidence").toPandas()
    matrices = []
    for _, market in rows.groupby("market"):
        users, items = market["user_idx"].to_numpy(), market["item_idx"].to_numpy()
        matrices.append(
            csr_matrix(
                (market["confidence"].to_numpy(dtype="float32"), (users, items)),
                shape=(int(users.max()) + 1, int(items.max()) + 1),
            )
        )
    return matrices


def fit_bare(family: str, params: dict, matrices: list) -> float:
    """Seconds to fit ``implicit`` on every market's matrix in this process, one market after
    another, each fit using every core: what the library costs without Spark around it."""
    import implicit
    from threadpoolctl import threadpool_limits

    model_class = {
        "implicit_als": implicit.als.AlternatingLeastSquares,
        "implicit_bpr": implicit.bpr.BayesianPersonalizedRanking,
    }[family]
    kwargs = {k: v for k, v in params.items() if k != "prior_weight"}  # the library's names
    started = time.perf_counter()
    for matrix in matrices:
        with threadpool_limits(1, "blas"):
            model = model_class(**kwargs, random_state=1, use_gpu=False)
            model.fit(matrix, show_progress=False)
    return time.perf_counter() - started


def measure(conf: Path, rounds: int) -> dict:
    """Fit every family ``rounds`` times in this process; seconds per fit."""
    from pyspark.sql import functions as F

    from recsys import schemas as S
    from recsys.config import load_config
    from recsys.models import FAMILIES
    from recsys.models.baselines import baseline_params
    from recsys.session import build_session
    from recsys.tables import read_table
    from recsys.vocabulary import TRAIN

    config = load_config(conf)
    spark = build_session(config, app_name="bench train_models")
    train_df = read_table(spark, config, S.INTERACTIONS).where(F.col("split") == TRAIN).persist()
    train_df.count()  # materialise the cache, so fits read it
    shape = train_df.agg(
        F.count(F.lit(1)).alias("nnz"),
        F.countDistinct("market", "user_id").alias("users"),
        F.countDistinct("market").alias("markets"),
    ).first()
    params = {
        "spark_als": ALS,
        "implicit_als": ALS,
        "implicit_bpr": BPR,
        "popularity": {},
        "ladder": baseline_params(config, "ladder"),
    }

    def cached() -> int:
        return spark.sparkContext._jsc.getPersistentRDDs().size()

    baseline = cached()

    def fit(family: str, rows_df) -> float:
        started = time.perf_counter()
        model = FAMILIES[family](params[family], seed=1).fit(rows_df)
        for state_df in model._state().values():
            state_df.count()
        seconds = time.perf_counter() - started
        model.unpersist()
        # A later fit with the same plan must not be answered from this one's cache.
        if cached() != baseline:
            raise RuntimeError(f"{family} left {cached() - baseline} cached frame(s) behind")
        return seconds

    warm_df = train_df.where(F.col("market") == "SE")
    for family in ORDER:
        fit(family, warm_df)
    matrices = market_matrices(train_df)
    for family in BARE.values():
        fit_bare(family, params[family], matrices[:1])
    times: dict[str, list[float]] = {family: [] for family in (*ORDER, *BARE)}
    for number in range(rounds):
        for family in ORDER:
            times[family].append(round(fit(family, train_df), 2))
        for bare, family in BARE.items():
            times[bare].append(round(fit_bare(family, params[family], matrices), 2))
        print(f"round {number + 1}: {json.dumps({f: t[-1] for f, t in times.items()})}", flush=True)
    ratios = [i / s for i, s in zip(times["implicit_als"], times["spark_als"], strict=True)]
    wrapping = {
        family: [round(i / b, 3) for i, b in zip(times[family], times[bare], strict=True)]
        for bare, family in BARE.items()
    }
    spark.stop()
    return {
        "spark_path_over_bare": wrapping,
        "median_spark_path_over_bare": {f: statistics.median(r) for f, r in wrapping.items()},
        "nnz": shape["nnz"],
        "users": shape["users"],
        "markets": shape["markets"],
        "seconds": times,
        "median_seconds": {f: round(statistics.median(t), 2) for f, t in times.items()},
        "implicit_over_spark_als": [round(r, 3) for r in ratios],
        "median_implicit_over_spark_als": round(statistics.median(ratios), 3),
    }


def run_size(
    users: int,
    rounds: int,
    *,
    script: str = __file__,
    task: str = "fitting",
    extra: list[str] | tuple[str, ...] = (),
) -> dict:
    """Generate a world of ``users`` and build its interactions in a temporary catalog, then run
    ``script --measure`` (plus ``extra``) on it in a fresh process; returns what that wrote."""
    with tempfile.TemporaryDirectory(prefix="recsys-bench-") as tmp:
        folder = Path(tmp)
        conf = folder / "bench.yaml"
        conf.write_text(
            f"extends: {ROOT / 'conf' / 'local.yaml'}\n"
            f"catalog:\n  warehouse_dir: {tmp}/warehouse\n  metastore_dir: {tmp}/metastore\n"
            f"spark:\n  checkpoint_dir: {tmp}/checkpoints\n"
        )
        recsys = str(Path(sys.executable).with_name("recsys"))
        for step in ("generate-world", "build-interactions"):
            print(f"{step}, {users:,} users ...", flush=True)
            subprocess.run(
                [recsys, step, "--conf", str(conf), "--set", f"world.users={users}"],
                cwd=folder,
                check=True,
                capture_output=True,
            )
        print(f"{task}, {users:,} users ...", flush=True)
        out = folder / "measure.json"
        subprocess.run(
            [
                sys.executable,
                script,
                "--measure",
                str(conf),
                str(out),
                "--rounds",
                str(rounds),
                *extra,
            ],
            cwd=folder,
            check=True,
        )
        return {"world_users": users, **json.loads(out.read_text())}


def write(record: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "train_models.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# Model fitting benchmark",
        "",
        measured_on(record),
        f"Reproduce: `{record['reproduce']}`. Every family fits the same `train` matrix of "
        "each size, families interleaved in each round; a fit is timed until its factors "
        "(or counts) are materialised. ALS families at factors 16, iterations 10, "
        "regularization 0.1, alpha 10; BPR at factors 16, 100 iterations (epochs).",
        "",
        "| world users | matrix users | nnz | family | median fit s | fits (s) |",
        "|---:|---:|---:|---|---:|---|",
    ]
    for r in record["results"]:
        for family in (*ORDER, *BARE):
            lines.append(
                f"| {r['world_users']:,} | {r['users']:,} | {r['nnz']:,} | {family} | "
                f"{r['median_seconds'][family]} | {', '.join(map(str, r['seconds'][family]))} |"
            )
    lines += [
        "",
        "| world users | implicit ALS / Spark ALS (median) | per round |",
        "|---:|---:|---|",
    ]
    for r in record["results"]:
        lines.append(
            f"| {r['world_users']:,} | {r['median_implicit_over_spark_als']} | "
            f"{', '.join(map(str, r['implicit_over_spark_als']))} |"
        )
    lines += [
        "",
        "What the Spark wrapping costs: the path `train` uses (one market per Spark task, each",
        "building its matrix from rows and returning factors as rows) over bare `implicit` on",
        "the same matrices (`bare_*`: built beforehand, fitted market after market with every",
        "core, nothing returned). Target: at most 1.25.",
        "",
        "| world users | family | Spark path / bare (median) | per round |",
        "|---:|---|---:|---|",
    ]
    for r in record["results"]:
        for family, ratios in r["spark_path_over_bare"].items():
            lines.append(
                f"| {r['world_users']:,} | {family} | "
                f"{r['median_spark_path_over_bare'][family]} | {', '.join(map(str, ratios))} |"
            )
    (RESULTS / "train_models.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--measure", nargs=2, metavar=("CONF", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        conf, out = args.measure
        Path(out).write_text(json.dumps(measure(Path(conf), args.rounds)))
        return
    results = [run_size(users, args.rounds) for users in args.users]
    write(
        {
            "benchmark": "model fitting",
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "reproduce": ".venv/bin/python bench/train_models.py --users "
            + " ".join(str(u) for u in args.users)
            + f" --rounds {args.rounds}",
            "results": results,
        }
    )


if __name__ == "__main__":
    main()
