"""A file's rows as the table's typed columns, and the checks of the file's contract.

Everything here is a pure function of the raw DataFrame as read (every column of the file,
plus :data:`FILE`, the file each row came from, and for CSV :data:`MALFORMED`): the checks
are boolean Columns, counted together in one Spark job by :func:`problems_df`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys.ingest import contract as C

FILE = "_file"  # the file a row came from (``_metadata.file_path``)
MALFORMED = "_malformed"  # a CSV line with more or fewer fields than the header, as it came
HIDDEN = (FILE, MALFORMED)
EXAMPLE = "_example"


@dataclass(frozen=True, eq=False)
class Check:
    """One rule of a file's contract: ``is_bad`` is true on the rows that break it."""

    column: str | None  # None: the whole row
    problem: str  # what is wrong, read before "in N rows": "does not parse as a date"
    hint: str  # what would be right
    is_bad: Column
    # A column whose distinct bad values the message lists (unknown markets, say).
    values: Column | None = None


def missing_columns(columns: Sequence[str], contract: C.FileContract) -> list[str]:
    return [c for c in contract.required if c not in columns]


def unknown_columns(columns: Sequence[str], contract: C.FileContract) -> list[str]:
    return [c for c in columns if c not in contract.names and c not in HIDDEN]


def _text(raw: Column) -> Column:
    """Trimmed text; empty is null (a CSV reader already makes an empty cell null)."""
    trimmed = F.trim(raw)
    return F.when(trimmed != "", trimmed)


def _from_text(text: Column, kind: C.Kind) -> Column:
    if kind is C.STRING:
        return text
    if kind is C.DATE:
        return text.try_cast("date")
    if kind is C.TIMESTAMP:
        # The formats that validation and Spark's casts accept; no zone: the session's, UTC.
        return F.try_to_timestamp(text)
    if kind is C.DOUBLE:
        return text.try_cast("double")
    if kind is C.INTEGER:
        return text.try_cast("int")
    if kind is C.BOOLEAN:
        return text.try_cast("boolean")
    if kind is C.STRING_LIST:
        items = F.transform(F.split(text, ";"), lambda item: F.trim(item))
        return F.filter(items, lambda item: item != "")
    raise ValueError(f"no text parser for {kind.name}")


def _is_native(source: T.DataType, kind: C.Kind) -> bool:
    if kind is C.STRING_LIST:
        return isinstance(source, T.ArrayType) and isinstance(source.elementType, T.StringType)
    return isinstance(source, kind.native)


def _from_native(raw: Column, source: T.DataType, column: C.Column) -> Column:
    if column.kind is C.INTEGER and isinstance(source, T.FractionalType):
        # e.g. a pandas int column with missing values, written as float: 2.0 is 2, 2.5 is bad
        return F.when(raw == F.floor(raw), raw.try_cast("int"))
    return raw.try_cast(column.dtype)


def parsed(raw_df: DataFrame, column: C.Column) -> tuple[Column, Column, bool]:
    """(value, is_bad, is_wrong_type) of a contract column present in ``raw_df``.

    ``value`` has the table's type and is null where the file has nothing (or something
    bad); ``is_bad``: the file has a value that is not one of the column's type;
    ``is_wrong_type``: the file's column has a type that can hold none (every value is bad).
    """
    raw, source = F.col(column.name), raw_df.schema[column.name].dataType
    if isinstance(source, T.StringType):
        text = _text(raw)
        value = _from_text(text, column.kind)
        return value, text.isNotNull() & value.isNull(), False
    if _is_native(source, column.kind):
        value = _from_native(raw, source, column)
        return value, raw.isNotNull() & value.isNull(), False
    return F.lit(None).cast(column.dtype), raw.isNotNull(), True


def _default(column: C.Column) -> Column:
    if isinstance(column.dtype, T.ArrayType):
        return F.array().cast(column.dtype)
    return F.lit(column.default).cast(column.dtype)


def table_df(raw_df: DataFrame, contract: C.FileContract) -> DataFrame:
    """The table's rows: typed columns in the table's order, defaults for optional columns
    that are absent or empty. Assumes the file passed :func:`checks`."""
    by_name = {c.name: c for c in contract.columns}
    out = []
    for name in contract.schema.fieldNames():
        column = by_name[name]
        value = parsed(raw_df, column)[0] if name in raw_df.columns else F.lit(None)
        if not column.required:
            value = F.coalesce(value, _default(column))
        out.append(value.cast(column.dtype).alias(name))
    return raw_df.select(*out)


