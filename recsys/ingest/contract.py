"""The contract of the users and events files that `ingest` reads (README, "Bring your own
data"): which columns, of which types, required or with which default.

The tables' types come from :mod:`recsys.schemas`; this module adds what a file may hold
instead: text to parse (CSV, or a string column in Parquet) or a compatible Parquet type.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import types as T

from recsys import schemas as S
from recsys.errors import RecsysError


class IngestError(RecsysError):
    """A users or events file that breaks its contract; nothing was written."""


@dataclass(frozen=True)
class Kind:
    """A column type as a file may hold it: text to parse (a CSV file, or a string column of
    a Parquet file) or a Parquet type taken as it is (cast to the table's type)."""

    name: str
    formats: str  # what text must look like to parse
    native: tuple[type[T.DataType], ...]  # the Parquet types taken as they are
    parquet: str  # those, in words


STRING = Kind(
    "string", "any text (surrounding spaces are removed)", (T.IntegralType,), "string or integer"
)
DATE = Kind(
    "date",
    "yyyy-MM-dd (a time after the date is ignored)",
    (T.DateType, T.TimestampType, T.TimestampNTZType),
    "date or timestamp",
)
TIMESTAMP = Kind(
    "timestamp",
    "yyyy-MM-dd HH:mm:ss[.SSS] or yyyy-MM-ddTHH:mm:ss[.SSS], with an optional zone "
    "(Z, +01:00; none means UTC), or yyyy-MM-dd (midnight UTC)",
    (T.TimestampType, T.TimestampNTZType, T.DateType),
    "timestamp or date",
)
DOUBLE = Kind("double", "a number, e.g. 3 or 1.5", (T.NumericType,), "any number type")
INTEGER = Kind("integer", "a whole number, e.g. 3", (T.NumericType,), "integer (or a whole float)")
BOOLEAN = Kind("boolean", "true or false (also 1/0, yes/no)", (T.BooleanType,), "boolean")
STRING_LIST = Kind(
    "list of strings",
    "values separated by ';', e.g. audiobooks_addon;hifi",
    (T.ArrayType,),
    "array<string>",
)


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    dtype: T.DataType  # the table's type
    required: bool  # the file must have the column; an optional one may be absent
    default: object = None  # an optional column's value when absent or empty


@dataclass(frozen=True)
class FileContract:
    what: str  # "users" or "events": the table it becomes
    columns: tuple[Column, ...]
    schema: T.StructType  # the table's
    # users: a required column must be filled in every row (the table has no quarantine);
    # events: empty ids and timestamps go on to build-interactions' quarantine.
    nulls_allowed: bool
    unique: str | None = None  # a column whose values must be on one row each

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def optional(self) -> list[str]:
        return [c.name for c in self.columns if not c.required]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


def _typed(schema: T.StructType, name: str, kind: Kind, required: bool, default=None) -> Column:
    return Column(name, kind, schema[name].dataType, required, default)


USERS_FILE = FileContract(
    what=S.USERS,
    columns=(
        _typed(S.USERS_SCHEMA, "user_id", STRING, True),
        _typed(S.USERS_SCHEMA, "market", STRING, True),
        _typed(S.USERS_SCHEMA, "current_plan", STRING, True),
        _typed(S.USERS_SCHEMA, "signup_date", DATE, True),
        _typed(S.USERS_SCHEMA, "active_addons", STRING_LIST, False, []),
        _typed(S.USERS_SCHEMA, "is_student_verified", BOOLEAN, False, False),
        _typed(S.USERS_SCHEMA, "household_size_hint", INTEGER, False, None),
        _typed(S.USERS_SCHEMA, "has_used_trial", BOOLEAN, False, False),
    ),
    schema=S.USERS_SCHEMA,
    nulls_allowed=False,
    unique="user_id",
)

EVENTS_FILE = FileContract(
    what=S.EVENTS,
    columns=(
        _typed(S.EVENTS_SCHEMA, "user_id", STRING, True),
        _typed(S.EVENTS_SCHEMA, "market", STRING, True),
        _typed(S.EVENTS_SCHEMA, "event_type", STRING, True),
        _typed(S.EVENTS_SCHEMA, "item_id", STRING, True),
        _typed(S.EVENTS_SCHEMA, "event_ts", TIMESTAMP, True),
        _typed(S.EVENTS_SCHEMA, "value", DOUBLE, False, 1.0),
    ),
    schema=S.EVENTS_SCHEMA,
    nulls_allowed=True,
)
