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
import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Light imports only: the help and config errors answer before Spark's JVM, MLflow, xgboost
# or the steps' modules are loaded (seconds each); those are imported where they are used.
from recsys import progress
from recsys.config import Config, load_config, with_ingest
from recsys.errors import RecsysError
from recsys.progress import setup_logging, step
from recsys.recommend import publish, versions
from recsys.tokens import covering_patterns, matches

if TYPE_CHECKING:
    from py4j.protocol import Py4JJavaError
    from pyspark.sql import SparkSession

    from recsys.ingest import wide

log = logging.getLogger("recsys.cli")

Step = Callable[["SparkSession", Config], None]


class _Steps(Mapping[str, Step]):
    """The steps by name, each one's module imported when it is first looked up."""

    def __init__(self, targets: dict[str, str]) -> None:
        self._targets = targets

    def __getitem__(self, name: str) -> Step:
        module, function = self._targets[name].split(":")
        return getattr(import_module(module), function)

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)


# The flow, in order (docs/configuration.md).
STEPS: Mapping[str, Step] = _Steps(
    {
        "generate-world": "recsys.world.job:run",
        "ingest": "recsys.ingest.job:run",
        "build-interactions": "recsys.interactions.job:run",
        "train": "recsys.training.job:run",
        "recommend": "recsys.recommend.job:run",
        "simulate": "recsys.experiment.job:simulate_run",
        "analyze": "recsys.experiment.job:analyze_run",
    }
)
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
        return _report(exc, config, args.command, log_file)


def _dispatch(args: argparse.Namespace, config: Config, log_file: Path) -> int:
    if args.command == "sql":
        return _sql(config, args.query, args.format, args.limit, args.write, log_file)
    if args.command == "rollback":
        return _rollback(config, args)
    if args.command == "convert":
        return _convert_wide(config, args.csv, args.spec, args.out)
    if args.command == "ingest":
        config = with_ingest(config, events=args.events, users=args.users, fmt=args.format)
    if args.command == "pipeline":
        steps = _pipeline_steps(config, args.until)
        return _run_pipeline(config, steps, args.resume, log_file)
    _forget_pipeline(config)  # a step run by hand changes tables a resumed pipeline trusts
    return _run_steps(config, [args.command], log_file)


def state_dir(config: Config) -> Path:
    """The local folder of this catalog's run state (log files, the pipeline's record): the
    embedded metastore's parent (``.recsys/`` in ``conf/local.yaml``), else ``.recsys/``
    in the current directory."""
    if config.catalog.metastore_dir:
        return Path(config.catalog.metastore_dir).parent
    return Path(".recsys").resolve()


def _report(exc: BaseException, config: Config, command: str, log_file: Path) -> int:
    """Print ``exc`` as one line that names the log file; its traces go to the log file."""
    from py4j.protocol import Py4JError, Py4JJavaError, Py4JNetworkError
    from pyspark.errors import PySparkException

    from recsys.session import jvm_is_dead

    where = f"(full log: {log_file})"
    if isinstance(exc, KeyboardInterrupt):
        progress.trace("interrupted", exc)
        print(f"recsys: interrupted {where}", file=sys.stderr)
        return 130
    if isinstance(exc, SystemExit):
        raise exc
    progress.trace("recsys failed", exc)
    if isinstance(exc, RecsysError):
        print(f"recsys: error: {exc} {where}", file=sys.stderr)
        return 2
    # Py4J says the connection broke; later calls find nothing listening. Either way, when
    # the JVM process has exited, that is the news, not the socket error.
    if isinstance(exc, Py4JNetworkError) or (
        isinstance(exc, Py4JError | ConnectionError) and jvm_is_dead()
    ):
        print(f"recsys: error: {_dead_jvm(config, command)} {where}", file=sys.stderr)
        return 1
    busy = _busy_metastore(exc, config)
    if busy:
        print(f"recsys: error: {busy} {where}", file=sys.stderr)
        return 1
    if isinstance(exc, PySparkException):
        print(f"recsys: spark error: {_first_line(exc)} {where}", file=sys.stderr)
        return 1
    if isinstance(exc, Py4JJavaError):  # a failed Spark job: say what failed and its root cause
        print(f"recsys: spark error: {_java_summary(exc)}\n  {where}", file=sys.stderr)
        return 1
    print(f"recsys: error: {type(exc).__name__}: {_first_line(exc)} {where}", file=sys.stderr)
    return 1


