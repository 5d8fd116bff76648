"""Reading what the rule engine needs, set-based: one query for a chunk's lead columns and one
for its events (the one event reader, `scoring.event_reader`), which the engine aggregates
into every event rule's matched count and decayed sum as of a time.

Leads are chosen either by an id range (bulk rescore chunks) or by a list of ids (real-time).
PostgreSQL computes each event's `where` condition bits by jsonb containment; SQLite reads the
properties and the engine computes the same bits (`code_events`)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connection

from leadscoring.db import db_datetime, epoch_seconds_sql, fetch_binary, in_list_sql, is_postgres
from scoring.engine import (
    BehaviourAggregates,
    CodedEvents,
    CompiledRuleSet,
    RuleEventPlan,
    code_events,
    rule_behaviour,
    rule_event_plan,
)
from scoring.event_reader import (
    EventRows,
    condition_sql,
    fetch_packed,
    packed_events_sql,
    unpack_events,
)

# Lead table columns a rule may name directly; anything else must be `attributes.<key>`.
LEAD_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "title",
    "company",
    "employees",
    "industry",
    "country",
    "source",
    "lifecycle_stage",
    "revenue",
)


@dataclass(frozen=True)
class LeadSelection:
    """Which leads: an inclusive id range, or an explicit list of ids."""

    first_id: int | None = None
    last_id: int | None = None
    ids: tuple[int, ...] | None = None

    def where(self, column: str) -> tuple[str, list[Any]]:
        if self.ids is not None:
            return in_list_sql(column, self.ids, "bigint")
        return f"{column} BETWEEN %s AND %s", [self.first_id, self.last_id]


@dataclass(frozen=True, eq=False)
class LeadColumns:
    """A chunk's leads as columns: ids, the state scoring compares against, and the fields
    the rule set reads (object arrays of Python values, None for missing)."""

    ids: np.ndarray
    created_epoch: np.ndarray
    fields: dict[str, np.ndarray]
    score: np.ndarray  # float, NaN when never scored
    band: np.ndarray
    persona: np.ndarray
    qualified: np.ndarray
    has_mql_at: np.ndarray
    lifecycle_stage: np.ndarray
    model_probability: np.ndarray

    @property
    def n(self) -> int:
        return int(self.ids.shape[0])


def read_lead_columns(
    compiled: CompiledRuleSet,
    selection: LeadSelection,
    as_of: dt.datetime | None = None,
    *,
    with_state: bool = True,
) -> LeadColumns:
    """One query: the selected leads ordered by id, with every field the rule set needs.
    With `as_of`, leads created after it are left out: they did not exist yet. With
    `with_state=False` the stored score, band, persona and qualification (what a rescore
    compares against, not what it scores) are not read and come back empty."""
    direct = sorted(f for f in compiled.fields if f in LEAD_FIELDS)
    attribute_keys = sorted(
        f.split(".", 1)[1] for f in compiled.fields if f.startswith("attributes.")
    )
    unknown = sorted(
        f for f in compiled.fields if f not in LEAD_FIELDS and not f.startswith("attributes.")
    )
    where, params = selection.where("l.id")
    # The selection repeated on the join, so PostgreSQL reads only the chunk's probability
    # rows (it does not carry a range condition across the join's equality).
    join_where, join_params = selection.where("lp.lead_id")
    epoch = epoch_seconds_sql("created_at")
    state = (
        ["score", "band", "persona", "qualified", "mql_at IS NOT NULL"]
        if with_state
        else ["NULL", "NULL", "NULL", "false", "false"]
    )
    # The probability lives in its own table (scoring_leadprobability), joined from the lead
    # side: NULL, then NaN, where a lead has none.
    select = ["l.id", epoch, *state, "lifecycle_stage", "lp.probability"]
    select += [f'"{name}"' for name in direct if name != "lifecycle_stage"]
    # PostgreSQL extracts each attribute the rules read, so only those values are parsed, not
    # whole documents; elsewhere the document is read and parsed once per lead.
    per_key = bool(attribute_keys) and is_postgres()
    select_params: list[Any] = []
    if per_key:
        select += ["attributes -> %s"] * len(attribute_keys)
        select_params = list(attribute_keys)
    elif attribute_keys:
        select.append("attributes")
    if as_of is not None:
        where += " AND created_at <= %s"
        params = [*params, as_of]
    sql = (
        f"SELECT {', '.join(select)} FROM scoring_lead l"
        f" LEFT JOIN scoring_leadprobability lp ON lp.lead_id = l.id AND {join_where}"
        f" WHERE {where} ORDER BY l.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, select_params + join_params + params)
        rows = cursor.fetchall()
    n = len(rows)
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in select]
    base = 9
    fields: dict[str, np.ndarray] = {}
    position = base
    for name in direct:
        if name == "lifecycle_stage":
            fields[name] = _objects(columns[7], n)
            continue
        fields[name] = _objects(columns[position], n)
        position += 1
    if per_key:
        for offset, key in enumerate(attribute_keys):
            fields[f"attributes.{key}"] = _objects(_json_values(columns[position + offset]), n)
    elif attribute_keys:
        documents = [_json_object(value) for value in columns[position]]
        for key in attribute_keys:
            fields[f"attributes.{key}"] = _objects([doc.get(key) for doc in documents], n)
    for name in unknown:
        fields[name] = np.full(n, None, dtype=object)
    return LeadColumns(
        ids=np.asarray(columns[0], dtype=np.int64),
        created_epoch=np.asarray(columns[1], dtype=np.float64),
        fields=fields,
        score=np.array([np.nan if s is None else s for s in columns[2]], dtype=np.float64),
        band=_objects(columns[3], n),
        persona=_objects(columns[4], n),
        qualified=np.asarray(columns[5], dtype=bool),
        has_mql_at=np.asarray(columns[6], dtype=bool),
        lifecycle_stage=_objects(columns[7], n),
        model_probability=np.array(
            [np.nan if p is None else p for p in columns[8]], dtype=np.float64
        ),
    )


def read_behaviour(
    compiled: CompiledRuleSet,
    selection: LeadSelection,
    lead_ids: np.ndarray,
    created_epoch: np.ndarray,
    as_of: dt.datetime,
    *,
    with_counts: bool = True,
) -> BehaviourAggregates:
    """Per lead (`lead_ids`, ascending, with their creation epochs): every event rule's
    matched count and decayed sum as of `as_of`, and the days since its last event at or
    before `as_of` (or since its creation).

    One read of the selected leads' events (`read_rule_events`: lead, type, time, one bit per
    distinct `where` condition), aggregated by the engine (`rule_behaviour`), the same on
    every database. The counts cost nothing extra, so `with_counts` (kept for callers that
    need only the decayed sums) changes nothing."""
    del with_counts
    plan = rule_event_plan(compiled)
    n = int(lead_ids.shape[0])
    if n and (plan.terms or plan.needs_inactivity):
        events = read_rule_events(plan, selection, as_of)
    else:
        events = EventRows.empty(plan.words)
    # Events of leads outside `lead_ids` (e.g. created after as_of) are dropped.
    index, inside = positions_in(lead_ids, events.lead_ids)
    coded = CodedEvents(
        index[inside], events.codes[inside], events.epochs[inside], events.bits[inside]
    )
    return rule_behaviour(plan, coded, created_epoch, as_of.timestamp())


def read_rule_events(
    plan: RuleEventPlan, selection: LeadSelection, as_of: dt.datetime
) -> EventRows:
    """The selected leads' events at or before `as_of`, coded for `plan`. Without an
    inactivity rule only the rules' event types within the longest window are read."""
    where, where_params = selection.where("lead_id")
    extra, extra_params = "", []
    if not plan.needs_inactivity:
        if is_postgres():
            since = as_of - dt.timedelta(days=plan.longest_window_days)
            extra = " AND event_type = ANY(%s) AND occurred_at >= %s"
            extra_params = [list(plan.event_types), since]
        else:
            # Types only: julianday() keeps about a millisecond, so a bound on the time could
            # drop an event right at the edge of the longest window.
            extra = f" AND event_type IN ({', '.join(['%s'] * len(plan.event_types))})"
            extra_params = list(plan.event_types)
    if is_postgres():
        predicates = [condition_sql(key, value) for key, value in plan.conditions]
        sql = packed_events_sql("0", where, [p for p, _ in predicates], extra)
        condition_params = [param for _, params in predicates for param in params]
        packed = fetch_packed(
            sql,
            [list(plan.event_types), *condition_params, *where_params, as_of, *extra_params],
        )
        return unpack_events(packed[0], plan.words) if packed else EventRows.empty(plan.words)
    sql = (
        "SELECT lead_id, event_type, (julianday(occurred_at) - 2440587.5) * 86400.0, properties"
        f" FROM scoring_event WHERE {where} AND julianday(occurred_at) <= julianday(%s){extra}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*where_params, db_datetime(as_of), *extra_params])
        rows = cursor.fetchall()
    if not rows:
        return EventRows.empty(plan.words)
    leads, types, epochs, properties = zip(*rows, strict=True)
    coded = code_events(
        plan,
        np.zeros(len(rows), dtype=np.intp),
        types,
        np.asarray(epochs, dtype=np.float64),
        [_json_object(p) for p in properties],
    )
    return EventRows(
        np.asarray(leads, dtype=np.int64), coded.type_code, np.asarray(epochs), coded.bits
    )


def read_next_events(
    plan: RuleEventPlan, selection: LeadSelection, lead_ids: np.ndarray, as_of: dt.datetime
) -> np.ndarray:
    """Per lead (`lead_ids`, ascending): the epoch of its earliest event after `as_of` that
    could change its score once it happens (inf: none), for the due time
    (`scoring.engine.next_due_epochs`). The scoring read stops at `as_of`, so these are read
    apart: of the rules' event types, or of any type when an inactivity rule would see it.
    Normally (as of now) there are none, and the index on (lead, type, time) answers fast."""
    n = int(lead_ids.shape[0])
    upcoming = np.full(n, np.inf)
    if not n or not (plan.terms or plan.needs_inactivity):
        return upcoming
    where, params = selection.where("lead_id")
    extra, extra_params = "", []
    if not plan.needs_inactivity:
        extra = f" AND event_type IN ({', '.join(['%s'] * len(plan.event_types))})"
        extra_params = list(plan.event_types)
    sql = (
        f"SELECT lead_id, MIN({epoch_seconds_sql('occurred_at')}) FROM scoring_event"
        f" WHERE {where} AND occurred_at > %s{extra} GROUP BY lead_id"
    )
    ids, values = fetch_per_lead(sql, [*params, db_datetime(as_of), *extra_params], 1)
    index, inside = positions_in(lead_ids, ids)
    upcoming[index[inside]] = values[inside, 0]
    return upcoming


def positions_in(sorted_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of `ids` sits in `sorted_ids`, and whether it is there at all (a row of a
    lead the selection left out, or one inserted between two reads, is not)."""
    index = np.searchsorted(sorted_ids, ids)
    inside = index < sorted_ids.shape[0]
    inside[inside] = sorted_ids[index[inside]] == ids[inside]
    return index, inside


def fetch_per_lead(sql: str, params: list[Any], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Run a query of rows (lead_id, `width` numbers or booleans) and return the ids and an
    (rows, width) float matrix, NULL as NaN. PostgreSQL packs the rows into one bytea of
    fixed-size binary records, so NumPy reads them without a Python object per value (a
    chunk's 15,000 rows of 40 aggregates were 600,000 floats to box and unbox)."""
    if is_postgres():
        names = [f"v{i}" for i in range(width)]
        packed = " || ".join(
            ["int8send(lead_id)"] + [f"float8send(COALESCE({v}::float8, 'NaN'))" for v in names]
        )
        wrapped = (
            f"SELECT string_agg({packed}, ''::bytea) "
            f"FROM ({sql}) AS per_lead (lead_id, {', '.join(names)})"
        )
        rows = fetch_binary(wrapped, params)
        data = bytes(rows[0][0]) if rows and rows[0][0] is not None else b""
        record = np.dtype([("lead", ">i8"), ("values", ">f8", (width,))])
        records = np.frombuffer(data, dtype=record)
        return records["lead"].astype(np.int64), records["values"].astype(np.float64)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    values = np.array(
        [[np.nan if v is None else float(v) for v in row[1:]] for row in rows], dtype=np.float64
    ).reshape(len(rows), width)
    return ids, values


def _objects(values: Sequence[Any], n: int) -> np.ndarray:
    array = np.empty(n, dtype=object)
    array[:] = list(values)
    return array


def _json_values(values: Sequence[Any]) -> list[Any]:
    """JSON texts as Python values, SQL NULL as None. Each distinct text is decoded once: an
    attribute's values repeat across a chunk's leads."""
    distinct = set(values)
    distinct.discard(None)
    if not all(type(text) is str for text in distinct):
        # A driver that already decoded the JSON (not Django's, which returns text).
        return list(values)
    decoded = {text: json.loads(text) for text in distinct}
    return list(map(decoded.get, values))


def _json_object(value: Any) -> dict:
    if value is None:
        return {}
    if isinstance(value, str):
        return json.loads(value)
    return value
