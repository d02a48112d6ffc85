"""ingest end to end: CSV and Parquet files into users, events and catalog, and the files
whose contract breaks, each with the file, the column and an example row in the message."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import types as T

from recsys import schemas as S
from recsys.catalog import catalog_df
from recsys.config import load_config, with_ingest
from recsys.ingest import job as ingest_job
from recsys.ingest.contract import IngestError
from recsys.tables import publish_table, read_table
from tests.conftest import database_conf

USERS_CSV = """\
user_id,market,current_plan,signup_date,active_addons,is_student_verified,household_size_hint,has_used_trial,favourite_colour
u1,SE,premium_individual,2025-03-01,audiobooks_addon,true,2,false,blue
u2,JP,free,2024-12-31,,,,,
 u3 ,BR,premium_family,2026-01-15T08:00:00,audiobooks_addon; hifi ,no,4,yes,"red, mostly"
"""
# No value column (it defaults to 1.0), columns in another order, one extra column.
EVENTS_CSV = """\
event_ts,user_id,market,event_type,item_id,source
2026-10-20 10:00:00,u1,SE,conversion,premium_individual,app
2026-10-21T08:30:00Z,u2,JP,listen,genre:pop,web
2026-10-22,u3,BR,plan_page_view,premium_family,
2026-10-23 01:00:00+02:00,,XX,teleport,nothing,app
"""

EXPECTED_USERS = [
    ("u1", "SE", "premium_individual", ["audiobooks_addon"], dt.date(2025, 3, 1), True, 2, False),
    ("u2", "JP", "free", [], dt.date(2024, 12, 31), False, None, False),
    (
        "u3",
        "BR",
        "premium_family",
        ["audiobooks_addon", "hifi"],
        dt.date(2026, 1, 15),
        False,
        4,
        True,
    ),
]
EXPECTED_EVENTS = [
    ("u1", "SE", "conversion", "premium_individual", dt.datetime(2026, 10, 20, 10), 1.0),
    ("u2", "JP", "listen", "genre:pop", dt.datetime(2026, 10, 21, 8, 30), 1.0),
    ("u3", "BR", "plan_page_view", "premium_family", dt.datetime(2026, 10, 22), 1.0),
    # Not ingest's to judge: build-interactions quarantines it.
    (None, "XX", "teleport", "nothing", dt.datetime(2026, 10, 22, 23), 1.0),
]


def _ingest(spark, config, users, events, fmt=None):
    ingest_job.run(spark, with_ingest(config, users=str(users), events=str(events), fmt=fmt))


def _assert_tables(spark, config, users_rows, events_rows):
    for name, schema, rows in (
        (S.USERS, S.USERS_SCHEMA, users_rows),
        (S.EVENTS, S.EVENTS_SCHEMA, events_rows),
    ):
        assert_df_equality(
            read_table(spark, config, name),
            spark.createDataFrame(rows, schema),
            ignore_row_order=True,
            ignore_nullable=True,
        )


def test_csv_files_become_the_tables(spark, ingest_conf, tmp_path):
    _, config = ingest_conf
    (tmp_path / "users.csv").write_text(USERS_CSV)
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "a.csv").write_text(EVENTS_CSV)
    # A world_truth of an earlier synthetic world no longer describes these users.
    publish_table(spark, config, spark.range(1), S.WORLD_TRUTH)

    _ingest(spark, config, tmp_path / "users.csv", tmp_path / "events")

    _assert_tables(spark, config, EXPECTED_USERS, EXPECTED_EVENTS)
    assert_df_equality(
        read_table(spark, config, S.CATALOG),
        catalog_df(spark, config.markets),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    assert not spark.catalog.tableExists(config.table(S.WORLD_TRUTH))


def test_parquet_files_become_the_tables(spark, ingest_conf, tmp_path):
    _, config = ingest_conf
    # Native Parquet types that are not the tables' own but hold them: long ids, a long
    # household hint, a timestamp_ntz and an integer value.
    users_df = spark.createDataFrame(
        [
            (1, "SE", "premium_duo", dt.date(2025, 1, 2), ["audiobooks_addon"], True, 2, True),
            (2, "DE", "free", dt.date(2025, 1, 3), None, None, None, None),
        ],
        "user_id long, market string, current_plan string, signup_date date, "
        "active_addons array<string>, is_student_verified boolean, household_size_hint long, "
        "has_used_trial boolean",
    )
    events_df = spark.createDataFrame(
        [("1", "SE", "listen", "genre:rock", dt.datetime(2026, 10, 1, 12), 45)],
        "user_id string, market string, event_type string, item_id string, "
        "event_ts timestamp_ntz, value int",
    )
    users_df.write.parquet(str(tmp_path / "users"))
    events_df.write.parquet(str(tmp_path / "events"))

    _ingest(spark, config, tmp_path / "users", tmp_path / "events")

    _assert_tables(
        spark,
        config,
        [
            ("1", "SE", "premium_duo", ["audiobooks_addon"], dt.date(2025, 1, 2), True, 2, True),
            ("2", "DE", "free", [], dt.date(2025, 1, 3), False, None, False),
        ],
        [("1", "SE", "listen", "genre:rock", dt.datetime(2026, 10, 1, 12), 45.0)],
    )


GOOD_USERS = "user_id,market,current_plan,signup_date\nu1,SE,free,2025-01-01\n"
GOOD_EVENTS = "user_id,market,event_type,item_id,event_ts\nu1,SE,listen,genre:pop,2026-10-01\n"


def _write(folder, users=GOOD_USERS, events=GOOD_EVENTS):
    (folder / "users.csv").write_text(users)
    (folder / "events.csv").write_text(events)
    return folder / "users.csv", folder / "events.csv"


def _error(spark, config, folder, **files) -> str:
    users, events = _write(folder, **files)
    with pytest.raises(IngestError) as err:
        _ingest(spark, config, users, events)
    return str(err.value)


def test_a_missing_column_names_it_and_the_columns_the_file_has(spark, ingest_conf, tmp_path):
    _, config = ingest_conf
    message = _error(spark, config, tmp_path, users="user_id,market,plan\nu7,SE,free\n")
    assert f"users file {tmp_path / 'users.csv'}" in message
    assert "lacks the required columns ['current_plan', 'signup_date']" in message
    assert "it has columns ['user_id', 'market', 'plan']" in message
    assert f"e.g. first row in file:{tmp_path / 'users.csv'}: user_id=u7, market=SE, plan=free" in (
        message
    )


def test_a_value_that_does_not_parse_names_column_type_count_and_row(spark, ingest_conf, tmp_path):
    _, config = ingest_conf
    events = GOOD_EVENTS.replace("event_ts\n", "event_ts,value\n").replace(
        "2026-10-01\n", "2026-10-01,3\n"
    ) + ("u8,SE,listen,genre:pop,2026-10-02,lots\nu9,SE,listen,genre:pop,2026-10-03,1;5\n")
    message = _error(spark, config, tmp_path, events=events)
    assert f"events file {tmp_path / 'events.csv'} breaks its contract" in message
    assert "column 'value' does not parse as a double (2 rows); accepted: a number" in message
    assert (
        f"e.g. in file:{tmp_path / 'events.csv'}: user_id=u8, market=SE, event_type=listen, "
        "item_id=genre:pop, event_ts=2026-10-02, value=lots"
    ) in message


def test_a_parquet_column_of_the_wrong_type(spark, ingest_conf, tmp_path):
    _, config = ingest_conf
    spark.createDataFrame(
        [("u1", "SE", "listen", "genre:pop", dt.datetime(2026, 10, 1), True)],
        "user_id string, market string, event_type string, item_id string, "
        "event_ts timestamp, value boolean",
    ).write.parquet(str(tmp_path / "events.parquet"))
    (tmp_path / "users.csv").write_text(GOOD_USERS)
    with pytest.raises(IngestError) as err:
        _ingest(spark, config, tmp_path / "users.csv", tmp_path / "events.parquet")
    message = str(err.value)
    assert f"events file {tmp_path / 'events.parquet'} breaks its contract" in message
    assert (
        "column 'value' has type boolean in the file, not double (1 row); accepted: any number "
        "type, or a string of a number"
    ) in message
    assert "e.g. in file:" in message and "/events.parquet/part-" in message
    assert "user_id=u1, market=SE, event_type=listen, item_id=genre:pop" in message
    assert "value=true" in message


def test_an_unparseable_date_gives_the_formats(spark, ingest_conf, tmp_path):
    _, config = ingest_conf
    users = GOOD_USERS + "u2,SE,free,01/02/2026\n"
    message = _error(spark, config, tmp_path, users=users)
    assert (
        "column 'signup_date' does not parse as a date (1 row); accepted: yyyy-MM-dd"
    ) in message
    assert (
        f"e.g. in file:{tmp_path / 'users.csv'}: user_id=u2, market=SE, current_plan=free, "
        "signup_date=01/02/2026"
    ) in message


def test_an_unparseable_timestamp_names_the_file_of_the_row_in_a_folder(
    spark, ingest_conf, tmp_path
):
    _, config = ingest_conf
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "1.csv").write_text(GOOD_EVENTS)
    (tmp_path / "events" / "2.csv").write_text(GOOD_EVENTS + "u5,SE,listen,genre:pop,yesterday\n")
    (tmp_path / "users.csv").write_text(GOOD_USERS)
    with pytest.raises(IngestError) as err:
        _ingest(spark, config, tmp_path / "users.csv", tmp_path / "events")
    message = str(err.value)
    assert f"events file {tmp_path / 'events'} breaks its contract" in message
    assert "column 'event_ts' does not parse as a timestamp (1 row); accepted: " in message
    assert "yyyy-MM-dd HH:mm:ss[.SSS]" in message
    assert (
        f"e.g. in file:{tmp_path / 'events' / '2.csv'}: user_id=u5, market=SE, "
        "event_type=listen, item_id=genre:pop, event_ts=yesterday"
    ) in message


def test_users_of_unknown_markets_and_plans(spark, ingest_conf, tmp_path):
    _, config = ingest_conf
    users = GOOD_USERS + "u2,XX,free,2025-01-01\nu3,XX,free,2025-01-01\nu4,ZZ,gold,2025-01-01\n"
    message = _error(spark, config, tmp_path, users=users)
    assert (
        "column 'market' is not a market of the markets file (3 rows; values: ['XX', 'ZZ']); "
        "known: ['AU', 'BR'"
    ) in message
    assert "column 'current_plan' is not a plan of the markets file (1 row; values: ['gold'])" in (
        message
    )
    assert "user_id=u2, market=XX, current_plan=free, signup_date=2025-01-01" in message
    assert "user_id=u4, market=ZZ, current_plan=gold, signup_date=2025-01-01" in message


def test_duplicate_users(spark, ingest_conf, tmp_path):
    _, config = ingest_conf
    users = GOOD_USERS + "u2,SE,free,2025-01-01\nu2,DE,free,2025-02-01\nu1 ,SE,free,2025-03-01\n"
    message = _error(spark, config, tmp_path, users=users)
    assert (
        "column 'user_id' has 2 values on more than one row (4 rows); each must be on one row"
    ) in message
    assert (
        f"e.g. 'u1' is on 2 rows, one in file:{tmp_path / 'users.csv'}: user_id=u1, market=SE"
    ) in message


def test_empty_required_users_columns_and_malformed_lines(spark, ingest_conf, tmp_path):
    _, config = ingest_conf
    users = GOOD_USERS + "u2,SE,,2025-01-01\nu3,SE,free,2025-01-01,surplus\n"
    message = _error(spark, config, tmp_path, users=users)
    assert "column 'current_plan' is empty (1 row); the column is required" in message
    assert "user_id=u2, market=SE, current_plan=<empty>, signup_date=2025-01-01" in message
    assert "a line has more or fewer fields than the header's 4 (1 row)" in message
    assert "line 'u3,SE,free,2025-01-01,surplus'" in message


def test_nothing_is_written_when_a_file_breaks_its_contract(spark, ingest_conf, tmp_path):
    _, config = ingest_conf
    users, events = _write(tmp_path)
    _ingest(spark, config, users, events)
    before = read_table(spark, config, S.USERS).collect()
    (tmp_path / "events.csv").write_text(GOOD_EVENTS + "u1,SE,listen,genre:pop,soon\n")
    (tmp_path / "users.csv").write_text(GOOD_USERS + "u2,SE,free,2025-01-01\n")
    with pytest.raises(IngestError):
        _ingest(spark, config, users, events)
    assert read_table(spark, config, S.USERS).collect() == before


def test_format_comes_from_the_extension_or_the_flag(spark, ingest_conf, tmp_path):
    _, config = ingest_conf
    assert ingest_job.format_of("data/events/*.csv") == "csv"
    assert ingest_job.format_of("data/users.CSV.gz") == "csv"
    assert ingest_job.format_of("part-0.snappy.parquet") == "parquet"
    assert ingest_job.format_of("data/events/") is None
    # A file without an extension: --format decides.
    (tmp_path / "users").write_text(GOOD_USERS)
    (tmp_path / "events").write_text(GOOD_EVENTS)
    with pytest.raises(IngestError, match="cannot tell its format from the file names"):
        _ingest(spark, config, tmp_path / "users", tmp_path / "events")
    _ingest(spark, config, tmp_path / "users", tmp_path / "events", fmt="csv")
    assert read_table(spark, config, S.USERS).count() == 1


def test_a_missing_file_is_one_line(spark, ingest_conf, tmp_path):
    _, config = ingest_conf
    (tmp_path / "users.csv").write_text(GOOD_USERS)
    with pytest.raises(IngestError, match=r"events file .*nope\.csv: \[PATH_NOT_FOUND\]"):
        _ingest(spark, config, tmp_path / "users.csv", tmp_path / "nope.csv")


def test_files_of_a_glob_with_different_headers(spark, ingest_conf, tmp_path):
    _, config = ingest_conf
    (tmp_path / "users.csv").write_text(GOOD_USERS)
    (tmp_path / "e1.csv").write_text(GOOD_EVENTS)
    (tmp_path / "e2.csv").write_text(
        "market,user_id,event_type,item_id,event_ts\nSE,u1,listen,genre:pop,2026-10-01\n"
    )
    with pytest.raises(IngestError) as err:
        _ingest(spark, config, tmp_path / "users.csv", tmp_path / "e*.csv")
    message = str(err.value)
    assert "CSV header does not conform to the schema" in message
    assert "e2.csv" in message or "e1.csv" in message
    assert "every file of a folder or glob needs the same columns in the same order" in message


def test_csv_and_parquet_types_round_trip_the_same(spark, ingest_conf, tmp_path):
    """The tables' own types written to Parquet come back unchanged."""
    _, config = ingest_conf
    users_df = spark.createDataFrame(EXPECTED_USERS, S.USERS_SCHEMA)
    events_df = spark.createDataFrame(EXPECTED_EVENTS, S.EVENTS_SCHEMA)
    users_df.write.parquet(str(tmp_path / "u.parquet"))
    events_df.write.parquet(str(tmp_path / "e.parquet"))
    _ingest(spark, config, tmp_path / "u.parquet", tmp_path / "e.parquet")
    _assert_tables(spark, config, EXPECTED_USERS, EXPECTED_EVENTS)
    assert isinstance(read_table(spark, config, S.USERS).schema["signup_date"].dataType, T.DateType)


