"""Offline valuation of top-k lists on a kept synthetic world, shared by the conversion benches.

A list is valued with the world's true acceptance probabilities (``world_truth.p_accept``)
under the simulator's position model: the expected acceptances of a user who opens the
surface. A share is of the oracle's lift over popularity (ranked by acceptances): 0 is
popularity, 1 the oracle that knows every user's taste.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

ROOT = Path(__file__).resolve().parents[1]


def list_value(lists_df: DataFrame, truth_df: DataFrame, bias: list[float]) -> float:
    """Sum over users of P(a user who opens the surface takes an offer of the list)."""
    return per_user_value(lists_df, truth_df, bias).agg(F.sum("value")).first()[0]


def per_user_value(lists_df: DataFrame, truth_df: DataFrame, bias: list[float]) -> DataFrame:
    """(user_id, value): P(the user, having opened the surface, takes an offer of the list);
    ranks are looked at in order, each with its position's chance, and one offer is taken."""
    from recsys.world.expected import look_chance

    b = look_chance(bias, F.col("rank"))
    looked = lists_df.join(truth_df, "user_id").select(
        "user_id",
        "rank",
        (b * F.coalesce(F.col("p_accept")[F.col("offer_id")], F.lit(0.0))).alias("bp"),
    )
    before = (
        Window.partitionBy("user_id").orderBy("rank").rowsBetween(Window.unboundedPreceding, -1)
    )
    alive = F.exp(F.coalesce(F.sum(F.log(1 - F.col("bp"))).over(before), F.lit(0.0)))
    return (
        looked.select("user_id", (alive * F.col("bp")).alias("taken"))
        .groupBy("user_id")
        .agg(F.sum("taken").alias("value"))
    )


@dataclass
class OfflineWorld:
    """A kept world's tables, its ``full`` supervision and the two anchors of a share."""

    spark: SparkSession
    config: object
    full_df: DataFrame
    supervised: object
    users_df: DataFrame
    candidates_df: DataFrame
    truth_df: DataFrame
    k: int
    bias: list[float]
    popularity_df: DataFrame
    oracle_df: DataFrame

    def value(self, lists_df: DataFrame) -> float:
        return list_value(lists_df, self.truth_df, self.bias)

    def share(self, lists_df: DataFrame) -> float:
        """The share of the oracle's lift over popularity that ``lists_df`` captures."""
        popular, oracle = self.anchors
        return (self.value(lists_df) - popular) / (oracle - popular)

    @cached_property
    def anchors(self) -> tuple[float, float]:
        """(popularity's value, the oracle's value)."""
        return self.value(self.popularity_df), self.value(self.oracle_df)


def add_world_arguments(parser: argparse.ArgumentParser) -> None:
    """``--world``, ``--set`` and ``--experiments``: what :func:`open_world` reads."""
    parser.add_argument("--world", type=Path, required=True, help="a kept world's folder")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="the settings the world was made with (e.g. world.seed=7), over conf/local.yaml",
    )
    parser.add_argument(
        "--experiments",
        nargs="+",
        default=[],
        help="experiment ids whose logged tests the fits also learn from (the decision "
        "benchmark's round 2: plan-offers-2026-11)",
    )


def open_world(args: argparse.Namespace, app_name: str) -> OfflineWorld:
    """The world kept in ``args.world`` (``.recsys/``, as ``bench/decision.py --keep`` leaves
    it), read with conf/local.yaml and ``args.sets``, with the examples of its snapshot's
    ``full`` supervision and, with ``args.experiments``, the logged tests named, as
    ``train.models.conversion.experiments`` adds them (:func:`add_world_arguments`)."""
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

    config = load_config(ROOT / "conf" / "local.yaml", args.sets)
    spark = build_session(config, app_name=app_name)
    snapshot = config.interactions.snapshot_date
    rows_df = read_table(spark, config, S.INTERACTIONS).where(
        F.col("snapshot_date") == F.lit(snapshot)
    )
    supervised = Supervision(spark, config, rows_df, experiments=args.experiments).for_split(FULL)
    full_df = rows_df.where(F.col("split") == FULL).persist()
    users_df = read_table(spark, config, S.USERS)
    catalog_df = read_table(spark, config, S.CATALOG)
    candidates_df = (
        with_eligibility(users_df, catalog_df, config.recommend.eligibility)
        .where("eligible")
        .join(users_df.select("market", "user_id", "current_plan"), ["market", "user_id"])
        .select("market", "user_id", "offer_id", "current_plan")
        .persist()
    )
    truth_df = read_table(spark, config, S.WORLD_TRUTH).persist()
    k = config.recommend.k
    open_offers = F.explode(F.map_filter("p_accept", lambda _, p: p > 0)).alias("offer_id", "score")
    return OfflineWorld(
        spark=spark,
        config=config,
        full_df=full_df,
        supervised=supervised,
        users_df=users_df,
        candidates_df=candidates_df,
        truth_df=truth_df,
        k=k,
        bias=config.simulate.position_bias,
        popularity_df=top_k(Popularity().fit(full_df, supervised).score(candidates_df), k),
        oracle_df=top_k(truth_df.select("user_id", open_offers), k, keys=("user_id",)),
    )
