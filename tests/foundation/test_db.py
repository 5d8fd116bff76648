"""The one PostgreSQL/SQLite layer (leadscoring/db.py): its helpers give the same answers on
both databases, and no other module asks which database it is on."""

from __future__ import annotations

import ast
import datetime as dt
import zoneinfo
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.db import connection, transaction

from leadscoring import db
from scoring.models import Lead

ROOT = Path(__file__).resolve().parents[2]
PARIS = zoneinfo.ZoneInfo("Europe/Paris")

# --- the helpers --------------------------------------------------------------------------------


def test_is_postgres_follows_the_configured_engine():
    engine = settings.DATABASES["default"]["ENGINE"]
    assert db.is_postgres() is engine.endswith("postgresql")
    assert db.is_postgres() is (not engine.endswith("sqlite3"))


def _select(sql: str, params: list | None = None) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchone()


@pytest.mark.django_db
def test_epoch_seconds_reads_a_stored_datetime_as_unix_seconds_and_keeps_null():
    # A non-UTC wall time with microseconds: SQLite stores UTC text, PostgreSQL an instant.
    moment = dt.datetime(2024, 3, 31, 3, 30, 15, 250000, tzinfo=PARIS)
    lead = Lead.objects.create(email="epoch@example.com", created_at=moment)
    created, converted = _select(
        f"SELECT {db.epoch_seconds_sql('created_at')}, {db.epoch_seconds_sql('converted_at')}"
        " FROM scoring_lead WHERE id = %s",
        [lead.id],
    )
    # julianday() keeps about a millisecond of precision.
    assert created == pytest.approx(moment.timestamp(), abs=1e-3)
    assert converted is None


@pytest.mark.django_db
def test_days_between_counts_fractional_days_from_start_to_end():
    start = dt.datetime(2024, 3, 30, 12, 0, tzinfo=PARIS)  # across the switch to summer time
    end = start.astimezone(dt.UTC) + dt.timedelta(days=2, hours=6)  # elapsed, not wall time
    lead = Lead.objects.create(email="days@example.com", created_at=start, converted_at=end)
    (days,) = _select(
        f"SELECT {db.days_between_sql('created_at', 'converted_at')} FROM scoring_lead"
        " WHERE id = %s",
        [lead.id],
    )
    assert days == pytest.approx(2.25, abs=1e-6)


@pytest.mark.django_db
def test_a_datetime_parameter_compares_with_stored_datetimes_as_time():
    stored = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)
    lead = Lead.objects.create(email="cmp@example.com", created_at=stored)
    # The same instants written in another zone: a text comparison of the raw value would
    # get both wrong on SQLite.
    just_after = (stored + dt.timedelta(seconds=1)).astimezone(PARIS)
    just_before = (stored - dt.timedelta(seconds=1)).astimezone(PARIS)
    sql = "SELECT COUNT(*) FROM scoring_lead WHERE id = %s AND created_at <= %s"
    assert _select(sql, [lead.id, db.db_datetime(just_after)]) == (1,)
    assert _select(sql, [lead.id, db.db_datetime(just_before)]) == (0,)


@pytest.mark.django_db(transaction=True)  # the test's own transaction would keep the setting
def test_set_local_changes_a_postgres_setting_for_the_transaction_only():
    show = "SELECT current_setting('work_mem')"
    before = _select(show) if db.is_postgres() else None
    with transaction.atomic(), connection.cursor() as cursor:
        db.set_local(cursor, "work_mem", "'3MB'")  # on SQLite: nothing, and no error
        if db.is_postgres():
            assert _select(show) == ("3MB",)
    if db.is_postgres():
        assert before != ("3MB",)
        assert _select(show) == before


@pytest.mark.django_db(transaction=True)  # the test's own transaction would keep the lock
def test_an_advisory_lock_is_held_until_the_end_of_the_transaction():
    key = 424242
    held = (
        "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s"
        " AND pid = pg_backend_pid()"
    )
    with transaction.atomic():
        db.advisory_xact_lock(key)
        if db.is_postgres():
            assert _select(held, [key]) == (1,)
    if db.is_postgres():
        with transaction.atomic():
            assert _select(held, [key]) == (0,)


@pytest.mark.django_db
def test_no_parallel_connections_inside_a_transaction():
    with transaction.atomic():
        assert db.parallel_connections_allowed() is False


@pytest.mark.django_db(transaction=True)
def test_parallel_connections_outside_a_transaction_only_on_postgres():
    assert db.parallel_connections_allowed() is db.is_postgres()


