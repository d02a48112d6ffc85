"""Where the conversion model's missing share goes: unrecovered traits, or what it learns.

    .venv/bin/python bench/conversion_headroom.py --world FOLDER [--set world.seed=N]
        [--experiments ID ...] [--out bench/results/conversion_headroom]

FOLDER holds a kept synthetic world (``bench/decision.py --keep``), made with conf/local.yaml
and the ``--set`` settings given (its traits are drawn again and checked). On it, offline (see
``bench/offline.py``), the share of the oracle's lift over popularity of four top-k policies:

- ``model``: the conversion family as configured, fitted on the snapshot's ``full`` examples
  (with ``--experiments``, the logged tests too: the decision benchmark's round 2);
- ``model_given_traits``: the same fit given the world's hidden traits (household size,
  listening hours, offline need, audiobook affinity, ad tolerance, price sensitivity,
  student) as features besides its own: the model if behaviour revealed the traits exactly;
- ``traits_only``: every eligible offer ranked by its true acceptance probability without
  the idiosyncratic taste term, which nothing a user does reveals: the ceiling of any model;
- ``oracle``: by the true probability, taste included (1 by definition).

The gap from ``model`` to ``model_given_traits`` is what better features could win; from there
to ``traits_only``, what more or better data could. Each is also reported by segment (paid,
free with the trial used, free without), as a share of that segment's own oracle lift.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from offline import (  # bench/ is the script's folder
    add_world_arguments,
    open_world,
    per_user_value,
)
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TRAITS = (
    "household_size",
    "listening_hours",
    "offline_need",
    "audiobook_affinity",
    "ad_tolerance",
    "price_sensitivity",
    "is_student",
)
POLICIES = ("popularity", "model", "model_given_traits", "traits_only", "oracle")


def _given_traits(traits_df: DataFrame):
    """The conversion family with the world's hidden traits appended to its features."""
    from recsys.models.conversion import Conversion

    columns = [f"_trait_{t}" for t in TRAITS]

    class GivenTraits(Conversion):
        def feature_names(self) -> list[str]:
            return [*super().feature_names(), *TRAITS]

        def _feature_columns(self, available: list[str]) -> list[Column]:
            return [*super()._feature_columns(available), *(F.col(c) for c in columns)]

        def _assemble(self, pairs_df: DataFrame) -> DataFrame:
            joined = pairs_df.join(traits_df, "user_id", "left")
            return super()._assemble(joined).drop(*columns)

    return GivenTraits


def _traits_only(world) -> DataFrame:
    """Each user's eligible offers by the world's acceptance probability with the taste term
    set to 0, in the user's state at the snapshot."""
    from recsys.world.history import History
    from recsys.world.population import users_with_traits, with_utilities

    config = world.config
    tasteless = config.world.model_copy(update={"noise": 0.0})
    markets = config.markets.for_world()
    history = History(tasteless, markets)
    traits_df = users_with_traits(world.spark, tasteless, markets)
    drawn = traits_df.select("user_id", *(F.col(t).alias(f"_{t}") for t in TRAITS))
    differ = (
        world.truth_df.join(drawn, "user_id", "full")
        .where(" or ".join(f"not ({t} <=> _{t})" for t in TRAITS))
        .count()
    )
    if differ:
        raise SystemExit(
            f"the traits of world.seed={tasteless.seed}, world.users={tasteless.users:,} differ "
            f"from the kept world's for {differ:,} users: pass the settings the world was made "
            "with, e.g. --set world.seed=7"
        )
    state_df = world.users_df.select("user_id", "current_plan", "active_addons", "has_used_trial")
    plan = F.col("current_plan")
    probability = history.accept_map(
        plan, history.tier_of[plan], F.col("has_used_trial"), F.col("active_addons")
    )
    scores_df = (
        with_utilities(traits_df, tasteless, markets)
        .join(state_df, "user_id")
        .select("user_id", F.explode(probability).alias("offer_id", "score"))
        .join(world.candidates_df.select("user_id", "offer_id"), ["user_id", "offer_id"])
    )
    from recsys.ranking import top_k

    return top_k(scores_df, world.k, keys=("user_id",))


