"""`recsys sql`: one Spark SQL statement on the configured catalog, read-only unless the
user allows writes, printed as a table or as JSON lines."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from recsys.config import Config
from recsys.errors import RecsysError
from recsys.runs import command_session

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


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
    """What ``statement`` would change, by Spark's parsed plan.

    Parameters
    ----------
    spark : SparkSession
        The session whose parser reads the statement; nothing runs.
    statement : str
        One SQL statement.

    Returns
    -------
    str or None
        The name of its first command that is not a read-only one (``CreateTable``,
        ``DropTable``, ``InsertIntoStatement``, ...), or None for a query or a
        show/describe/explain.
    """
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


def run_sql(
    config: Config, query: str, fmt: str, limit: int, write: bool, log_file: Path | None
) -> int:
    """Run ``query`` on the configured catalog, with its database as the current one, and
    print its rows on stdout.

    Parameters
    ----------
    config : Config
        The run's config: its catalog and database.
    query : str
        One SQL statement.
    fmt : {"table", "json"}
        A table a person reads, or one JSON object per row.
    limit : int
        Rows to print; a note on stderr says when there were more.
    write : bool
        Allow a statement that changes the catalog or its data (see :func:`writes`).
    log_file : Path or None
        The run's log file, which also takes the JVM's output.

    Returns
    -------
    int
        The exit status, 0.

    Raises
    ------
    RecsysError
        When the statement would write and ``write`` is False.
    """
    with command_session(config, "recsys sql", log_file) as spark:
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


def _print_table(columns: list[str], rows: list[list[object]]) -> None:
    cells = [[("NULL" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print(" | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in cells:
        print(" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