def test_a_header_alone_is_refused_and_the_tables_stay(spark, ingest_conf, tmp_path):
    _, config = ingest_conf
    users, events = _write(tmp_path)
    _ingest(spark, config, users, events)
    before = read_table(spark, config, S.EVENTS).collect()
    (tmp_path / "events.csv").write_text(GOOD_EVENTS.splitlines()[0] + "\n")
    with pytest.raises(IngestError) as err:
        _ingest(spark, config, users, events)
    assert str(err.value) == (
        f"events file {events} has 0 rows (a header alone); nothing was written and events "
        "keeps its previous version"
    )
    assert read_table(spark, config, S.EVENTS).collect() == before


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_file_of_0_bytes_is_one_line(spark, ingest_conf, tmp_path, fmt):
    _, config = ingest_conf
    (tmp_path / "users.csv").write_text(GOOD_USERS)
    (tmp_path / f"events.{fmt}").write_bytes(b"")
    with pytest.raises(IngestError) as err:
        _ingest(spark, config, tmp_path / "users.csv", tmp_path / f"events.{fmt}")
    assert str(err.value) == (
        f"events file {tmp_path / f'events.{fmt}'}: the file is empty (0 bytes); nothing was "
        "written"
    )


def test_a_much_smaller_file_is_refused_unless_allowed(spark, config, tmp_path):
    path = database_conf(tmp_path, config, "ingest_shrink_tests")
    own = load_config(path)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {own.catalog.database}")
    (tmp_path / "users.csv").write_text(USERS_CSV)
    (tmp_path / "events.csv").write_text(EVENTS_CSV)
    _ingest(spark, own, tmp_path / "users.csv", tmp_path / "events.csv")
    (tmp_path / "small").mkdir()
    users, events = _write(tmp_path / "small")

    with pytest.raises(IngestError) as err:
        _ingest(spark, own, users, events)
    assert str(err.value) == (
        f"users file {users} has 1 row, 66.7% fewer than the 3 of the "
        f"{own.table(S.USERS)} table it would replace; more than ingest.max_drop_share=50%, "
        "so nothing was written. If the smaller file is right, rerun with --set "
        "ingest.max_drop_share=1"
    )
    _assert_tables(spark, own, EXPECTED_USERS, EXPECTED_EVENTS)

    allowed = own.model_copy(
        update={"ingest": own.ingest.model_copy(update={"max_drop_share": 1.0})}
    )
    _ingest(spark, allowed, users, events)
    assert read_table(spark, own, S.USERS).count() == 1


