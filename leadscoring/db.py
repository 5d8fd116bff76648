"""The one PostgreSQL/SQLite layer.

PostgreSQL is the production database; SQLite is the embedded default that `make run` users
get. Code that needs a different statement per database asks :func:`is_postgres` (no other
module reads ``connection.vendor``) and takes the shared pieces from here:

- SQL fragments that differ only in spelling: :func:`epoch_seconds_sql`,
  :func:`days_between_sql`, :func:`json_scalar_sql`, :func:`in_list_sql`;
- :func:`update_rows`: a set-based UPDATE of many rows from columns of values;
- raw-SQL parameters: :func:`db_datetime` (SQLite compares datetimes as naive UTC text);
- PostgreSQL session knobs that are no-ops elsewhere: :func:`set_local`,
  :func:`advisory_xact_lock`;
- PostgreSQL-only bulk tools (callers check :func:`is_postgres` first): :func:`copy_in`
  (COPY ... FROM STDIN), :func:`temp_table`, :func:`fetch_binary` (packed reads: rows of
  ``bytea`` built with ``int8send``/``float8send``/``string_agg``, read raw for NumPy) and
  :data:`PG_EPOCH`;
- :func:`parallel_connections_allowed`: whether helper threads may read or write through
  their own connections.

Everything acts on the default connection, the only one the project configures.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from django import db as django_db
from django.db import connection

#: Where PostgreSQL's binary formats (binary COPY, ``timestamptz_send``) count microseconds from.
PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def is_postgres() -> bool:
    """True on PostgreSQL; False on SQLite (the embedded default)."""
    return connection.vendor == "postgresql"


def parallel_connections_allowed() -> bool:
    """Whether work may be spread over threads with connections of their own: on PostgreSQL
    outside a transaction. Inside one (tests, callers that need all-or-nothing) the other
    connections would not see its uncommitted rows; SQLite has one writer and would lock."""
    return is_postgres() and not connection.in_atomic_block


# --- Errors worth retrying -------------------------------------------------------------------

#: What a task retries with backoff: a lost or refused connection, an administrator's shutdown
#: or termination of the session, a serialization failure, a deadlock. Django's wrappers cover
#: its own cursors; psycopg's own classes cover the raw connections of the bulk paths (COPY,
#: packed reads), whose AdminShutdown used to fail a chunk for good.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    django_db.OperationalError,
    django_db.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


# --- SQL fragments ---------------------------------------------------------------------------


def epoch_seconds_sql(column: str) -> str:
    """SQL for the Unix time, in (fractional) seconds, of the datetime expression ``column``;
    NULL stays NULL. ``column`` is SQL, never user input."""
    if is_postgres():
        return f"date_part('epoch', {column})"
    # SQLite stores UTC text; julianday() counts days from noon, 24 November 4714 BC.
    return f"(julianday({column}) - 2440587.5) * 86400.0"


def days_between_sql(start: str, end: str) -> str:
    """SQL for the (fractional) days from the datetime expression ``start`` to ``end``."""
    if is_postgres():
        return f"date_part('epoch', {end} - {start}) / 86400.0"
    return f"julianday({end}) - julianday({start})"


def db_datetime(moment: dt.datetime) -> Any:
    """``moment`` as a raw-SQL parameter the database compares correctly with a stored
    datetime: unchanged on PostgreSQL, naive UTC text on SQLite (how Django stores it there,
    so the comparison is a text comparison that orders like time)."""
    return connection.ops.adapt_datetimefield_value(moment)


def in_list_sql(column: str, values: Sequence[Any], sql_type: str) -> tuple[str, list[Any]]:
    """(SQL, params) for ``column`` being one of ``values`` (of the SQL type ``sql_type``,
    e.g. ``bigint`` or ``text``). PostgreSQL: one array parameter (a list of thousands of
    placeholders costs more to convert, in psycopg's query parsing, than the query takes to
    run); SQLite: ``IN`` with a placeholder per value. No values matches nothing."""
    if not values:
        return "1 = 0", []
    if is_postgres():
        return f"{column} = ANY(%s::{sql_type}[])", [list(values)]
    return f"{column} IN ({', '.join(['%s'] * len(values))})", list(values)


def json_scalar_sql(column: str, key: str) -> str:
    """SQL for the value at ``key`` of the JSON document ``column`` as text when it is a
    string or a number, else NULL (missing, null, a boolean, an object or an array).
    ``column`` and ``key`` are SQL and names from the code, never user input."""
    quoted = "'" + key.replace("'", "''") + "'"
    if is_postgres():
        return (
            f"CASE WHEN jsonb_typeof({column} -> {quoted}) IN ('string', 'number')"
            f" THEN {column} ->> {quoted} END"
        )
    path = "'$.\"" + key.replace("'", "''").replace('"', '""') + "\"'"
    return (
        f"CASE WHEN json_type({column}, {path}) IN ('text', 'integer', 'real')"
        f" THEN CAST(json_extract({column}, {path}) AS TEXT) END"
    )


# --- Set-based writes --------------------------------------------------------------------------


def update_rows(
    table: str,
    key: str,
    columns: dict[str, Sequence[Any]],
    *,
    types: dict[str, str],
    also: dict[str, Any] | None = None,
    only_changed: bool = False,
) -> None:
    """``UPDATE table`` of the rows whose ``key`` is in ``columns[key]``, setting every other
    column of ``columns`` to the row's value (and each of ``also`` to one value for all rows).
    With ``only_changed``, rows whose values are already those are left alone (no new row
    version, no index writes). ``types`` gives each column's SQL type (for PostgreSQL's
    arrays). PostgreSQL: one statement over ``unnest`` of one array per column; SQLite: one
    executemany. Names are from the code, never user input."""
    names = list(columns)
    values = [c for c in names if c != key]
    also = also or {}
    distinct = "IS DISTINCT FROM" if is_postgres() else "IS NOT"
    changed = (
        " AND (" + " OR ".join(f"{table}.{c} {distinct} v.{c}" for c in values) + ")"
        if only_changed
        else ""
    )
    assignments = [f"{c} = v.{c}" for c in values] + [f"{c} = %s" for c in also]
    if is_postgres():
        arrays = ", ".join(f"%s::{types[c]}[]" for c in names)
        sql = (
            f"UPDATE {table} SET {', '.join(assignments)} FROM unnest({arrays})"
            f" AS v({', '.join(names)}) WHERE {table}.{key} = v.{key}{changed}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [*also.values(), *(list(columns[c]) for c in names)])
        return
    row = ", ".join(f"%s AS {c}" for c in names)
    sql = (
        f"UPDATE {table} SET {', '.join(assignments)} FROM (SELECT {row}) AS v"
        f" WHERE {table}.{key} = v.{key}{changed}"
    )
    with connection.cursor() as cursor:
        cursor.executemany(
            sql,
            [(*also.values(), *row_values) for row_values in zip(*columns.values(), strict=True)],
        )


# --- PostgreSQL session settings --------------------------------------------------------------


def set_local(cursor: Any, setting: str, value: str) -> None:
    """``SET LOCAL setting = value`` on PostgreSQL (until the end of the current transaction);
    nothing elsewhere, where these planner and commit knobs do not exist. ``setting`` and
    ``value`` are SQL from the code, never user input."""
    if is_postgres():
        cursor.execute(f"SET LOCAL {setting} = {value}")


def advisory_xact_lock(key: int) -> None:
    """Take PostgreSQL's transaction-level advisory lock ``key`` (released at commit or
    rollback), waiting for its holder. Nothing on SQLite, which serialises writers itself."""
    if is_postgres():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


# --- PostgreSQL bulk tools ---------------------------------------------------------------------


@contextmanager
def copy_in(
    cursor: Any, table: str, columns: Sequence[str], *, binary: bool = False
) -> Iterator[Any]:
    """PostgreSQL: ``COPY table (columns) FROM STDIN`` on ``cursor`` (Django's cursor or
    psycopg's); yields psycopg's ``Copy``: ``write_row(values)`` for rows psycopg adapts,
    ``write(data)`` for text (or, with ``binary``, binary-format) data the caller built.
    ``columns`` are quoted here; ``table`` is used as given (a temp table may be unquoted)."""
    names = ", ".join(connection.ops.quote_name(c) for c in columns)
    options = " (FORMAT BINARY)" if binary else ""
    raw = getattr(cursor, "cursor", cursor)  # psycopg's cursor under Django's wrapper
    with raw.copy(f"COPY {table} ({names}) FROM STDIN{options}") as copy:
        yield copy


def fetch_binary(sql: str, params: Sequence[Any]) -> list[tuple]:
    """PostgreSQL: the rows of ``sql`` with results in binary, so ``bytea`` values arrive as
    the bytes they are (for ``np.frombuffer``), not hex-encoded text: Django's cursors cannot
    ask for binary results, so this runs on a psycopg cursor of Django's connection (in its
    transaction, if any)."""
    import psycopg  # only on PostgreSQL: the SQLite install need not import it

    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, list(params), binary=True)
        return cursor.fetchall()


@contextmanager
def temp_table(name: str, definition: str) -> Iterator[str]:
    """PostgreSQL: a session-private table ``name`` for the block, created by
    ``CREATE TEMP TABLE name <definition>`` where ``definition`` is either ``(columns)`` or
    ``AS SELECT ...`` ; yields ``name``.

    A table left by an interrupted earlier use is dropped first. Inside a transaction the
    table also goes with it (ON COMMIT DROP, so a rollback cannot leave it behind); it is
    dropped when the block ends unless the transaction is already broken (the rollback takes
    it then)."""
    on_commit = " ON COMMIT DROP" if connection.in_atomic_block else ""
    if definition.lstrip().upper().startswith("AS "):
        create = f"CREATE TEMP TABLE {name}{on_commit} {definition}"
    else:
        create = f"CREATE TEMP TABLE {name} {definition}{on_commit}"
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{name}")
        cursor.execute(create)
    failed = False
    try:
        yield name
    except BaseException:
        failed = True
        raise
    finally:
        if (not failed or not connection.in_atomic_block) and not connection.needs_rollback:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{name}")
