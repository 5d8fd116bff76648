"""Writing the active model's probabilities into `LeadProbability` (table
`scoring_leadprobability`: lead id, probability; a lead without a row has none).

Two paths:
- bulk (`covering=(first_id, last_id)`): the id range is replaced. PostgreSQL: one DELETE of
  the range and one binary COPY of the new rows, the COPY built by NumPy (fixed-width records,
  no Python per row); narrow rows with one index are a fraction of the cost of updating the
  wide lead rows and their nine indexes. SQLite: DELETE + executemany.
- real time (no `covering`): only the given leads' rows are upserted (one statement from
  arrays on PostgreSQL) and those without a probability removed.

Readers join this table from the lead side, so a row left behind by a lead deleted with raw
SQL (there is no foreign-key constraint, see the model) is never seen; the next bulk write of
its id range removes it."""

from __future__ import annotations

import numpy as np
from django.db import connection, transaction

from scoring.models import LeadProbability

TABLE = LeadProbability._meta.db_table

# PostgreSQL's binary COPY: the signature, then int32 flags and int32 header-extension length
# (both 0); one record per row; the int16 trailer -1.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + np.array([0, 0], dtype=">i4").tobytes()
_COPY_TRAILER = np.array([-1], dtype=">i2").tobytes()
# One row: the field count, then each field's byte length and value, big-endian. Fixed width
# because no field is ever NULL (a lead without a probability has no row).
_COPY_ROW = np.dtype(
    [
        ("fields", ">i2"),
        ("id_size", ">i4"),
        ("id", ">i8"),
        ("p_size", ">i4"),
        ("p", ">f8"),
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
    ids = np.asarray(ids, dtype=np.int64)
    probabilities = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0)
    if ids.ndim != 1 or ids.shape != probabilities.shape:
        raise ValueError(
            f"ids and probabilities must be 1-d and of the same shape, not {ids.shape} and"
            f" {probabilities.shape}"
        )
    if np.unique(ids).size != ids.size:
        raise ValueError("ids must be distinct")
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


def _replace_range(first_id: int, last_id: int, ids: np.ndarray, probabilities: np.ndarray) -> None:
    known = ~np.isnan(probabilities)
    ids, probabilities = ids[known], probabilities[known]
    # One transaction (a savepoint inside the caller's): readers never see the range empty.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE lead_id BETWEEN %s AND %s", [first_id, last_id])
        if not ids.size:
            return
        if connection.vendor == "postgresql":
            rows = np.empty(ids.size, dtype=_COPY_ROW)
            rows["fields"] = 2
            rows["id_size"] = 8
            rows["id"] = ids
            rows["p_size"] = 8
            rows["p"] = probabilities
            sql = f"COPY {TABLE} (lead_id, probability) FROM STDIN (FORMAT BINARY)"
            with cursor.cursor.copy(sql) as copy:
                copy.write(_COPY_HEADER)
                copy.write(memoryview(rows).cast("B"))
                copy.write(_COPY_TRAILER)
        else:
            cursor.executemany(
                f"INSERT INTO {TABLE} (lead_id, probability) VALUES (%s, %s)",
                list(zip(ids.tolist(), probabilities.tolist(), strict=True)),
            )


def _upsert(ids: np.ndarray, probabilities: np.ndarray) -> None:
    known = ~np.isnan(probabilities)
    gone = ids[~known].tolist()
    ids, probabilities = ids[known].tolist(), probabilities[known].tolist()
    # Rows whose probability did not change are not rewritten.
    upsert = (
        f" ON CONFLICT (lead_id) DO UPDATE SET probability = EXCLUDED.probability"
        f" WHERE {TABLE}.probability IS DISTINCT FROM EXCLUDED.probability"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            if ids:
                cursor.execute(
                    f"INSERT INTO {TABLE} (lead_id, probability)"
                    " SELECT * FROM unnest(%s::bigint[], %s::float8[])" + upsert,
                    [ids, probabilities],
                )
            if gone:
                cursor.execute(f"DELETE FROM {TABLE} WHERE lead_id = ANY(%s::bigint[])", [gone])
            return
        if ids:
            # SQLite's upsert (3.24+) spells "distinct" as IS NOT.
            cursor.executemany(
                f"INSERT INTO {TABLE} (lead_id, probability) VALUES (%s, %s)"
                " ON CONFLICT (lead_id) DO UPDATE SET probability = excluded.probability"
                f" WHERE {TABLE}.probability IS NOT excluded.probability",
                list(zip(ids, probabilities, strict=True)),
            )
        if gone:
            cursor.executemany(f"DELETE FROM {TABLE} WHERE lead_id = %s", [(i,) for i in gone])