def _dead_jvm(config: Config, command: str) -> str:
    """What to say when Spark's JVM has gone: why it most likely went and what to change."""
    from recsys.session import jvm_exit_status

    status = jvm_exit_status()
    how = f"killed by signal {-status}" if status is not None and status < 0 else "exited"
    if status is not None and status > 0:
        how = f"exited with status {status}"
    memory = config.spark.driver_memory or "Spark's default of 1g"
    again = (
        "; then `recsys pipeline --resume` goes on from the step that failed"
        if command == "pipeline"
        else ""
    )
    return (
        f"Spark's JVM died ({how}), most likely out of memory (the kernel's OOM killer, or "
        f"a full heap): give it more with spark.driver_memory (now {memory}), or run less "
        f"beside it{again}"
    )


# Derby, the embedded metastore, lets one JVM at a time open its database.
_DERBY_BUSY = ("XSDB6", "Another instance of Derby may have already booted the database")


def _busy_metastore(exc: BaseException, config: Config) -> str | None:
    """The one line for an error caused by another process holding the embedded metastore,
    or None when ``exc`` is something else."""
    if not config.catalog.metastore_dir:
        return None
    text = "\n".join(_error_texts(exc))
    if not any(marker in text for marker in _DERBY_BUSY):
        return None
    return (
        f"the metastore {config.catalog.metastore_dir} is in use by another recsys process "
        "(the embedded Derby metastore admits one at a time): wait for that one to finish, "
        "or give both a metastore server (see conf/cluster.yaml)"
    )


def _error_texts(exc: BaseException) -> Iterator[str]:
    """The messages of ``exc``, its Python causes and the Java exceptions behind them."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        with suppress(Exception):
            yield str(getattr(error, "_desc", "") or "")
            yield str(getattr(error, "_stackTrace", "") or "")  # PySpark's captured chain
        java = getattr(error, "java_exception", None) or getattr(error, "_origin", None)
        for _ in range(50):  # a Java cause chain, bounded against cycles
            if java is None:
                break
            try:
                yield str(java.toString())
                java = java.getCause()
            except Exception:  # the JVM may be gone; the rest is in the log
                break
        error = error.__cause__ or error.__context__


@contextmanager
def _session(config: Config, app_name: str, log_file: Path | None) -> Iterator[SparkSession]:
    """The job's session; stopped at the end unless it was already running (a notebook's,
    or a test's), since stopping it would pull it from under its owner."""
    from pyspark.sql import SparkSession

    from recsys.session import build_session, jvm_is_dead

    owned = SparkSession.getActiveSession() is None
    spark = build_session(config, app_name=app_name, jvm_log=log_file)
    try:
        yield spark
    finally:
        # A dead JVM cannot be stopped; trying would raise over the error that killed it.
        if owned and not jvm_is_dead():
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


# Sections that change how a run goes, not what it writes: a resumed pipeline may be given
# more driver memory, another master or another log level than the run it goes on with.
_RUN_ONLY = ("spark", "logging")


def settings_of(config: Config) -> dict[str, Any]:
    """The settings that decide what a pipeline's steps write, as flat ``dotted.key: value``
    pairs (JSON values): the config less its Spark and logging sections, plus the market
    catalogue it read."""
    data = config.model_dump(mode="json", exclude=set(_RUN_ONLY))
    if config.markets is not None:
        data["markets_catalogue"] = config.markets.model_dump(mode="json")
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            flat[prefix] = value

    walk("", data)
    return flat


def _settings_hash(settings: dict[str, Any]) -> str:
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _pipeline_record(config: Config) -> Path:
    return state_dir(config) / f"pipeline-{config.catalog.database}.json"


def _forget_pipeline(config: Config) -> None:
    _pipeline_record(config).unlink(missing_ok=True)


def _run_pipeline(config: Config, steps: list[str], resume: bool, log_file: Path) -> int:
    """Run ``steps`` in order, recording each finished one with the settings' hash; with
    ``resume``, skip those the last run finished with the same settings."""
    record_path = _pipeline_record(config)
    settings = settings_of(config)
    digest = _settings_hash(settings)
    done: list[str] = []
    if resume:
        done = _resumable(record_path, settings, digest, steps)
    remaining = [s for s in steps if s not in done]
    if not remaining:
        log.info("pipeline --resume: %s finished already with these settings", ", ".join(steps))
        return 0

    finished = list(done)

    def record(name: str | None = None) -> None:
        if name is not None:
            finished.append(name)
        record_path.parent.mkdir(parents=True, exist_ok=True)
        state = {"settings_hash": digest, "settings": settings, "finished": finished}
        record_path.write_text(json.dumps(state, indent=1, default=str), encoding="utf-8")

    record()  # a run that starts over forgets what the last one finished
    return _run_steps(config, remaining, log_file, on_done=record, total=len(steps))


