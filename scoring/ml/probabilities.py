"""Writing the active model's probabilities into `LeadProbability` (table
`scoring_leadprobability`: lead id, probability, when it was computed; a lead without a row
has none).

Three paths:
- a full run on PostgreSQL (`Replacement`): the chunks are COPY'd into a new table with no
  index; at the end it gets its primary key and is swapped in for the live table in one short
  transaction, keeping the live rows the real-time path wrote after the run started. No row
  of the live table is deleted or updated, so a run leaves no dead rows behind, readers see
  the old probabilities or the new ones, never a mix, and a failed run leaves them untouched.
- an id range (`covering=(first_id, last_id)`: the rule rescore's chunk, and a full run on
  SQLite or inside a transaction): the range is replaced, on PostgreSQL by one DELETE and one
  binary COPY built by NumPy (fixed-width records, no Python per row).
- real time (no `covering`): only the given leads' rows are upserted (one statement from
  arrays on PostgreSQL) and those without a probability removed.

Readers join this table from the lead side, so a row left behind by a lead deleted with raw
SQL (there is no foreign-key constraint, see the model) is never seen; the next full run or
range write drops it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from leadscoring.db import PG_EPOCH, copy_in, is_postgres, set_local
from scoring.models import LeadProbability

TABLE = LeadProbability._meta.db_table
STAGING = f"{TABLE}_next"
# Session-level advisory lock held by a full run: a second run waits for the first instead of
# rebuilding the same staging table under it.
RUN_LOCK = 0x6D6C5F73636F7265  # "ml_score"

# PostgreSQL's binary COPY: the signature, then int32 flags and int32 header-extension length
# (both 0); one record per row; the int16 trailer -1.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + np.array([0, 0], dtype=">i4").tobytes()
_COPY_TRAILER = np.array([-1], dtype=">i2").tobytes()
# One row: the field count, then each field's byte length and value, big-endian. Fixed width
# because no field is ever NULL (a lead without a probability has no row). A timestamptz is
# int8 microseconds since 2000-01-01 UTC.
_COPY_ROW = np.dtype(
    [
        ("fields", ">i2"),
        ("id_size", ">i4"),
        ("id", ">i8"),
        ("p_size", ">i4"),
        ("p", ">f8"),
        ("t_size", ">i4"),
        ("t", ">i8"),
    ]
)


def write_probabilities(
    ids: np.ndarray, probabilities: np.ndarray, *, covering: tuple[int, int] | None = None
) -> None:
    """Store these leads' probabilities (clipped into [0, 1]; NaN means none: no row). With
    covering=(first_id, last_id) the whole id range is replaced: rows of leads in the range not
    in `ids` are removed (the bulk path). Without it, only these leads' rows are
    upserted/removed (the real-time path).

    `ids` must be distinct and, with `covering`, inside the range; ValueError otherwise (and
    when the two arrays differ in shape)."""
    ids, probabilities = _checked(ids, probabilities)
    if covering is not None:
        first_id, last_id = int(covering[0]), int(covering[1])
        if ids.size and (int(ids.min()) < first_id or int(ids.max()) > last_id):
            raise ValueError(f"ids must lie in the covered range [{first_id}, {last_id}]")
        _replace_range(first_id, last_id, ids, probabilities)
    else:
        _upsert(ids, probabilities)


def clear_probabilities() -> int:
    """Remove every stored probability (no active model); returns how many were removed."""
    # DELETE, not TRUNCATE: TRUNCATE's exclusive lock would block every reader of the table
    # until the caller's transaction ends. The KPI cube's change-log trigger fires on both.
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE}")
        return cursor.rowcount


class Replacement:
    """A full run's new table (PostgreSQL, outside a transaction). `begin` on the run's own
    connection; `write` from any thread (each on its own connection, one transaction per
    chunk); then `finish` (swap it in) or `abandon` (drop it), on the connection that began."""

    def __init__(self, started_at: dt.datetime) -> None:
        self.started_at = started_at

    @classmethod
    def begin(cls) -> Replacement:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [RUN_LOCK])
            try:
                # A leftover of a run that died before it finished or abandoned it.
                cursor.execute(f"DROP TABLE IF EXISTS {STAGING}")
                cursor.execute(
                    f"CREATE TABLE {STAGING} (lead_id bigint NOT NULL, probability double"
                    " precision NOT NULL, computed_at timestamptz NOT NULL)"
                )
                cursor.execute("SELECT clock_timestamp()")
                (started_at,) = cursor.fetchone()
            except BaseException:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [RUN_LOCK])
                raise
        return cls(started_at)

    def write(self, ids: np.ndarray, probabilities: np.ndarray) -> None:
        """Add these leads' probabilities (NaN: none) to the new table."""
        ids, probabilities = _checked(ids, probabilities)
        with _bulk_transaction() as cursor:
            _copy_rows(cursor, STAGING, ids, probabilities, self.started_at)

    def finish(self) -> None:
        """Index the new table, then swap it in: one short transaction that keeps the live
        rows written after the run started, drops the live table, renames the new one into
        its place with the KPI cube's trigger, and marks the cube stale."""
        with connection.cursor() as cursor:
            try:
                cursor.execute(f"ALTER TABLE {STAGING} ADD PRIMARY KEY (lead_id)")
                cursor.execute(f"ANALYZE {STAGING}")
                with transaction.atomic():
                    cursor.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
                    cursor.execute(
                        f"INSERT INTO {STAGING} (lead_id, probability, computed_at)"
                        f" SELECT lead_id, probability, computed_at FROM {TABLE}"
                        " WHERE computed_at > %s ON CONFLICT (lead_id) DO UPDATE SET"
                        " probability = EXCLUDED.probability, computed_at = EXCLUDED.computed_at",
                        [self.started_at],
                    )
                    cursor.execute(f"DROP TABLE {TABLE}")
                    cursor.execute(f"ALTER TABLE {STAGING} RENAME TO {TABLE}")
                    cursor.execute(f"ALTER INDEX {STAGING}_pkey RENAME TO {TABLE}_pkey")
                    # What migration 0010 creates on the table: the KPI cube counts leads with
                    # a probability, so it must hear of changes to the new table too.
                    cursor.execute(
                        f"CREATE TRIGGER {TABLE}_kpi_cube AFTER INSERT OR UPDATE OR DELETE OR"
                        f" TRUNCATE ON {TABLE} FOR EACH STATEMENT EXECUTE FUNCTION"
                        " kpi_cube_changed()"
                    )
                    cursor.execute("INSERT INTO kpi_cube_change DEFAULT VALUES")
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [RUN_LOCK])

    def abandon(self) -> None:
        """Drop the new table; the live probabilities stay as they were."""
        with connection.cursor() as cursor:
            try:
                cursor.execute(f"DROP TABLE IF EXISTS {STAGING}")
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [RUN_LOCK])


