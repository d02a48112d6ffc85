"""The `recsys` command: one subcommand per step of the flow, plus `pipeline` and `sql`.

    recsys generate-world --conf conf/local.yaml --set world.users=50000
    recsys ingest --conf conf/local.yaml --users data/users.csv --events data/events.csv
    recsys pipeline --conf conf/local.yaml
    recsys sql "select market, count(*) from recsys.users group by market"
    recsys convert wide --conf my.yaml --spec my_wide.yaml customers.csv

`spark-submit jobs/<step>.py --conf ...` runs the same function (see jobs/).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import SparkSession

from recsys.config import Config, load_config, with_ingest
from recsys.errors import RecsysError
from recsys.experiment import job as experiment_job
from recsys.ingest import job as ingest_job
from recsys.ingest import wide
from recsys.interactions import job as interactions_job
from recsys.progress import setup_logging, step
from recsys.recommend import job as recommend_job
from recsys.recommend import publish
from recsys.session import build_session, size_shuffle_partitions
from recsys.tokens import covering_patterns, matches
from recsys.training import job as train_job
from recsys.world import job as world_job

log = logging.getLogger("recsys.cli")

Step = Callable[[SparkSession, Config], None]

# The flow of DESIGN.md section 2, in order.
STEPS: dict[str, Step] = {
    "generate-world": world_job.run,
    "ingest": ingest_job.run,
    "build-interactions": interactions_job.run,
    "train": train_job.run,
    "recommend": recommend_job.run,
    "simulate": experiment_job.simulate_run,
    "analyze": experiment_job.analyze_run,
}
# What `pipeline` runs: the demo on the synthetic world, or (with ingest.events and
# ingest.users set) own data, which stops after recommend: simulate needs the synthetic
# world's hidden truth, and analyze the experiment's outcomes, which real data does not have.
DEMO_FLOW = ("generate-world", "build-interactions", "train", "recommend", "simulate", "analyze")
OWN_DATA_FLOW = ("ingest", "build-interactions", "train", "recommend")
# The tables each step reads most of, which size its shuffle partitions (`spark.shuffle_partitions:
# auto`); generate-world and ingest have none, the world's size sets their partitions.
INPUTS: dict[str, tuple[str, ...]] = {
    "generate-world": (),
    "ingest": (),
    "build-interactions": ("events",),
    "train": ("interactions",),
    "recommend": ("users", "user_state"),
    "simulate": ("plan_recommendations", "users"),
    "analyze": ("experiment_exposures", "experiment_outcomes"),
}


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--conf", default="conf/local.yaml", help="config file (default: %(default)s)"
    )
    common.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set world.users=50000 (repeatable)",
    )
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parsers = {
        name: commands.add_parser(name, parents=[common], help=f"run the {name} step")
        for name in STEPS
    }
    ingest = parsers["ingest"]
    ingest.description = (
        "Load your own users and events files (CSV with a header, or Parquet) into the "
        "users, events and catalog tables, instead of generate-world."
    )
    ingest.add_argument("--users", metavar="PATH", help="file, folder or glob (ingest.users)")
    ingest.add_argument("--events", metavar="PATH", help="file, folder or glob (ingest.events)")
    ingest.add_argument(
        "--format",
        choices=("csv", "parquet", "auto"),
        help="the files' format (ingest.format; auto: from the extension)",
    )
    pipeline = commands.add_parser("pipeline", parents=[common], help="run every step in order")
    pipeline.add_argument(
        "--until",
        choices=list(STEPS),
        metavar="STEP",
        help="stop after this step (default: the last: analyze, or recommend on own data)",
    )
    rollback = commands.add_parser(
        "rollback",
        parents=[common],
        help="serve a kept snapshot of plan_recommendations again",
    )
    rollback.add_argument(
        "--to", required=True, type=_date, metavar="YYYY-MM-DD", help="the snapshot to serve"
    )
    convert = commands.add_parser(
        "convert", help="turn a table of your own into users and events files"
    )
    shapes = convert.add_subparsers(dest="shape", required=True, metavar="SHAPE")
    wide_parser = shapes.add_parser(
        "wide",
        parents=[common],
        help="one row per customer, a column per product held, profile columns",
        description=wide.__doc__.split("\n")[0] + " See docs/own-data.md.",
    )
    wide_parser.add_argument("csv", help="the wide table (CSV with a header)")
    wide_parser.add_argument(
        "--spec", required=True, help="which columns are which (conf/examples/telco_wide.yaml)"
    )
    wide_parser.add_argument(
        "--out",
        metavar="FOLDER",
        help="write users.csv and events.csv here (default: the config's ingest.users and "
        "ingest.events)",
    )
    sql = commands.add_parser("sql", parents=[common], help="query the configured catalog")
    sql.add_argument("query")
    sql.add_argument("--format", choices=("table", "json"), default="table")
    sql.add_argument("--limit", type=int, default=1000, help="rows to print (default 1000)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.conf, args.overrides)
        setup_logging(config.logging.level)
        if args.command == "sql":
            return _sql(config, args.query, args.format, args.limit)
        if args.command == "rollback":
            return _rollback(config, args.to)
        if args.command == "convert":
            return _convert_wide(config, args.csv, args.spec, args.out)
        if args.command == "ingest":
            config = with_ingest(config, events=args.events, users=args.users, fmt=args.format)
        if args.command == "pipeline":
            steps = _pipeline_steps(config, args.until)
        else:
            steps = [args.command]
        return _run_steps(config, steps)
    except RecsysError as exc:
        print(f"recsys: error: {exc}", file=sys.stderr)
        return 2
    except PySparkException as exc:
        print(f"recsys: spark error: {_first_line(exc)}", file=sys.stderr)
        return 1
    except Py4JJavaError as exc:  # a failed Spark job: say what failed and its root cause
        print(f"recsys: spark error: {_java_summary(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("recsys: interrupted", file=sys.stderr)
        return 130


@contextmanager
def _session(config: Config, app_name: str) -> Iterator[SparkSession]:
    """The job's session; stopped at the end unless it was already running (a notebook's,
    or a test's), since stopping it would pull it from under its owner."""
    owned = SparkSession.getActiveSession() is None
    spark = build_session(config, app_name=app_name)
    try:
        yield spark
    finally:
        if owned:
            spark.stop()


