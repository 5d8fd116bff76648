"""The one event read behind rule scoring, training and model scoring: events as columns
(lead, type code, time, condition bits), which `scoring.engine.aggregate_coded_events`
aggregates.

PostgreSQL ships them packed, grouped by (lead, type), the lead/type/time index's order: one
fixed-size binary header per group (`GROUP_RECORD`: lead id, type code, how many events) in
one `bytea`, and the groups' events in the same order in another (`event_record`: the time as
`timestamptz_send` gives it, then one int8 of condition bits per 63 conditions, if any). The
type is coded once per group, not per event (its text comparison was a third of the query's
time when it ran per event), and a handful of rows arrive instead of millions, so the transfer
costs no Python per event. A condition's bit is jsonb containment of its `{"key": value}`
text, computed in SQL, so no event's properties travel.

Other databases (SQLite) read rows and code them in Python (`scoring.engine.code_events`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connection

# PostgreSQL's own binary forms, big-endian: a timestamp is int8 microseconds since
# 2000-01-01 UTC, turned into epoch seconds as date_part('epoch', ...) computes them.
PG_EPOCH_MICROS = 946_684_800_000_000
TIME_RECORD = np.dtype(">i8")
# 1 + the type's index in the event types (the parameter), 0 for any other type.
TYPE_CODE_SQL = "COALESCE(array_position(%s::text[], event_type::text), 0)::int2"


# The header of one (lead, type) group of events.
GROUP_RECORD = np.dtype([("lead", ">i8"), ("code", ">i2"), ("count", ">i4")])


def event_record(words: int) -> np.dtype:
    """One event of a group: its time, then its condition bits."""
    if not words:
        return TIME_RECORD
    return np.dtype([("at", ">i8"), ("bits", ">i8", (words,))])


@dataclass(frozen=True, eq=False)
class EventRows:
    """Events as columns: lead id, type code (1 + index in the reader's event types, 0 for
    any other type: it counts only towards the last activity), time (epoch seconds) and
    condition bits (m, words) int64."""

    lead_ids: np.ndarray
    codes: np.ndarray
    epochs: np.ndarray
    bits: np.ndarray

    @staticmethod
    def empty(words: int = 0) -> EventRows:
        return EventRows(
            np.zeros(0, np.int64),
            np.zeros(0, np.int16),
            np.zeros(0),
            np.zeros((0, words), np.int64),
        )

    @property
    def m(self) -> int:
        return int(self.lead_ids.shape[0])


def packed_events_sql(bucket: str, where: str, n_conditions: int = 0, extra: str = "") -> str:
    """PostgreSQL: one row per bucket of leads (`bucket`, an expression of lead_id) holding its
    events at or before a time, packed (`GROUP_RECORD` headers, `event_record(words)` events).

    Placeholders in order: those of `bucket`, the event types (a list), one `{"key": value}`
    JSON text per condition, those of `where`, the time, those of `extra` (more conditions on
    the events, starting with AND)."""
    words = words_for(n_conditions)
    per_event = ["timestamptz_send(occurred_at)"]
    bit_columns = ""
    for word in range(words):
        terms = [
            f"CASE WHEN properties @> %s::jsonb THEN {1 << bit}::int8 ELSE 0::int8 END"
            for bit in range(min(63, n_conditions - word * 63))
        ]
        bit_columns += f", ({' + '.join(terms)}) AS w{word}"
        per_event.append(f"int8send(w{word})")
    # Grouped by (lead, type) only, the index's order: the bits travel with each event's time,
    # so grouping on them too would sort every chunk's events once more.
    return (
        f"SELECT {bucket} AS bucket, string_agg(int8send(lead_id) || int2send({TYPE_CODE_SQL})"
        " || int4send(n), ''::bytea), string_agg(events, ''::bytea) FROM ("
        "SELECT lead_id, event_type, count(*)::int4 AS n,"
        f" string_agg({' || '.join(per_event)}, ''::bytea) AS events"
        f" FROM (SELECT lead_id, event_type, occurred_at{bit_columns}"
        f" FROM scoring_event WHERE {where} AND occurred_at <= %s{extra}) AS events"
        " GROUP BY lead_id, event_type) AS groups GROUP BY 1"
    )


def words_for(n_conditions: int) -> int:
    """int8 words of condition bits per event: 63 conditions each (the sign bit unused)."""
    return -(-n_conditions // 63)


def unpack_events(packed: tuple[bytes, bytes], words: int = 0) -> EventRows:
    heads = np.frombuffer(packed[0], dtype=GROUP_RECORD)
    events = np.frombuffer(packed[1], dtype=event_record(words))
    counts = heads["count"].astype(np.int64)
    if int(counts.sum()) != events.shape[0]:
        raise ValueError(f"{int(counts.sum())} events announced, {events.shape[0]} received")
    times = events["at"] if words else events
    bits = events["bits"].astype(np.int64) if words else np.zeros((events.shape[0], 0), np.int64)
    return EventRows(
        np.repeat(heads["lead"].astype(np.int64), counts),
        np.repeat(heads["code"].astype(np.int16), counts),
        (times.astype(np.int64) + PG_EPOCH_MICROS) / 1e6,
        bits,
    )


def fetch_binary(sql: str, params: list[Any]) -> list[tuple]:
    """PostgreSQL: a query's rows through a server-binding cursor for binary results, so
    `bytea` values arrive as they are, not hex-encoded (Django's client-side cursors cannot
    ask for binary)."""
    import psycopg  # only on PostgreSQL

    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, binary=True)
        return cursor.fetchall()


def fetch_packed(sql: str, params: list[Any]) -> dict[int, tuple[bytes, bytes]]:
    """PostgreSQL: bucket -> packed events (group headers, times), from a
    `packed_events_sql` query."""
    return {
        int(bucket): (bytes(heads or b""), bytes(times or b""))
        for bucket, heads, times in fetch_binary(sql, params)
    }