def _resumable(path: Path, settings: dict[str, Any], digest: str, steps: list[str]) -> list[str]:
    """The leading ``steps`` the recorded pipeline run finished with these settings (empty,
    with a log line saying why, when there is nothing to go on from)."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.info(
            "pipeline --resume: no record of an earlier run (%s); starting from %s", path, steps[0]
        )
        return []
    if state.get("settings_hash") != digest:
        before = state.get("settings", {})
        changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
        shown = ", ".join(
            f"{k}: {_short(before.get(k))} -> {_short(settings.get(k))}" for k in changed[:5]
        )
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        log.info(
            "pipeline --resume: settings changed since the last run (%s%s); starting over from %s",
            shown or "the record has no settings",
            more,
            steps[0],
        )
        return []
    finished = set(state.get("finished", []))
    done = []
    for name in steps:  # only a finished prefix: a later step's output rests on the earlier
        if name not in finished:
            break
        done.append(name)
    if done:
        log.info("pipeline --resume: %s finished with these settings; going on", ", ".join(done))
    return done


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _run_steps(
    config: Config,
    steps: list[str],
    log_file: Path | None = None,
    *,
    on_done: Callable[[str], None] | None = None,
    total: int | None = None,
) -> int:
    from recsys.session import size_shuffle_partitions

    started = time.perf_counter()
    total = total or len(steps)
    with _session(config, f"recsys {' + '.join(steps)}", log_file) as spark:
        for number, name in enumerate(steps, start=total - len(steps) + 1):
            label = name if total == 1 else f"{name} (step {number} of {total})"
            with step(label):
                size_shuffle_partitions(spark, config, INPUTS[name])
                STEPS[name](spark, config)
            if on_done is not None:
                on_done(name)
    log.info("finished %s in %.1fs", ", ".join(steps), time.perf_counter() - started)
    return 0


# The parsed plans a read-only `recsys sql` runs besides queries: they show, describe or
# explain, and change nothing (the current namespace and session settings are the session's).
READ_ONLY_COMMANDS = frozenset(
    {
        "DescribeColumn",
        "DescribeFunction",
        "DescribeNamespace",
        "DescribeQueryCommand",
        "DescribeRelation",
        "ExplainCommand",
        "SetCatalogAndNamespace",
        "SetCommand",
        "ShowCatalogsCommand",
        "ShowColumns",
        "ShowCreateTable",
        "ShowCurrentNamespace",
        "ShowCurrentNamespaceCommand",
        "ShowFunctions",
        "ShowNamespaces",
        "ShowNamespacesCommand",
        "ShowPartitions",
        "ShowTableProperties",
        "ShowTables",
        "ShowTablesExtended",
        "ShowViews",
    }
)


def writes(spark: SparkSession, statement: str) -> str | None:
    """What ``statement`` would change, by Spark's parsed plan: the name of its first
    command that is not a read-only one (``CreateTable``, ``DropTable``,
    ``InsertIntoStatement``, ...), or None for a query or a show/describe/explain."""
    from py4j.java_gateway import is_instance_of

    gateway = spark.sparkContext._gateway
    plan = spark._jsparkSession.sessionState().sqlParser().parsePlan(statement)
    pending = [plan]
    while pending:
        node = pending.pop()
        name = node.getClass().getSimpleName()
        is_command = any(
            is_instance_of(gateway, node, f"org.apache.spark.sql.catalyst.plans.logical.{kind}")
            for kind in ("Command", "ParsedStatement")
        )
        if is_command and name not in READ_ONLY_COMMANDS:
            return name
        children = node.children()
        pending.extend(children.apply(i) for i in range(children.size()))
    return None


def _sql(
    config: Config, query: str, fmt: str, limit: int, write: bool, log_file: Path | None
) -> int:
    with _session(config, "recsys sql", log_file) as spark:
        spark.sql(f"USE {config.catalog.database}")
        if not write:
            change = writes(spark, query)
            if change is not None:
                raise RecsysError(
                    f"sql: refused: the statement would change the catalog or its data "
                    f"(Spark plans it as {change}); `recsys sql` is read-only unless "
                    "--write is given"
                )
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


def _rollback(config: Config, args: argparse.Namespace) -> int:
    """List the kept versions of plan_recommendations, or serve one of them again."""
    with _session(config, "recsys rollback", None) as spark:
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