@pytest.mark.postgres
@pytest.mark.django_db
def test_copy_in_writes_rows_into_a_temp_table_that_is_gone_after_the_block():
    rows = [(1, "plain"), (2, "tab\there, new\nline and back\\slash"), (3, None)]
    with (
        db.temp_table("copy_probe", "(id bigint, label text)") as table,
        connection.cursor() as cursor,
    ):
        with db.copy_in(cursor, table, ["id", "label"]) as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(f"SELECT id, label FROM {table} ORDER BY id")
        assert cursor.fetchall() == rows
    assert _select("SELECT to_regclass('pg_temp.copy_probe')") == (None,)


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_packed_read_arrives_as_raw_bytes_numpy_can_read():
    moment = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
    Lead.objects.create(email="packed1@example.com", created_at=moment)
    Lead.objects.create(email="packed2@example.com", created_at=moment + dt.timedelta(days=1))
    ((data,),) = db.fetch_binary(
        "SELECT string_agg(int8send(id) || timestamptz_send(created_at), ''::bytea ORDER BY id)"
        " FROM scoring_lead WHERE email LIKE %s",
        ["packed%"],
    )
    assert isinstance(data, bytes)
    records = np.frombuffer(data, dtype=np.dtype([("id", ">i8"), ("t", ">i8")]))
    assert records["id"].tolist() == sorted(
        Lead.objects.filter(email__startswith="packed").values_list("id", flat=True)
    )
    # timestamptz_send counts microseconds from PG_EPOCH.
    expected = [moment, moment + dt.timedelta(days=1)]
    got = [db.PG_EPOCH + dt.timedelta(microseconds=int(t)) for t in records["t"]]
    assert got == expected


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_temp_table_made_from_a_query_takes_its_column_types():
    with db.temp_table("lead_probe", 'AS SELECT "id", "email" FROM scoring_lead WITH NO DATA'):
        types = _select(
            "SELECT array_agg(format_type(atttypid, atttypmod) ORDER BY attnum)"
            " FROM pg_attribute WHERE attrelid = 'pg_temp.lead_probe'::regclass AND attnum > 0"
        )
    assert types[0][0] == "bigint"
    assert types[0][1].startswith("character varying")


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_temp_table_survives_nothing_of_a_failed_block():
    with (
        pytest.raises(RuntimeError),
        transaction.atomic(),
        db.temp_table("failed_probe", "(id bigint)"),
    ):
        raise RuntimeError("the block failed")
    assert _select("SELECT to_regclass('pg_temp.failed_probe')") == (None,)


# --- no other module forks on the database --------------------------------------------------

SOURCE_DIRS = ("leadscoring", "scoring", "integrations", "bench", "scripts", "tests")
DB_VENDORS = {"postgresql", "sqlite", "mysql", "oracle"}


def _django_connection_names(tree: ast.Module) -> set[str]:
    """The names this module binds to django.db's ``connection`` / ``connections``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "django.db":
            for alias in node.names:
                if alias.name in ("connection", "connections"):
                    names.add(alias.asname or alias.name)
    return names


def _forks(path: Path) -> list[int]:
    """Lines asking which database this is: a vendor compared with a database name, or the
    vendor of django.db's connection read at all."""
    tree = ast.parse(path.read_text(), filename=str(path))
    connection_names = _django_connection_names(tree)
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            names = {
                c.value
                for o in operands
                for c in (o.elts if isinstance(o, ast.Tuple | ast.List | ast.Set) else [o])
                if isinstance(c, ast.Constant)
            }
            vendor = any(isinstance(o, ast.Attribute) and o.attr == "vendor" for o in operands)
            if vendor and names & DB_VENDORS:
                lines.append(node.lineno)
        elif isinstance(node, ast.Attribute) and node.attr == "vendor":
            base = node.value.value if isinstance(node.value, ast.Subscript) else node.value
            if isinstance(base, ast.Name) and base.id in connection_names:
                lines.append(node.lineno)
    return sorted(set(lines))


def _sources() -> list[Path]:
    files = [ROOT / "manage.py"]
    for folder in SOURCE_DIRS:
        files += sorted((ROOT / folder).rglob("*.py"))
    return [
        f
        for f in files
        if "migrations" not in f.relative_to(ROOT).parts
        and f.relative_to(ROOT).as_posix() != "leadscoring/db.py"
    ]


def test_the_fork_finder_sees_the_usual_spellings(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from django.db import connection, connections as conns\n"
        "a = connection.vendor == 'postgresql'\n"
        "b = conns['default'].vendor\n"
        'c = editor.connection.vendor != "sqlite"\n'
        "d = run.connection.vendor == 'salesforce'\n"  # an integration's vendor: not a fork
        "e = other.vendor in ('postgresql', 'sqlite')\n"
    )
    assert _forks(sample) == [2, 3, 4, 6]


def test_only_the_database_layer_asks_which_database_it_is_on():
    found = {}
    for path in _sources():
        relative = path.relative_to(ROOT).as_posix()
        lines = _forks(path)
        if lines:
            found[relative] = lines
    assert not found, (
        f"ask leadscoring.db (is_postgres() and its helpers) instead of the vendor: {found}"
    )
