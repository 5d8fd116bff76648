"""Reading what the engine needs, set-based: one query for a chunk's lead columns and one for
its behaviour aggregates (every event rule's matched count and decayed sum as of a time).

Leads are chosen either by an id range (bulk rescore chunks) or by a list of ids (real-time).
PostgreSQL gets `date_part('epoch', …)` and `FILTER` aggregates over jsonb containment; SQLite
gets the equivalent with julianday(), CASE and json_type()/json_extract()."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from django.db import connection

from scoring.engine import BehaviourAggregates, CompiledRuleSet, EventRule, InactivityRule

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
SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class LeadSelection:
    """Which leads: an inclusive id range, or an explicit list of ids."""

    first_id: int | None = None
    last_id: int | None = None
    ids: tuple[int, ...] | None = None

    def where(self, column: str) -> tuple[str, list[Any]]:
        if self.ids is not None:
            if not self.ids:
                return "1 = 0", []
            placeholders = ", ".join(["%s"] * len(self.ids))
            return f"{column} IN ({placeholders})", list(self.ids)
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


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


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
    epoch = (
        "date_part('epoch', created_at)"
        if is_postgres()
        else "(julianday(created_at) - 2440587.5) * 86400.0"
    )
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
    """One query: per lead, every event rule's matched count and decayed sum as of `as_of`,
    and the days since its last event at or before `as_of` (or since its creation).

    PostgreSQL sends the chunk's events packed as fixed-size binary records (lead, time, type,
    one bit per distinct `where` condition) and NumPy aggregates them: one scan and no
    per-rule FILTER evaluated on every event row, which cost PostgreSQL twice the time of
    the scan. SQLite aggregates in SQL.

    Scores depend on the decayed sums only; the counts are for the breakdown. With
    `with_counts=False` they may be left at zero."""
    n = int(lead_ids.shape[0])
    k = len(compiled.event_rules)
    needs_inactivity = any(isinstance(r, InactivityRule) for r in compiled.rules)
    counts = np.zeros((n, k), dtype=np.int64)
    decayed = np.zeros((n, k), dtype=np.float64)
    as_of_epoch = as_of.timestamp()
    last_epoch = np.full(n, np.nan)
    if n and (k or needs_inactivity) and is_postgres():
        _aggregate_packed_events(
            compiled, selection, lead_ids, as_of, needs_inactivity, counts, decayed, last_epoch
        )
    elif n and (k or needs_inactivity):
        sql, params = _behaviour_sql(compiled, selection, as_of, needs_inactivity, with_counts)
        width = (2 * k if with_counts else k) + (1 if needs_inactivity else 0)
        found, values = fetch_per_lead(sql, params, width)
        # Events of leads outside `lead_ids` (e.g. created after as_of) are dropped.
        index, inside = positions_in(lead_ids, found)
        index, values = index[inside], values[inside]
        if k and with_counts:
            counts[index] = values[:, 0 : 2 * k : 2].astype(np.int64)
            decayed[index] = values[:, 1 : 2 * k : 2]
        elif k:
            decayed[index] = values[:, :k]
        if needs_inactivity:
            last_epoch[index] = values[:, -1]
    reference = np.where(np.isnan(last_epoch), created_epoch, last_epoch)
    days_since = (as_of_epoch - reference) / SECONDS_PER_DAY
    return BehaviourAggregates(counts, decayed, days_since)


def _aggregate_packed_events(
    compiled: CompiledRuleSet,
    selection: LeadSelection,
    lead_ids: np.ndarray,
    as_of: dt.datetime,
    needs_inactivity: bool,
    counts: np.ndarray,
    decayed: np.ndarray,
    last_epoch: np.ndarray,
) -> None:
    """PostgreSQL: fill `counts`, `decayed` and `last_epoch` (in place) from the selected
    leads' events at or before `as_of`, read as one bytea of packed records."""
    rules: list[EventRule] = [rule for _, rule in compiled.event_rules]
    types = sorted({rule.event_type for rule in rules})
    # A condition is its JSON text: as tuples, ("plan", True) and ("plan", 1) are equal and
    # would share one bit, though JSON containment tells them apart.
    conditions = list(dict.fromkeys(_condition_json(pair) for rule in rules for pair in rule.where))
    words = math.ceil(len(conditions) / 63)  # a bit per condition, 63 per int8 word
    record: list[str] = [
        "int8send(lead_id)",
        "float8send(date_part('epoch', occurred_at))",
        "int2send(COALESCE(array_position(%s::text[], event_type::text), 0)::int2)",
    ]
    select_params: list[Any] = [types]
    for word in range(words):
        bits = []
        for bit, condition in enumerate(conditions[word * 63 : (word + 1) * 63]):
            bits.append(f"CASE WHEN properties @> %s::jsonb THEN {1 << bit}::int8 ELSE 0 END")
            select_params.append(condition)
        record.append(f"int8send({' + '.join(bits)})")
    where, where_params = selection.where("lead_id")
    filters = "occurred_at <= %s"
    filter_params: list[Any] = [as_of]
    if not needs_inactivity:
        # Only the rules' event types, and nothing older than the longest window.
        longest = max(rule.window_days for rule in rules)
        filters += f" AND event_type IN ({', '.join(['%s'] * len(types))}) AND occurred_at >= %s"
        filter_params += [*types, as_of - dt.timedelta(days=longest)]
    sql = (
        f"SELECT string_agg({' || '.join(record)}, ''::bytea) "
        f"FROM scoring_event WHERE {where} AND {filters}"
    )
    data = _fetch_bytea(sql, select_params + where_params + filter_params)
    layout = [("lead", ">i8"), ("epoch", ">f8"), ("type", ">i2")]
    if words:
        layout.append(("where", ">i8", (words,)))
    events = np.frombuffer(data, dtype=np.dtype(layout))
    n = int(lead_ids.shape[0])
    # Events of leads outside `lead_ids` (e.g. created after as_of) are dropped.
    lead_of_event = events["lead"].astype(np.int64)
    index, inside = positions_in(lead_ids, lead_of_event)
    events, index = events[inside], index[inside]
    epoch = events["epoch"].astype(np.float64)
    type_code = events["type"].astype(np.int64)
    age_days = (as_of.timestamp() - epoch) / SECONDS_PER_DAY
    # Same arithmetic as the SQL aggregates it replaces: (as_of - occurred) / 86400 days.
    for j, rule in enumerate(rules):
        matched = (
            (type_code == types.index(rule.event_type) + 1)
            & (age_days >= 0)
            & (age_days <= rule.window_days)
        )
        for pair in rule.where:
            position = conditions.index(_condition_json(pair))
            word = events["where"][:, position // 63].astype(np.int64)
            matched &= ((word >> (position % 63)) & 1).astype(bool)
        leads = index[matched]
        counts[:, j] = np.bincount(leads, minlength=n)
        if rule.half_life_days is None:
            decayed[:, j] = counts[:, j]
        else:
            terms = np.power(0.5, age_days[matched] / rule.half_life_days)
            decayed[:, j] = np.bincount(leads, weights=terms, minlength=n)
    if needs_inactivity and index.shape[0]:
        latest = np.full(n, -np.inf)
        np.maximum.at(latest, index, epoch)
        last_epoch[:] = np.where(np.isneginf(latest), np.nan, latest)


def positions_in(sorted_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of `ids` sits in `sorted_ids`, and whether it is there at all (a row of a
    lead the selection left out, or one inserted between two reads, is not)."""
    index = np.searchsorted(sorted_ids, ids)
    inside = index < sorted_ids.shape[0]
    inside[inside] = sorted_ids[index[inside]] == ids[inside]
    return index, inside


def _condition_json(pair: tuple[str, Any]) -> str:
    key, value = pair
    return json.dumps({key: value})


def _fetch_bytea(sql: str, params: list[Any]) -> bytes:
    """PostgreSQL: the one bytea value a query returns (b"" for NULL). Through a
    server-binding cursor, for a binary result: the bytes arrive as they are, not as hex text
    twice their size (Django's client-side cursors cannot ask for binary)."""
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, binary=True)
        row = cursor.fetchone()
    return bytes(row[0]) if row and row[0] is not None else b""


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
        data = _fetch_bytea(wrapped, params)
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


def _behaviour_sql(
    compiled: CompiledRuleSet,
    selection: LeadSelection,
    as_of: dt.datetime,
    needs_inactivity: bool,
    with_counts: bool = True,
) -> tuple[str, list[Any]]:
    """SQLite: per lead, each event rule's count (with `with_counts`) and decayed sum, then
    the epoch of its last event when an inactivity rule needs it."""
    where, where_params = selection.where("lead_id")
    rules: list[EventRule] = [rule for _, rule in compiled.event_rules]
    params: list[Any] = []
    age = "(julianday(%s) - julianday(occurred_at))"
    inner_params: list[Any] = [_sqlite_time(as_of)]
    time_filter = "julianday(occurred_at) <= julianday(%s)"
    time_params: list[Any] = [_sqlite_time(as_of)]
    type_filter = ""
    type_params: list[Any] = []
    if not needs_inactivity:
        # Only the rules' event types.
        types = sorted({rule.event_type for rule in rules})
        type_filter = f" AND event_type IN ({', '.join(['%s'] * len(types))})"
        type_params = types
    aggregates: list[str] = []
    for rule in rules:
        condition = "event_type = %s AND age >= 0 AND age <= %s"
        condition_params: list[Any] = [rule.event_type, rule.window_days]
        for key, value in rule.where:
            fragment, fragment_params = _where_fragment(key, value)
            condition += f" AND {fragment}"
            condition_params += fragment_params
        term = "1.0" if rule.half_life_days is None else "POWER(0.5, age / %s)"
        term_params = [] if rule.half_life_days is None else [rule.half_life_days]
        if with_counts:
            aggregates.append(f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)")
            params += condition_params
        aggregates.append(f"SUM(CASE WHEN {condition} THEN {term} ELSE 0 END)")
        params += condition_params + term_params
    if needs_inactivity:
        aggregates.append("MAX((julianday(occurred_at) - 2440587.5) * 86400.0)")
    inner = (
        f"SELECT lead_id, event_type, properties, occurred_at, {age} AS age "
        f"FROM scoring_event WHERE {where} AND {time_filter}{type_filter}"
    )
    sql = f"SELECT lead_id, {', '.join(aggregates)} FROM ({inner}) ev GROUP BY lead_id"
    # Parameters in the order their placeholders appear: aggregates, age, lead filter, time.
    return sql, params + inner_params + where_params + time_params + type_params


def _where_fragment(key: str, value: Any) -> tuple[str, list[Any]]:
    """SQLite: exact JSON equality of one event property, bools never equal to numbers."""
    path = "$." + json.dumps(key)
    if isinstance(value, bool):
        return f"json_type(properties, '{_quote(path)}') = %s", ["true" if value else "false"]
    if value is None:
        return f"json_type(properties, '{_quote(path)}') = 'null'", []
    if isinstance(value, int | float):
        return (
            f"json_type(properties, '{_quote(path)}') IN ('integer', 'real') "
            f"AND json_extract(properties, '{_quote(path)}') = %s",
            [value],
        )
    return (
        f"json_type(properties, '{_quote(path)}') = 'text' "
        f"AND json_extract(properties, '{_quote(path)}') = %s",
        [value],
    )


def _quote(text: str) -> str:
    return text.replace("'", "''").replace("%", "%%")


def _sqlite_time(moment: dt.datetime) -> str:
    """The text form Django stores in SQLite (UTC, no offset)."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ")


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
