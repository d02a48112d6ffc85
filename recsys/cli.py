"""The `recsys` command: one subcommand per step of the flow, plus `pipeline` and `sql`.

    recsys generate-world --conf conf/local.yaml --set world.users=50000
    recsys ingest --conf conf/local.yaml --users data/users.csv --events data/events.csv
    recsys pipeline --conf conf/local.yaml
    recsys sql "select market, count(*) from recsys.users group by market"
    recsys convert wide --conf my.yaml --spec my_wide.yaml customers.csv

`spark-submit jobs/<step>.py --conf ...` runs the same function (see jobs/). This module
holds the parser and the dispatch; the steps and `pipeline` are in :mod:`recsys.pipeline`,
`sql` in :mod:`recsys.sql`, and what a failed run prints in :mod:`recsys.failures`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

# Light imports only: the help and config errors answer before Spark's JVM, MLflow, xgboost
# or the steps' modules are loaded (seconds each); those are imported where they are used.
from recsys import progress
from recsys.config import Config, load_config, with_ingest
from recsys.errors import RecsysError
from recsys.failures import report
from recsys.pipeline import STEPS, forget_pipeline, pipeline_steps, run_pipeline, run_steps
from recsys.progress import setup_logging
from recsys.recommend import publish, versions
from recsys.runs import command_session, state_dir
from recsys.sql import run_sql
from recsys.tokens import covering_patterns, matches
from recsys.vocabulary import HOLDOUT, VALIDATION

if TYPE_CHECKING:
    from recsys.ingest import wide

log = logging.getLogger("recsys.cli")


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
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also print Spark's, Py4J's and MLflow's own output here (it always goes to "
        "the run's log file under the state folder's logs/)",
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
    pipeline.add_argument(
        "--resume",
        action="store_true",
        help="go on from the first step that did not finish, when the settings are those of "
        "the last pipeline run (a changed setting starts over, and the log says which)",
    )
    rollback = commands.add_parser(
        "rollback",
        parents=[common],
        help="serve a kept snapshot of plan_recommendations again",
    )
    target = rollback.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--list", action="store_true", help="list the kept versions, the served one marked"
    )
    target.add_argument(
        "--to", type=_date, metavar="YYYY-MM-DD", help="serve the snapshot's kept version"
    )
    target.add_argument(
        "--to-version", metavar="ID", help="serve a kept version by its id (see --list)"
    )
    target.add_argument(
        "--previous",
        action="store_true",
        help="serve the newest kept version published before the one served now",
    )
    convert = commands.add_parser(
        "convert", help="turn a table of your own into users and events files"
    )
    shapes = convert.add_subparsers(dest="shape", required=True, metavar="SHAPE")
    wide_parser = shapes.add_parser(
        "wide",
        parents=[common],
        help="one row per customer, a column per product held, profile columns",
        description="A wide customer x product table as users and events files. "
        "See docs/own-data.md.",
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
    sql = commands.add_parser(
        "sql",
        parents=[common],
        help="query the configured catalog (read-only unless --write)",
        description="Run one Spark SQL statement on the configured catalog, with its "
        "database as the current one. Read-only by default: a statement that would change "
        "the catalog or the data (CREATE, DROP, ALTER, INSERT, TRUNCATE, ...) is refused "
        "unless --write is given, so that a typo cannot drop the tables and views that "
        "marketing surfaces read.",
    )
    sql.add_argument("query", help="one SQL statement")
    sql.add_argument(
        "--write",
        action="store_true",
        help="allow a statement that changes the catalog or the data",
    )
    sql.add_argument("--format", choices=("table", "json"), default="table")
    sql.add_argument("--limit", type=int, default=1000, help="rows to print (default 1000)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``recsys`` command line; returns the process's exit status.

    Arguments and config are checked before Spark or MLflow is loaded, so that mistakes
    there answer at once. An error prints one line on stderr (exit status 2 for a problem
    the user can fix, 1 for a failed Spark job); its traceback, and the Java stack trace
    where there is one, go to the run's log file, which the line names.
    """
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.conf, args.overrides)
    except RecsysError as exc:
        print(f"recsys: error: {exc}", file=sys.stderr)
        return 2
    command = args.command if args.command != "convert" else f"convert-{args.shape}"
    log_file = progress.new_log_file(state_dir(config) / "logs", command)
    setup_logging(config.logging.level, log_file=log_file, verbose=args.verbose)
    try:
        return _dispatch(args, config, log_file)
    except BaseException as exc:  # every error: one line here, its traces in the log
        return report(exc, config, args.command, log_file)


def _dispatch(args: argparse.Namespace, config: Config, log_file: Path) -> int:
    if args.command == "sql":
        return run_sql(config, args.query, args.format, args.limit, args.write, log_file)
    if args.command == "rollback":
        return _rollback(config, args)
    if args.command == "convert":
        return _convert_wide(config, args.csv, args.spec, args.out)
    if args.command == "ingest":
        config = with_ingest(config, events=args.events, users=args.users, fmt=args.format)
    if args.command == "pipeline":
        steps = pipeline_steps(config, args.until)
        return run_pipeline(config, steps, args.resume, log_file)
    forget_pipeline(config)  # a step run by hand changes tables a resumed pipeline trusts
    return run_steps(config, [args.command], log_file)


def _rollback(config: Config, args: argparse.Namespace) -> int:
    """List the kept versions of plan_recommendations, or serve one of them again."""
    with command_session(config, "recsys rollback", None) as spark:
        if args.list:
            _print_versions(versions.kept_versions(spark, config))
            return 0
        before = publish.current(spark, config)
        if args.to_version:
            served = versions.serve_version(spark, config, args.to_version)
        elif args.previous:
            served = versions.serve_previous(spark, config)
        else:
            served = versions.rollback(spark, config, args.to)
    log.info(
        "%s now serves version %s (was %s)",
        config.table("plan_recommendations_current"),
        served.version,
        before.version if before else "nothing",
    )
    return 0


def _print_versions(kept: Sequence[versions.Version]) -> None:
    """The kept versions, oldest first, as a table a person reads."""
    if not kept:
        print("no published versions are kept")
        return
    header = ("version", "snapshot", "published (UTC)", "rows", "models", "")
    rows = [
        (
            v.id,
            str(v.snapshot),
            v.staged_at.strftime("%Y-%m-%d %H:%M:%S"),
            f"{v.rows:,}",
            ", ".join(v.models),
            "served" if v.is_served else "",
        )
        for v in kept
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


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
    from recsys.ingest import wide

    spec = wide.load_spec(spec_path)
    interactions = config.interactions
    converted = wide.convert(
        wide.read_table(csv, spec),
        spec,
        snapshot=interactions.snapshot_date,
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
        f"{roles.get(HOLDOUT, 0):,}",
        interactions.snapshot_date,
        f"{roles.get(VALIDATION, 0):,}",
    )
    _warn_unknown(config, converted)
    return 0


def _warn_unknown(config: Config, converted: wide.Converted) -> None:
    """Name the tokens, offers and markets the files hold that the config does not list,
    before build-interactions quarantines them."""
    from recsys.ingest import wide

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


if __name__ == "__main__":
    sys.exit(main())
