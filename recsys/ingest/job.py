"""The `ingest` step: a user's own users and events files into ``users``, ``events`` and
``catalog`` (from the markets file), the tables generate-world writes, so that
build-interactions, train and recommend run unchanged.

Both files are checked against their contract (:mod:`recsys.ingest.contract`) before anything
is written; a file that breaks it stops the step with every problem, its count and an
example row. Row problems that build-interactions quarantines (unknown market, event type or
item in events, future timestamps, negative values, duplicates) are left to it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from py4j.protocol import Py4JJavaError
from pyspark.errors import AnalysisException, PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys import schemas as S
from recsys.catalog import catalog_df
from recsys.config import Config
from recsys.ingest import parse as P
from recsys.ingest.contract import EVENTS_FILE, USERS_FILE, FileContract, IngestError
from recsys.progress import step
from recsys.tables import drop_table, filesystem, log_counts, publish_table, read_table

log = logging.getLogger(__name__)

_EXTENSIONS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_COMPRESSION = (".gz", ".bz2", ".deflate", ".lz4", ".zst", ".snappy")
# How many distinct bad values (unknown markets, say) an error lists.
_VALUES_SHOWN = 10


class MalformedLinesError(IngestError):
    """A CSV file with lines of more or fewer fields than its header."""


def run(spark: SparkSession, config: Config) -> None:
    """Check the users and events files, then publish ``catalog``, ``users`` and ``events``.

    Nothing is written when a file breaks its contract, has no rows, or has fewer rows than
    the table it replaces by more than ``ingest.max_drop_share`` (unless that table is the
    synthetic world's); every table then keeps its previous version.
    """
    settings = config.ingest
    if not settings.is_set:
        raise IngestError(
            "ingest needs a users and an events file: pass --users PATH --events PATH, or set "
            "ingest.users and ingest.events in the config"
        )
    markets = config.markets
    allowed = {
        "market": ("market", sorted(markets.markets)),
        "current_plan": ("plan", markets.plan_ids()),
    }
    with step("ingest: check users"):
        users_raw_df, users_rows = _read_checked(
            spark, settings.users, settings.format, USERS_FILE, allowed=allowed
        )
    with step("ingest: check events"):
        events_raw_df, events_rows = _read_checked(
            spark, settings.events, settings.format, EVENTS_FILE
        )
    # A synthetic world (it has a hidden truth) is replaced by own data of any size.
    if not spark.catalog.tableExists(config.table(S.WORLD_TRUTH)):
        for name, path, rows in (
            (S.USERS, settings.users, users_rows),
            (S.EVENTS, settings.events, events_rows),
        ):
            _check_shrink(spark, config, name, path, rows)
    if drop_table(spark, config, S.WORLD_TRUTH):
        log.info(
            "dropped %s: the synthetic world's hidden truth does not describe this data "
            "(simulate is demo-only)",
            config.table(S.WORLD_TRUTH),
        )
    with step("ingest: catalog"):
        publish_table(spark, config, catalog_df(spark, markets), S.CATALOG)
    with step("ingest: users"):
        publish_table(spark, config, P.table_df(users_raw_df, USERS_FILE), S.USERS)
        log_counts(spark.table(config.table(S.USERS)), S.USERS, list(markets.markets))
    with step("ingest: events"):
        publish_table(spark, config, P.table_df(events_raw_df, EVENTS_FILE), S.EVENTS)
        log_counts(spark.table(config.table(S.EVENTS)), S.EVENTS, list(markets.markets))


def _read_checked(
    spark: SparkSession,
    path: str,
    fmt: str,
    contract: FileContract,
    *,
    allowed: Mapping[str, tuple[str, Sequence[str]]] | None = None,
) -> tuple[DataFrame, int]:
    """(raw rows, their count) of a file that passed :func:`check_file`.

    A CSV field with a line break inside quotes (RFC 4180) splits its record into lines of
    too few fields; a file with such lines is read again with Spark's ``multiLine``, which
    reads each file in one task, so files without them keep the split, parallel read.
    """
    raw_df = read_file(spark, path, fmt, contract)
    try:
        return raw_df, check_file(raw_df, contract, path, allowed=allowed)
    except MalformedLinesError:
        log.info(
            "%s file %s: lines of too few or many fields; reading it again with line breaks "
            "inside quotes",
            contract.what,
            path,
        )
        raw_df = read_file(spark, path, fmt, contract, multi_line=True)
        return raw_df, check_file(raw_df, contract, path, allowed=allowed)


def _check_shrink(spark: SparkSession, config: Config, name: str, path: str, rows: int) -> None:
    """Refuse a file with far fewer rows than the table it replaces: a partial export."""
    if not spark.catalog.tableExists(config.table(name)):
        return
    before = read_table(spark, config, name).count()
    limit = config.ingest.max_drop_share
    if before and rows < before * (1 - limit):
        raise IngestError(
            f"{name} file {path} has {P.rows(rows)}, {1 - rows / before:.1%} fewer than the "
            f"{before:,} of the {config.table(name)} table it would replace; more than "
            f"ingest.max_drop_share={limit:.0%}, so nothing was written. If the smaller file "
            "is right, rerun with --set ingest.max_drop_share=1"
        )


def _is_empty(spark: SparkSession, path: str) -> bool:
    """Whether the file(s) at ``path`` exist and hold 0 bytes in all."""
    fs, hadoop_path = filesystem(spark, path)
    sizes = []
    for status in fs.globStatus(hadoop_path) or []:
        inside = fs.listStatus(status.getPath()) if status.isDirectory() else [status]
        sizes += [s.getLen() for s in inside if not s.getPath().getName().startswith(("_", "."))]
    return bool(sizes) and sum(sizes) == 0


def format_of(name: str) -> str | None:
    """csv or parquet from a file name's extension (after any compression suffix), or None."""
    name = name.rstrip("/").lower()
    for suffix in _COMPRESSION:
        name = name.removesuffix(suffix)
    return next((fmt for ext, fmt in _EXTENSIONS.items() if name.endswith(ext)), None)


def _detect_format(spark: SparkSession, path: str, what: str) -> str:
    """The format of ``path`` by its extension, or else by the files a folder holds."""
    fmt = format_of(path)
    if fmt:
        return fmt
    fs, hadoop_path = filesystem(spark, path)
    names = []
    for status in fs.globStatus(hadoop_path) or []:
        inside = fs.listStatus(status.getPath()) if status.isDirectory() else [status]
        names += [s.getPath().getName() for s in inside]
    if not names:
        raise IngestError(f"{what} file {path} does not exist")
    found = {format_of(n) for n in names if not n.startswith(("_", "."))} - {None}
    if len(found) != 1:
        raise IngestError(
            f"{what} file {path}: cannot tell its format from the file names; pass "
            "--format csv|parquet (or set ingest.format)"
        )
    return found.pop()


def read_file(
    spark: SparkSession,
    path: str,
    fmt: str,
    contract: FileContract,
    *,
    multi_line: bool = False,
) -> DataFrame:
    """Every column of the file(s) at ``path`` as they are.

    Parameters
    ----------
    spark : SparkSession
    path : str
        A file, a folder or a glob.
    fmt : str
        ``csv``, ``parquet`` or ``auto`` (from the file names).
    contract : FileContract
        The file's contract; names the file in errors.
    multi_line : bool
        CSV: read line breaks inside quoted fields (Spark's ``multiLine``; one task per file).

    Returns
    -------
    DataFrame
        One row per record, plus :data:`parse.FILE` (and for CSV :data:`parse.MALFORMED`).
        CSV columns are all strings, named by the header.
    """
    what = contract.what
    fmt = _detect_format(spark, path, what) if fmt == "auto" else fmt
    if _is_empty(spark, path):
        raise IngestError(f"{what} file {path}: the file is empty (0 bytes); nothing was written")
    log.info("reading %s from %s (%s)", what, path, fmt)
    with _read_errors(what, path):
        if fmt == "csv":
            # escape '"': a quote inside quotes is written "" (RFC 4180), not \".
            reader = (
                spark.read.option("header", True)
                .option("escape", '"')
                .option("multiLine", multi_line)
            )
            names = reader.csv(path).columns
            if not names:  # no header line: Spark would fail on the malformed column alone
                raise IngestError(
                    f"{what} file {path}: the file is empty (no header line); nothing was written"
                )
            schema = T.StructType([T.StructField(n, T.StringType()) for n in [*names, P.MALFORMED]])
            # enforceSchema off: every file's header must match the first one's (a glob of
            # files with columns in another order fails instead of being read by position).
            raw_df = (
                reader.schema(schema)
                .option("enforceSchema", False)
                .option("mode", "PERMISSIVE")
                .option("columnNameOfCorruptRecord", P.MALFORMED)
                .csv(path)
            )
        else:
            raw_df = spark.read.parquet(path)
    return raw_df.withColumn(P.FILE, F.col("_metadata.file_path"))


def check_file(
    raw_df: DataFrame,
    contract: FileContract,
    path: str,
    *,
    allowed: Mapping[str, tuple[str, Sequence[str]]] | None = None,
) -> int:
    """Raise :class:`IngestError` naming every way the file breaks its contract.

    Two Spark jobs at most: one counts every row check, one the repeated ids (users); a
    failing check costs one more, small, for its example values.

    Returns
    -------
    int
        The file's rows; a file with none (a header alone) raises instead.

    Raises
    ------
    MalformedLinesError
        When, among the problems, CSV lines have more or fewer fields than the header.
    IngestError
        For any other problem.
    """
    what = contract.what
    columns = [c for c in raw_df.columns if c not in P.HIDDEN]
    missing = P.missing_columns(columns, contract)
    if missing:
        with _read_errors(what, path):
            first = P.first_row_df(raw_df).first()
        example = (
            f"e.g. first row {P.describe_row(first['e'].asDict())}"
            if first
            else "the file is empty"
        )
        raise IngestError(
            f"{what} file {path} lacks the required columns {missing}; it has columns "
            f"{columns}.\n  Required: {contract.required}; optional: {contract.optional} "
            f'(README.md, "Bring your own data").\n  {example}'
        )
    unknown = P.unknown_columns(columns, contract)
    if unknown:
        log.info("%s file %s: ignoring columns not in the contract: %s", what, path, unknown)

    found = P.checks(raw_df, contract, allowed=allowed)
    with _read_errors(what, path):
        counts = P.problems_df(raw_df, found).first()
        if counts["rows"] == 0:
            raise IngestError(
                f"{what} file {path} has 0 rows (a header alone); nothing was written and "
                f"{what} keeps its previous version"
            )
        problems = [
            P.describe_problem(
                check,
                counts[f"n_{i}"],
                counts[f"e_{i}"].asDict(),
                contract,
                _bad_values(raw_df, check),
            )
            for i, check in enumerate(found)
            if counts[f"n_{i}"]
        ]
        if contract.unique:
            key = P.parsed(raw_df, next(c for c in contract.columns if c.name == contract.unique))
            repeated = P.duplicates_df(raw_df, key[0]).first()
            if repeated:
                e = repeated["e"]
                ids = repeated["ids"]
                problems.append(
                    f"column {contract.unique!r} has {ids:,} value{'s' if ids != 1 else ''} on "
                    f"more than one row ({P.rows(repeated['rows'])}); each must be on one row\n"
                    f"    e.g. {e['key']!r} is on {e['n']:,} rows, one "
                    f"{P.describe_row(e[P.EXAMPLE].asDict(), contract)}"
                )
    if problems:
        malformed = any(c.column is None and counts[f"n_{i}"] for i, c in enumerate(found))
        raise (MalformedLinesError if malformed else IngestError)(
            f'{what} file {path} breaks its contract (README.md, "Bring your own data"); '
            "nothing was written:\n  - " + "\n  - ".join(problems)
        )
    return counts["rows"]


def _bad_values(raw_df: DataFrame, check: P.Check) -> list[object]:
    if check.values is None:
        return []
    rows = (
        raw_df.where(check.is_bad)
        .select(check.values.alias("v"))
        .distinct()
        .orderBy("v")
        .limit(_VALUES_SHOWN)
        .collect()
    )
    return [r["v"] for r in rows]


@contextmanager
def _read_errors(what: str, path: str) -> Iterator[None]:
    """A file that cannot be read (not found, not Parquet, a CSV header that differs from
    the first file's, a Parquet column whose type differs between files) as an
    :class:`IngestError` naming the file and the reason, instead of a Java stack trace."""
    try:
        yield
    except AnalysisException as exc:
        raise IngestError(f"{what} file {path}: {_first_line(str(exc))}") from None
    except (Py4JJavaError, PySparkException) as exc:
        text = str(exc)
        if "FAILED_READ_FILE" not in text and "CSV header" not in text:
            raise
        file = re.search(r"(?:reading file|CSV file:) (\S+?)\.?\s", text)
        reason = re.search(r"(CSV header[^\n]*(?:\n [^\n]*)*|Data type mismatches[^\n]*)", text)
        raise IngestError(
            f"{what} file {path}: cannot read {file[1] if file else 'a file'}: "
            f"{reason[1].strip() if reason else _first_line(text)}"
            + (
                "; every file of a folder or glob needs the same columns in the same order"
                if "CSV header" in text
                else ""
            )
        ) from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unreadable"