def _pipeline_steps(config: Config, until: str | None) -> list[str]:
    """The steps `pipeline` runs: the demo flow, or the own-data flow when the config names
    the files to ingest. generate-world and ingest stand for each other in ``until``."""
    if not config.ingest.is_set:
        flow, first = DEMO_FLOW, "generate-world"
    else:
        flow, first = OWN_DATA_FLOW, "ingest"
        log.info(
            "real data: skipping simulate and analyze (simulate plays the test on the "
            "synthetic world's hidden truth; analyze needs the experiment's real exposures "
            "and outcomes); ingest runs instead of generate-world (ingest.users and "
            "ingest.events are set)"
        )
    until = until or flow[-1]
    if until in ("generate-world", "ingest"):
        until = first
    elif until not in flow:
        until = flow[-1]
    return list(flow[: flow.index(until) + 1])


def _run_steps(config: Config, steps: list[str]) -> int:
    started = time.perf_counter()
    with _session(config, f"recsys {' + '.join(steps)}") as spark:
        for name in steps:
            with step(name):
                size_shuffle_partitions(spark, config, INPUTS[name])
                STEPS[name](spark, config)
    log.info("finished %s in %.1fs", ", ".join(steps), time.perf_counter() - started)
    return 0


def _sql(config: Config, query: str, fmt: str, limit: int) -> int:
    with _session(config, "recsys sql") as spark:
        spark.sql(f"USE {config.catalog.database}")
        result_df = spark.sql(query)
        rows = result_df.limit(limit + 1).collect()
        if fmt == "json":
            for row in rows[:limit]:
                print(json.dumps(row.asDict(recursive=True), default=str, ensure_ascii=False))
        else:
            _print_table(result_df.columns, [list(r) for r in rows[:limit]])
        if len(rows) > limit:
            print(f"(first {limit} rows shown; raise --limit for more)", file=sys.stderr)
    return 0