@contextmanager
def _bulk_transaction() -> Iterator[Any]:
    """A transaction (a savepoint inside the caller's) and a cursor for a bulk write. When it
    is its own transaction on PostgreSQL, its commit does not wait for the WAL flush: the
    values are derived and a later run recomputes them, so a crash may lose the last chunks'
    commits, never corrupt them."""
    owns = not connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        if owns:
            set_local(cursor, "synchronous_commit", "off")
        yield cursor


def _checked(ids: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(ids, dtype=np.int64)
    probabilities = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0)
    if ids.ndim != 1 or ids.shape != probabilities.shape:
        raise ValueError(
            f"ids and probabilities must be 1-d and of the same shape, not {ids.shape} and"
            f" {probabilities.shape}"
        )
    if np.unique(ids).size != ids.size:
        raise ValueError("ids must be distinct")
    return ids, probabilities


def _copy_rows(
    cursor, table: str, ids: np.ndarray, probabilities: np.ndarray, computed_at: dt.datetime
) -> None:
    """One binary COPY of the rows with a probability (NaN: no row)."""
    known = ~np.isnan(probabilities)
    if not known.any():
        return
    rows = np.empty(int(known.sum()), dtype=_COPY_ROW)
    rows["fields"] = 3
    rows["id_size"] = 8
    rows["id"] = ids[known]
    rows["p_size"] = 8
    rows["p"] = probabilities[known]
    rows["t_size"] = 8
    rows["t"] = (computed_at - PG_EPOCH) // dt.timedelta(microseconds=1)
    columns = ("lead_id", "probability", "computed_at")
    with copy_in(cursor, table, columns, binary=True) as copy:
        copy.write(_COPY_HEADER)
        copy.write(memoryview(rows).cast("B"))
        copy.write(_COPY_TRAILER)


def _replace_range(first_id: int, last_id: int, ids: np.ndarray, probabilities: np.ndarray) -> None:
    now = timezone.now()
    # One transaction (a savepoint inside the caller's): readers never see the range empty.
    with _bulk_transaction() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE lead_id BETWEEN %s AND %s", [first_id, last_id])
        if is_postgres():
            _copy_rows(cursor, TABLE, ids, probabilities, now)
            return
        known = ~np.isnan(probabilities)
        cursor.executemany(
            f"INSERT INTO {TABLE} (lead_id, probability, computed_at) VALUES (%s, %s, %s)",
            [
                (i, p, now)
                for i, p in zip(ids[known].tolist(), probabilities[known].tolist(), strict=True)
            ],
        )


def _upsert(ids: np.ndarray, probabilities: np.ndarray) -> None:
    known = ~np.isnan(probabilities)
    gone = ids[~known].tolist()
    ids, probabilities = ids[known].tolist(), probabilities[known].tolist()
    # computed_at moves on even when the value is the same: a full run swapping its table in
    # keeps the rows computed after it started, which this one was.
    upsert = (
        " ON CONFLICT (lead_id) DO UPDATE SET probability = EXCLUDED.probability,"
        " computed_at = EXCLUDED.computed_at"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        if is_postgres():
            if ids:
                # clock_timestamp(), not now(): the moment of writing, which a full run that
                # started before it compares with when it swaps its table in.
                cursor.execute(
                    f"INSERT INTO {TABLE} (lead_id, probability, computed_at)"
                    " SELECT t.id, t.p, clock_timestamp()"
                    " FROM unnest(%s::bigint[], %s::float8[]) AS t (id, p)" + upsert,
                    [ids, probabilities],
                )
            if gone:
                cursor.execute(f"DELETE FROM {TABLE} WHERE lead_id = ANY(%s::bigint[])", [gone])
            return
        if ids:
            now = timezone.now()
            cursor.executemany(
                f"INSERT INTO {TABLE} (lead_id, probability, computed_at) VALUES (%s, %s, %s)"
                " ON CONFLICT (lead_id) DO UPDATE SET probability = excluded.probability,"
                " computed_at = excluded.computed_at",
                [(i, p, now) for i, p in zip(ids, probabilities, strict=True)],
            )
        if gone:
            cursor.executemany(f"DELETE FROM {TABLE} WHERE lead_id = %s", [(i,) for i in gone])
