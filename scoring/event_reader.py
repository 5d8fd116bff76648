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
text, or for an operator (`{"score": {"gte": 9}}`) the SQL twin of the attribute predicate
(`condition_sql`), computed in SQL, so no event's properties travel.

Other databases (SQLite) read rows and code them in Python (`scoring.engine.code_events`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from leadscoring.db import fetch_binary
from scoring.engine import PropertyTest
from scoring.engine.predicates import value_text
from scoring.engine.spec import is_number

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


def packed_events_sql(
    bucket: str, where: str, conditions: Sequence[str] = (), extra: str = ""
) -> str:
    """PostgreSQL: one row per bucket of leads (`bucket`, an expression of lead_id) holding its
    events at or before a time, packed (`GROUP_RECORD` headers, `event_record(words)` events).

    `conditions` are boolean SQL expressions over an event's `properties` (`condition_sql`),
    one bit each. Placeholders in order: those of `bucket`, the event types (a list), those of
    each condition, those of `where`, the time, those of `extra` (more conditions on the
    events, starting with AND)."""
    n_conditions = len(conditions)
    words = words_for(n_conditions)
    per_event = ["timestamptz_send(occurred_at)"]
    bit_columns = ""
    for word in range(words):
        terms = [
            f"CASE WHEN {conditions[word * 63 + bit]} THEN {1 << bit}::int8 ELSE 0::int8 END"
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


# The attribute predicate's forms of one property (scoring.engine.columns), in SQL. Each
# `{key}` is one placeholder for the property name. Python's str.strip()/casefold() become a
# whitespace trim and lower() with the two casefold mappings that matter for words
# (sharp s -> ss, final sigma -> sigma); PostgreSQL 15 has no casefold().
_TYPE = "jsonb_typeof(properties -> {key})"
_RAW = "(properties ->> {key})"
_PRESENT = f"({_TYPE} IN ('number', 'boolean') OR ({_TYPE} = 'string' AND {_RAW} ~ '[^[:space:]]'))"
_TEXT = (
    f"replace(replace(lower(regexp_replace({_RAW}, '^[[:space:]]+|[[:space:]]+$', '', 'g')),"
    " 'ß', 'ss'), 'ς', 'σ')"  # noqa: RUF001
)
# A string that Python's float() parses, in its usual notation (numeric, not float8: a huge
# exponent must not raise out of range; NaN is left out because PostgreSQL sorts it above
# every number, where Python compares it false).
_NUMERIC_STRING = (
    "'^[[:space:]]*[+-]?(([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]{{1,5}})?"
    "|[iI][nN][fF]|[iI][nN][fF][iI][nN][iI][tT][yY])[[:space:]]*$'"
)
_PARSED = (
    f"(CASE WHEN {_TYPE} = 'number' THEN (properties -> {{key}})::numeric"
    f" WHEN {_TYPE} = 'string' AND {_RAW} ~ {_NUMERIC_STRING}"
    f" THEN ({_RAW})::numeric END)"
)


def condition_sql(key: str, value: Any) -> tuple[str, list[Any]]:
    """PostgreSQL: a boolean SQL expression over `properties` for one `where` pair, and its
    parameters.

    A scalar value is JSON equality, which jsonb containment of `{"key": value}` is. A
    `PropertyTest` is the attribute predicate (`scoring.engine.predicates`) over the
    property's value: missing (absent, null, blank, an object or a list) satisfies only
    is_not_set; eq compares numbers numerically and everything else by normalised text;
    gte/lte/between compare numbers and numeric strings. Never NULL."""
    if not isinstance(value, PropertyTest):
        return "properties @> %s::jsonb", [json.dumps({key: value})]
    op, operand = value.op, value.value
    params: list[Any] = []

    def form(template: str) -> str:
        params.extend([key] * template.count("{key}"))
        return template.format(key="%s::text")

    def eq(item: Any) -> str:
        if is_number(item):
            numeric = form(f"(CASE WHEN {_TYPE} = 'number' THEN (properties -> {{key}})::numeric")
            params.append(repr(item))
            text = form(f" = %s::numeric ELSE {_PRESENT} AND {_TEXT} = ")
            params.append(value_text(item))
            return f"{numeric}{text}%s END)"
        present = form(f"({_PRESENT} AND {_TEXT} = ")
        params.append(value_text(item))
        return f"{present}%s)"

    if op == "is_set":
        sql = form(_PRESENT)
    elif op == "is_not_set":
        # An absent key makes the type NULL: "present" must be false before it is negated.
        sql = f"NOT COALESCE({form(_PRESENT)}, false)"
    elif op == "eq":
        sql = eq(operand)
    elif op == "neq":
        present = form(_PRESENT)
        sql = f"({present} AND NOT COALESCE({eq(operand)}, false))"
    elif op in ("in", "not_in"):
        present = form(_PRESENT) if op == "not_in" else ""
        any_of = " OR ".join(f"COALESCE({eq(item)}, false)" for item in operand)
        sql = f"({any_of})" if op == "in" else f"({present} AND NOT ({any_of}))"
    elif op in ("contains", "not_contains"):
        present = form(_PRESENT)
        found = form(f"strpos({_TEXT}, ")
        params.append(value_text(operand))
        negate = "" if op == "contains" else "NOT "
        sql = f"({present} AND {negate}({found}%s) > 0))"
    elif op in ("gte", "lte"):
        sql = form(_PARSED) + (" >= " if op == "gte" else " <= ") + "%s::numeric"
        params.append(repr(operand))
    elif op == "between":
        sql = form(_PARSED) + " BETWEEN %s::numeric AND %s::numeric"
        params.extend([repr(operand[0]), repr(operand[1])])
    else:
        raise ValueError(f"unknown operator {op!r}")
    return f"COALESCE({sql}, false)", params


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


def fetch_packed(sql: str, params: list[Any]) -> dict[int, tuple[bytes, bytes]]:
    """PostgreSQL: bucket -> packed events (group headers, times), from a
    `packed_events_sql` query."""
    return {
        int(bucket): (bytes(heads or b""), bytes(times or b""))
        for bucket, heads, times in fetch_binary(sql, params)
    }