def _rollback(config: Config, to: dt.date) -> int:
    with _session(config, "recsys rollback") as spark:
        before = publish.current(spark, config)
        served = publish.rollback(spark, config, to)
    log.info(
        "%s now serves snapshot %s (was %s)",
        config.table("plan_recommendations_current"),
        served.snapshot,
        before.snapshot if before else "nothing",
    )
    return 0


def _convert_wide(config: Config, csv: str, spec_path: str, out: str | None) -> int:
    """The wide table as the users and events files the config ingests (or under ``out``),
    dated by the config's snapshot; warns of what the config does not know yet."""
    if out is not None:
        users, events = Path(out) / "users.csv", Path(out) / "events.csv"
    elif config.ingest.is_set:
        users, events = Path(config.ingest.users), Path(config.ingest.events)
    else:
        raise RecsysError(
            "convert wide: pass --out FOLDER, or set ingest.users and ingest.events in the "
            "config to the files it should write"
        )
    spec = wide.load_spec(spec_path)
    interactions = config.interactions
    converted = wide.convert(
        wide.read_table(csv, spec),
        spec,
        snapshot=interactions.snapshot(),
        holdout_days=interactions.holdout_days,
    )
    try:
        wide.write(converted, users, events)
    except OSError as exc:
        raise RecsysError(f"convert wide: cannot write {users} and {events}: {exc}") from None
    roles = converted.events["role"].value_counts()
    log.info(
        "%s customers -> %s; %s events -> %s (%s held-out products in the holdout window "
        "before %s, %s in the validation window)",
        f"{len(converted.users):,}",
        users,
        f"{len(converted.events):,}",
        events,
        f"{roles.get(wide.HOLDOUT, 0):,}",
        interactions.snapshot(),
        f"{roles.get(wide.VALIDATION, 0):,}",
    )
    _warn_unknown(config, converted)
    return 0


def _warn_unknown(config: Config, converted: wide.Converted) -> None:
    """Name the tokens, offers and markets the files hold that the config does not list,
    before build-interactions quarantines them."""
    written = converted.tokens()
    tokens = [t for t in written if not matches(t, config.interactions.behaviour_tokens)]
    if tokens:
        log.warning(
            "interactions.behaviour_tokens of %s lacks %d profile tokens the files hold, "
            "which build-interactions would quarantine as unknown items: %s; add them, or "
            "patterns that cover them: %s",
            config.source,
            len(tokens),
            tokens,
            covering_patterns(tokens, avoid=config.markets.offer_types),
        )
    if written and wide.PROFILE not in config.interactions.behaviour_events:
        log.warning(
            "interactions.behaviour_events of %s lacks %r, the event type of the profile tokens",
            config.source,
            wide.PROFILE,
        )
    markets = config.markets.markets
    known = {offer for market in markets.values() for offer in market.offers}
    offers = set(converted.events.loc[converted.events["event_type"] != wide.PROFILE, "item_id"])
    for name, unknown in (
        ("offers", offers - known),
        ("markets", set(converted.users["market"]) - set(markets)),
    ):
        if unknown:
            log.warning("the market catalogue has no %s %s", name, sorted(unknown))


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _print_table(columns: list[str], rows: list[list[object]]) -> None:
    cells = [[("NULL" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print(" | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in cells:
        print(" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


def _java_summary(exc: Py4JJavaError) -> str:
    """The failing call's first line and the root cause's message (a few lines at most)."""
    error = exc.java_exception
    top = str(error.getMessage() or error.toString()).strip().splitlines()[0]
    while error.getCause() is not None:
        error = error.getCause()
    root = str(error.getMessage() or error.toString()).strip().splitlines()[:6]
    return "\n  ".join([top, "caused by: " + root[0], *root[1:]]) if root else top


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