def test_a_quoted_line_break_is_read(spark, ingest_conf, tmp_path):
    """RFC 4180: a field in quotes may hold a line break (here an extra column's and an
    item id's); the record is one row."""
    _, config = ingest_conf
    users = USERS_CSV.replace('"red, mostly"', '"red,\nmostly"')
    events = EVENTS_CSV.replace(",app\n2026-10-21", ',"app,\nweb"\n2026-10-21')
    assert events.count("\n") == EVENTS_CSV.count("\n") + 1
    (tmp_path / "users.csv").write_text(users)
    (tmp_path / "events.csv").write_text(events)
    _ingest(spark, config, tmp_path / "users.csv", tmp_path / "events.csv")
    _assert_tables(spark, config, EXPECTED_USERS, EXPECTED_EVENTS)


def test_a_line_of_extra_fields_beside_a_quoted_line_break(spark, ingest_conf, tmp_path):
    _, config = ingest_conf
    users = (
        "user_id,market,current_plan,signup_date,note\n"
        'u1,SE,free,2025-01-01,"two\nlines"\n'
        "u3,SE,free,2025-01-01,one,surplus\n"
    )
    message = _error(spark, config, tmp_path, users=users)
    assert "a line has more or fewer fields than the header's 5 (1 row)" in message
    assert "line breaks inside quotes are read" in message
    assert "line 'u3,SE,free,2025-01-01,one,surplus'" in message