def checks(
    raw_df: DataFrame,
    contract: C.FileContract,
    *,
    allowed: Mapping[str, tuple[str, Sequence[str]]] | None = None,
) -> list[Check]:
    """The contract's row checks for a file with every required column.

    ``allowed``: column -> (what its values are, the values it may take); for users the
    markets file's markets and plans. Checked on the parsed value.
    """
    found: list[Check] = []
    if MALFORMED in raw_df.columns:
        fields = len([c for c in raw_df.columns if c not in HIDDEN])
        found.append(
            Check(
                None,
                f"a line has more or fewer fields than the header's {fields}",
                'check the delimiter (a comma) and the quoting ("a, b"; a quote inside '
                'quotes is written ""); line breaks inside quotes are read',
                F.col(MALFORMED).isNotNull(),
            )
        )
    for column in contract.columns:
        if column.name not in raw_df.columns:
            continue
        value, is_bad, is_wrong_type = parsed(raw_df, column)
        kind = column.kind
        if is_wrong_type:
            source = raw_df.schema[column.name].dataType.simpleString()
            problem = f"has type {source} in the file, not {kind.name}"
            hint = f"accepted: {kind.parquet}, or a string of {kind.formats}"
        else:
            problem = f"does not parse as a {kind.name}"
            hint = f"accepted: {kind.formats}"
        found.append(Check(column.name, problem, hint, is_bad))
        if column.required and not contract.nulls_allowed:
            found.append(
                Check(
                    column.name,
                    "is empty",
                    "the column is required in every row",
                    value.isNull() & ~is_bad,
                )
            )
        if allowed and column.name in allowed:
            what, known = allowed[column.name]
            found.append(
                Check(
                    column.name,
                    f"is not a {what} of the markets file",
                    f"known: {list(known)}",
                    value.isNotNull() & ~value.isin(*known),
                    values=value,
                )
            )
    return found


def _example(raw_df: DataFrame) -> Column:
    """The whole raw row as strings, its file first. Every column is referenced, which also
    keeps Spark's CSV reader from pruning columns and missing a malformed line."""
    names = [FILE, *[c for c in raw_df.columns if c != FILE]]
    return F.struct(*[F.col(c).cast("string").alias(c) for c in names])


def problems_df(raw_df: DataFrame, found: Sequence[Check]) -> DataFrame:
    """One row: ``rows`` (all of them) and for check i, ``n_i`` (its bad rows) and ``e_i``
    (one of them: the least by file and values, so the example is stable). One Spark job
    counts every check."""
    example = _example(raw_df)
    aggs = [F.count(F.lit(1)).alias("rows")]
    for i, check in enumerate(found):
        aggs += [
            F.count_if(check.is_bad).alias(f"n_{i}"),
            F.min(F.when(check.is_bad, example)).alias(f"e_{i}"),
        ]
    return raw_df.agg(*aggs)


def duplicates_df(raw_df: DataFrame, key: Column) -> DataFrame:
    """One row: ``ids`` (values of ``key`` on more than one row), ``rows`` (the rows they are
    on) and ``e`` (the least such value: ``key``, its ``n`` rows and an ``example`` row).
    No rows at all when there is no duplicate."""
    return (
        raw_df.where(key.isNotNull())
        .groupBy(key.alias("key"))
        .agg(F.count(F.lit(1)).alias("n"), F.min(_example(raw_df)).alias(EXAMPLE))
        .where(F.col("n") > 1)
        .groupBy()
        .agg(
            F.count(F.lit(1)).alias("ids"),
            F.sum("n").alias("rows"),
            F.min(F.struct("key", "n", EXAMPLE)).alias("e"),
        )
        .where(F.col("ids") > 0)
    )


def describe_row(example: Mapping[str, object], contract: C.FileContract | None = None) -> str:
    """``in <file>: col=value, ...``: a raw row's columns of the contract (all of them
    without one), or the line of a malformed CSV row as it came."""
    if example.get(MALFORMED) is not None:
        values = f"line {example[MALFORMED]!r}"
    else:
        names = contract.names if contract else [c for c in example if c not in HIDDEN]
        values = ", ".join(f"{c}={_cell(example[c])}" for c in names if c in example)
    return f"in {example[FILE]}: {values}"


def _cell(value: object) -> str:
    return "<empty>" if value is None else str(value)


def describe_problem(
    check: Check,
    count: int,
    example: Mapping[str, object],
    contract: C.FileContract,
    values: Sequence[object] = (),
) -> str:
    """One problem: its column, how many rows, which values, and an example row."""
    where = f"column {check.column!r} " if check.column else ""
    listed = f"; values: {[str(v) for v in values]}" if values else ""
    return (
        f"{where}{check.problem} ({rows(count)}{listed}); {check.hint}\n"
        f"    e.g. {describe_row(example, contract)}"
    )


def rows(count: int) -> str:
    return f"{count:,} row{'s' if count != 1 else ''}"


def first_row_df(raw_df: DataFrame) -> DataFrame:
    """At most one row, ``e``: a raw row as :func:`describe_row` reads it."""
    return raw_df.select(_example(raw_df).alias("e")).limit(1)
