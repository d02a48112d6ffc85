"""Benchmark ranking for `recommend`: our scoring of eligible candidates against Spark MLlib's
``ALSModel.recommendForAllUsers`` followed by the same eligibility filter, on one fitted model.

    .venv/bin/python bench/recommend.py [--users 100000 1000000] [--rounds 3] [--out PREFIX]

For each size a world is generated and its interactions built (each step its own `recsys`
process) in a temporary catalog, as bench/train_models.py does; then one process reads the
``full`` split, the ``users`` and the ``catalog`` tables and, untimed:

- keeps the users the matrix knows (those with a factor), so both paths rank the very same
  users (`recommend` scores the others by popularity, which neither path here includes);
- computes every (user, offer of the market) eligibility verdict and caches it;
- fits one Spark ALS (implicit, factors 16, 10 iterations, regularization 0.1, alpha 10,
  seed 7) on all markets at once with block-diagonal ids, as recsys.models.spark_als does,
  and caches its factors mapped back to (market, user_id) and (market, item_id).

Then it times two paths from that fitted model to the top-3 lists, each until its lists are
materialised (a ``noop`` write):

- ``ours``, the core of `recommend`: eligible verdicts joined to the users' current plan, each
  (user, eligible offer) scored by the dot product of the factors (``SparkALS.score``, prior
  weight 0), then ``recsys.ranking.top_k``.
- ``spark``: ``recommendForAllUsers(n)``, exploded, ids mapped back to (market, user_id,
  offer_id), an inner join with the eligible verdicts (which drops offers the user may not
  take), then the same ``top_k``. It is given its best chance: behaviour tokens and other
  markets' items are dropped by broadcast joins on the item id (a user's market is read off
  the range of ids that holds it) before anything is shuffled.

Why n is every item of every market: ALS cannot filter per user, so it must return enough
items that each user's best eligible offers are among them, and which those are depends on
the user. With block-diagonal ids it also ranks every market's items for every user: other
markets' items are predicted near zero, not excluded, and outrank a user's own items whose
affinity is negative. Only n = all items guarantees that each user's own market's items are
all in the list; any smaller n can silently shorten or change a list. (The largest market's
item count is recorded beside it.) An item must be kept only for users of its own market:
offer ids repeat across markets, so the (market, user_id, offer_id) of another market's item
would otherwise pass the eligibility join.

One untimed pass of both paths first checks that they agree (it also warms both up): the
top-1 offer per user must match for more than 99% of users (scores differ only in rounding:
Spark's are float, ours double). Then ``rounds`` rounds, the paths interleaved and the first
alternating, so a noisy moment of this shared machine hits both alike. The ratio spark / ours
is taken within each round, then the median over rounds. Results go to ``PREFIX``.json and
.md (by default bench/results/recommend).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline import machine, measured_on  # bench/ is the script's folder, so first on sys.path
from train_models import ALS, run_size  # the fitting benchmark's hyperparameters and worlds

if TYPE_CHECKING:
    from pyspark.ml.recommendation import ALSModel
    from pyspark.sql import DataFrame

    from recsys.models.spark_als import SparkALS

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "recommend"
K = 3
SEED = 7
MIN_AGREEMENT = 0.99
PATHS = ("ours", "spark")


@dataclass
class Fitted:
    """A Spark ALS fitted on block-diagonal ids, and the maps back from its int ids."""

    model: ALSModel
    user_ids_df: DataFrame  # user, market, user_id
    item_ids_df: DataFrame  # item, market, item_id, is_offer
    blocks_df: DataFrame  # market, user_base, user_last: the market's range of user ids


def fit_als(full_df: DataFrame) -> Fitted:
    """One Spark ALS on every market with block-diagonal ids, with the functions
    ``recsys.models.spark_als`` fits markets that share hyperparameters with (``SparkALS``
    keeps the factors, not the ``ALSModel`` this benchmark needs).

    ``full_df``: the ``interactions`` rows of the ``full`` split.
    """
    from pyspark.sql import SparkSession

    from recsys.models.factors import market_sizes
    from recsys.models.spark_als import block_diagonal, fit_als_model

    sizes = market_sizes(full_df)
    rows_df, offsets = block_diagonal(full_df, sizes)
    users = {row["market"]: row["users"] for row in sizes}
    blocks_df = SparkSession.active().createDataFrame(
        [(market, base, base + users[market] - 1) for market, base, _ in offsets],
        "market string, user_base int, user_last int",
    )
    model = fit_als_model(rows_df, sizes, ALS, SEED)
    return Fitted(
        model,
        rows_df.select("user", "market", "user_id").distinct(),
        rows_df.select("item", "market", "item_id", "is_offer").distinct(),
        blocks_df,
    )


def ours(model: SparkALS, verdicts_df: DataFrame, users_df: DataFrame) -> DataFrame:
    """`recommend`'s core: eligible candidates scored by the factor model, top k.

    ``verdicts_df``: (market, user_id, offer_id, eligible, ...); ``users_df``: the users'
    state, (market, user_id, current_plan, ...).
    """
    from pyspark.sql import functions as F

    from recsys.models.base import CANDIDATE_COLUMNS
    from recsys.ranking import top_k

    candidates_df = (
        verdicts_df.where(F.col("eligible"))
        .join(
            users_df.select("market", "user_id", "current_plan"),
            on=["market", "user_id"],
            how="inner",
        )
        .select(*CANDIDATE_COLUMNS)
    )
    return top_k(model.score(candidates_df), k=K)


def spark(fitted: Fitted, offer_ids_df: DataFrame, n: int, verdicts_df: DataFrame) -> DataFrame:
    """Spark's top ``n`` items for every user, kept where eligible, top k.

    ``offer_ids_df``: (item, market, offer_id) of the offers among the model's items.
    """
    from pyspark.sql import functions as F

    from recsys.ranking import top_k

    keys = ["market", "user_id", "offer_id"]
    scores_df = (
        fitted.model.recommendForAllUsers(n)
        .select("user", F.explode("recommendations").alias("r"))
        .select("user", F.col("r.item").alias("item"), F.col("r.rating").alias("rating"))
        # Filters first, as cheaply as they go, so that only a user's own market's offers
        # reach a shuffle: broadcast joins drop behaviour tokens, then items of markets other
        # than the one whose range of ids holds the user.
        .join(F.broadcast(offer_ids_df), on="item", how="inner")
        .join(F.broadcast(fitted.blocks_df), on="market", how="inner")
        .where(F.col("user").between(F.col("user_base"), F.col("user_last")))
        .join(fitted.user_ids_df, on=["user", "market"], how="inner")
        .join(verdicts_df.where(F.col("eligible")).select(*keys), on=keys, how="inner")
        .select(*keys, F.col("rating").cast("double").alias("score"))
    )
    return top_k(scores_df, k=K)


def agreement(ours_df, spark_df) -> dict:
    """Rows and users of each path's lists, and the share of users whose top-1 offer and
    whole list agree (over the users either path lists)."""
    from pyspark.sql import functions as F

    def lists(lists_df, name: str):
        return lists_df.groupBy("market", "user_id").agg(
            F.sort_array(F.collect_list(F.struct("rank", "offer_id"))).alias(name),
            F.count(F.lit(1)).alias(f"{name}_rows"),
        )

    both_df = lists(ours_df, "ours").join(
        lists(spark_df, "spark"), on=["market", "user_id"], how="full_outer"
    )
    row = both_df.agg(
        F.count(F.lit(1)).alias("users"),
        F.count("ours").alias("ours_users"),
        F.count("spark").alias("spark_users"),
        F.sum("ours_rows").alias("ours_rows"),
        F.sum("spark_rows").alias("spark_rows"),
        F.sum((F.col("ours")[0] == F.col("spark")[0]).cast("int")).alias("top1"),
        F.sum((F.col("ours") == F.col("spark")).cast("int")).alias("lists"),
    ).first()
    users = row["users"]
    return {
        "ranked_users": {"ours": row["ours_users"], "spark": row["spark_users"], "either": users},
        "rows_out": {"ours": row["ours_rows"] or 0, "spark": row["spark_rows"] or 0},
        "top1_agreement": round((row["top1"] or 0) / users, 5) if users else None,
        "list_agreement": round((row["lists"] or 0) / users, 5) if users else None,
    }


def measure(conf: Path, rounds: int) -> dict:
    """Set up once, check agreement, then time both paths ``rounds`` times."""
    from pyspark.sql import functions as F

    from recsys import schemas as S
    from recsys.config import load_config
    from recsys.eligibility import STATE_COLUMNS, with_eligibility
    from recsys.models.baselines import offer_log_share
    from recsys.models.spark_als import SparkALS
    from recsys.session import build_session
    from recsys.tables import read_table
    from recsys.vocabulary import FULL

    config = load_config(conf)
    spark_session = build_session(config, app_name="bench recommend")
    full_df = read_table(spark_session, config, S.INTERACTIONS).where(F.col("split") == FULL)
    full_df = full_df.persist()
    users_df = (
        read_table(spark_session, config, S.USERS)
        .select(*STATE_COLUMNS, "household_size_hint")
        .join(full_df.select("market", "user_id"), on=["market", "user_id"], how="left_semi")
        .persist()
    )
    catalog_df = read_table(spark_session, config, S.CATALOG)
    verdicts_df = with_eligibility(users_df, catalog_df, config.recommend.eligibility).persist()
    verdicts = verdicts_df.count()
    shape = full_df.agg(
        F.count(F.lit(1)).alias("nnz"),
        F.countDistinct("market", "user_id").alias("users"),
        F.countDistinct("market").alias("markets"),
    ).first()

    print("fitting Spark ALS ...", flush=True)
    fitted = fit_als(full_df)
    user_ids_df = fitted.user_ids_df.persist()
    item_ids_df = fitted.item_ids_df.persist()
    fitted.user_ids_df, fitted.item_ids_df = user_ids_df, item_ids_df
    offer_ids_df = (
        item_ids_df.where(F.col("is_offer"))
        .select("item", "market", F.col("item_id").alias("offer_id"))
        .persist()
    )
    model = SparkALS(ALS, seed=SEED)
    model.user_factors_df = (
        fitted.model.userFactors.join(user_ids_df, F.col("id") == F.col("user"), how="inner")
        .select("market", "user_id", F.col("features").alias("user_factors"))
        .persist()
    )
    model.item_factors_df = (
        fitted.model.itemFactors.join(
            F.broadcast(item_ids_df), F.col("id") == F.col("item"), how="inner"
        )
        .select("market", "item_id", F.col("features").alias("item_factors"))
        .persist()
    )
    model.prior_df = offer_log_share(full_df).persist()
    for state_df in (user_ids_df, item_ids_df, offer_ids_df, *model._state().values()):
        state_df.count()
    items = {
        r["market"]: r["items"]
        for r in item_ids_df.groupBy("market").agg(F.count(F.lit(1)).alias("items")).collect()
    }
    n = fitted.model.itemFactors.count()  # every item of every market: see the docstring

    def build(path: str) -> DataFrame:
        if path == "ours":
            return ours(model, verdicts_df, users_df)
        return spark(fitted, offer_ids_df, n, verdicts_df)

    print(f"checking agreement (top {n} items from Spark) ...", flush=True)
    ours_df, spark_df = build("ours").persist(), build("spark").persist()
    checked = agreement(ours_df, spark_df)
    ours_df.unpersist()
    spark_df.unpersist()
    print(json.dumps(checked), flush=True)
    if checked["top1_agreement"] is None or checked["top1_agreement"] <= MIN_AGREEMENT:
        raise RuntimeError(f"the paths disagree, so timing them compares nothing: {checked}")

    def timed(path: str) -> float:
        started = time.perf_counter()
        build(path).write.format("noop").mode("overwrite").save()
        return round(time.perf_counter() - started, 2)

    times: dict[str, list[float]] = {path: [] for path in PATHS}
    for number in range(rounds):
        for path in PATHS if number % 2 == 0 else PATHS[::-1]:
            times[path].append(timed(path))
        print(f"round {number + 1}: {json.dumps({p: t[-1] for p, t in times.items()})}", flush=True)
    ratios = [s / o for o, s in zip(times["ours"], times["spark"], strict=True)]
    medians = {path: round(statistics.median(t), 2) for path, t in times.items()}
    ranked = checked["ranked_users"]["either"]
    spark_session.stop()
    return {
        "nnz": shape["nnz"],
        "users": shape["users"],
        "markets": shape["markets"],
        "verdicts": verdicts,
        "items_total": n,
        "items_largest_market": max(items.values()),
        "recommend_for_all_users_n": n,
        **checked,
        "seconds": times,
        "median_seconds": medians,
        "users_per_second": {p: round(ranked / s) if s else None for p, s in medians.items()},
        "spark_over_ours": [round(r, 3) for r in ratios],
        "median_spark_over_ours": round(statistics.median(ratios), 3),
    }


def write(record: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# Recommend ranking benchmark",
        "",
        measured_on(record),
        f"Reproduce: `{record['reproduce']}`. Both paths rank the same users from the same "
        "fitted Spark ALS (implicit, factors 16, iterations 10, regularization 0.1, alpha 10, "
        "block-diagonal ids over all markets, fitted on the `full` split) and read the same "
        "cached eligibility verdicts; each is timed until its top-3 lists are materialised "
        "(a `noop` write), the paths interleaved in each round and the first alternating.",
        "",
        "- **ours**, the core of `recommend`: eligible verdicts joined to the users' current "
        "plan, each (user, eligible offer) scored by the dot product of the model's factors "
        "(`SparkALS.score`, prior weight 0), then `top_k(3)`.",
        "- **spark**: `ALSModel.recommendForAllUsers(n)` with n = every item of every market "
        "(ALS cannot filter per user, and with block-diagonal ids it ranks all markets' items "
        "for everyone), exploded; behaviour tokens and other markets' items dropped by "
        "broadcast joins before any shuffle; ids mapped back to (market, user_id, offer_id), "
        "inner join with the eligible verdicts, then the same `top_k(3)`.",
        "",
        "Not included in either: reading tables, eligibility, fitting, calibration, "
        "exploration, localisation, publishing.",
        "",
        "| world users | ranked users | items (all / largest market) | path | median s "
        "| users/s | runs (s) | rows out |",
        "|---:|---:|---:|---|---:|---:|---|---:|",
    ]
    for r in record["results"]:
        for path in PATHS:
            lines.append(
                f"| {r['world_users']:,} | {r['ranked_users'][path]:,} | "
                f"{r['items_total']:,} / {r['items_largest_market']:,} | {path} | "
                f"{r['median_seconds'][path]} | {r['users_per_second'][path]:,} | "
                f"{', '.join(map(str, r['seconds'][path]))} | {r['rows_out'][path]:,} |"
            )
    lines += [
        "",
        "| world users | spark / ours (median) | per round | same top-1 offer | same list |",
        "|---:|---:|---|---:|---:|",
    ]
    for r in record["results"]:
        lines.append(
            f"| {r['world_users']:,} | {r['median_spark_over_ours']} | "
            f"{', '.join(map(str, r['spark_over_ours']))} | "
            f"{r['top1_agreement']:.2%} | {r['list_agreement']:.2%} |"
        )
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=OUT, help="results prefix: PREFIX.json and PREFIX.md"
    )
    parser.add_argument("--measure", nargs=2, metavar=("CONF", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        conf, out = args.measure
        Path(out).write_text(json.dumps(measure(Path(conf), args.rounds)))
        return
    results = [
        run_size(users, args.rounds, script=__file__, task="ranking") for users in args.users
    ]
    command = (
        ".venv/bin/python bench/recommend.py --users "
        + " ".join(str(u) for u in args.users)
        + f" --rounds {args.rounds}"
    )
    if args.out.resolve() != OUT:
        command += f" --out {args.out}"
    write(
        {
            "benchmark": "recommend ranking",
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "reproduce": command,
            "results": results,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