def _segments(world, lists: dict[str, DataFrame]) -> list[dict]:
    """Per segment: users and each policy's share of the segment's oracle lift."""
    users = world.users_df
    segment_df = users.select(
        "user_id",
        F.when(F.col("current_plan") != "free", "paid")
        .when(F.col("has_used_trial"), "free, trial used")
        .otherwise("free, no trial used")
        .alias("segment"),
    )
    values_df = segment_df
    for name, lists_df in lists.items():
        values_df = values_df.join(
            per_user_value(lists_df, world.truth_df, world.bias).withColumnRenamed("value", name),
            "user_id",
            "left",
        )
    sums = (
        values_df.groupBy("segment")
        .agg(F.count(F.lit(1)).alias("users"), *(F.sum(n).alias(n) for n in lists))
        .orderBy("segment")
        .collect()
    )
    rows = []
    for r in sums:
        gap = r["oracle"] - r["popularity"]
        shares = {n: (r[n] - r["popularity"]) / gap for n in lists if n != "popularity"}
        rows.append({"segment": r["segment"], "users": r["users"], "shares": shares})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_world_arguments(parser)
    parser.add_argument("--out", type=Path, default=RESULTS / "conversion_headroom")
    args = parser.parse_args(argv)
    args.out = args.out.resolve()  # before the world's folder becomes the working one
    from recsys.models.conversion import Conversion
    from recsys.ranking import top_k

    world = open_world(args, "recsys bench conversion headroom")
    config, supervised = world.config, world.supervised
    examples = supervised.examples_df.count()
    traits_df = F.broadcast(
        world.truth_df.select(
            "user_id",
            *(F.col(t).cast("double").alias(f"_trait_{t}") for t in TRAITS),
        ).persist()
    )
    params = config.train.models.conversion.params.model_dump()
    # First, as it checks the world's settings: the fits take minutes.
    lists = {"popularity": world.popularity_df, "traits_only": _traits_only(world).persist()}
    seconds = {}
    for name, family in (("model", Conversion), ("model_given_traits", _given_traits(traits_df))):
        started = time.perf_counter()
        model = family(params, seed=config.train.seed).fit(world.full_df, supervised)
        lists[name] = top_k(model.score(world.candidates_df), world.k).persist()
        seconds[name] = round(time.perf_counter() - started, 1)
    lists["oracle"] = world.oracle_df
    shares = {n: world.share(lists[n]) for n in POLICIES}
    print(json.dumps(shares), flush=True)
    result = {
        "command": " ".join(["bench/conversion_headroom.py", *(argv or sys.argv[1:])]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "users": world.users_df.count(),
        "examples": examples,
        "experiments": args.experiments,
        "params": params,
        "fit_seconds": seconds,
        "shares": shares,
        "segments": _segments(world, lists),
    }
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    args.out.with_suffix(".md").write_text(render(result), encoding="utf-8")
    world.spark.stop()


def render(result: dict) -> str:
    tests = result["experiments"]
    learned = f"plus the logged tests {', '.join(tests)}" if tests else "from the legacy logs"
    shown = [p for p in POLICIES if p not in ("popularity", "oracle")]
    lines = [
        "# Conversion model headroom",
        "",
        f"Command: `{result['command']}` ({result['machine']}).",
        "",
        f"{result['users']:,} users; {result['examples']:,} training examples, {learned}; "
        f"parameters {result['params']}. Share: of the oracle's lift over popularity in "
        "expected acceptances of a user who opens the surface, with the world's true "
        "probabilities (offline: every user, no test arms).",
        "",
        "| segment | users | " + " | ".join(shown) + " |",
        "|---|---:|" + "---:|" * len(shown),
        f"| all | {result['users']:,} | "
        + " | ".join(f"{100 * result['shares'][p]:.1f}%" for p in shown)
        + " |",
        *(
            f"| {s['segment']} | {s['users']:,} | "
            + " | ".join(f"{100 * s['shares'][p]:.1f}%" for p in shown)
            + " |"
            for s in result["segments"]
        ),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
