"""The floor: the same bulk rescore written by hand, as fast as we know how, for the benchmark's
rule set, to measure how close the product gets to what PostgreSQL + NumPy can do.

Chunks run side by side in as many threads as the product's inline rescore uses, each with its
own connection. Per chunk of leads, in one transaction:

- one binary COPY out of the lead columns: id, persona (a CASE over the persona conditions),
  and every attribute rule's hit as one bit of an int8 (CASE expressions over the columns);
- one binary COPY out of the chunk's events: lead id, type code, time (`timestamptz` as it is
  stored, int8 microseconds) and one bit per distinct `where` condition (jsonb containment);
- NumPy: every event rule's count and decayed sum per lead (bincount over the events of its
  type), points, caps, personas, inactivity, rounding, clamping, bands, and the breakdown as
  JSON text with the same entries as the product's (rule, kind, label, name, points; for event
  rules count, decayed sum, capped and points per event);
- one COPY into a staging table that is never WAL-logged (a temporary table, created once per
  run and emptied at each commit) and one `UPDATE ... FROM` of score, band, persona,
  breakdown and scored_at. The lead table's fillfactor leaves room on each page, so an update
  that changes no indexed column (score and band are indexed) is a HOT update.

It supports just the operators the benchmark's rule set uses (gte, is_set, eq, in, contains),
and no model blend, groups or grades."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
from django.db import connection, transaction

from scoring.engine import FREE_EMAIL_DOMAINS, compile_ruleset, parse_ruleset, rule_label
from scoring.services.rescore import INLINE_THREADS
from scoring.threads import in_threads

SECONDS_PER_DAY = 86400.0
# A stored timestamptz is int8 microseconds since 2000-01-01 UTC.
PG_EPOCH_SECONDS = 946_684_800.0


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''").lower() + "'"


def _text_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "'true'" if value else "'false'"
    return "'" + str(value).replace("'", "''").strip().lower() + "'"


def _column(field: str) -> str:
    if field == "email_domain_type":
        free = ", ".join(_literal(d) for d in sorted(FREE_EMAIL_DOMAINS) if "*" not in d)
        return (
            f"(CASE WHEN split_part(lower(email), '@', 2) IN ({free})"
            " THEN 'free' ELSE 'business' END)"
        )
    if field.startswith("attributes."):
        key = field.split(".", 1)[1].replace("'", "''")
        return f"(attributes ->> '{key}')"
    return f'"{field}"'


def _predicate(field: str, op: str, value: Any) -> str:
    column = _column(field)
    text = f"lower(trim({column}::text))"
    if op == "gte":
        return f"({column})::numeric >= {value}"
    if op == "is_set":
        return f"coalesce(trim({column}::text), '') <> ''"
    if op == "eq":
        return f"{text} = {_text_literal(value)}"
    if op == "in":
        return f"{text} IN ({', '.join(_text_literal(v) for v in value)})"
    if op == "contains":
        return f"position({_text_literal(value)} in {text}) > 0"
    raise ValueError(f"the floor does not support {op}")


def _records(cursor: Any, sql: str, fields: list[tuple[str, str]]) -> np.ndarray:
    """Rows of a binary COPY whose columns are all fixed-size and never NULL, as a NumPy
    record array: each row is a field count, then a length and the value per column."""
    with cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT BINARY)") as copy:
        data = b"".join(bytes(block) for block in copy)
    start = 19 + int.from_bytes(data[15:19], "big")
    layout: list[tuple[str, str]] = [("fields", ">i2")]
    for name, kind in fields:
        layout += [(f"{name}_length", ">i4"), (name, kind)]
    # The body ends with a two-byte trailer (-1).
    return np.frombuffer(data[start:-2], dtype=np.dtype(layout))


def rescore_floor(document: dict[str, Any], chunk_size: int = 50000) -> dict[str, float]:
    compiled = compile_ruleset(parse_ruleset(document))
    personas = sorted(document["personas"], key=lambda p: p["priority"])
    persona_names = [p["name"] for p in personas]
    persona_sql = (
        (
            "CASE "
            + " ".join(
                "WHEN "
                + " AND ".join(
                    f"({_predicate(c['field'], c['op'], c.get('value'))}) IS TRUE"
                    for c in p["match"]
                )
                + f" THEN {i + 1}"
                for i, p in enumerate(personas)
            )
            + " ELSE 0 END"
        )
        if personas
        else "0"
    )
    rules = document["rules"]
    attribute = [(i, r) for i, r in enumerate(rules) if r["kind"] == "attribute"]
    events = [(i, r) for i, r in enumerate(rules) if r["kind"] == "event"]
    inactivity = [(i, r) for i, r in enumerate(rules) if r["kind"] == "inactivity"]
    if len(attribute) > 63:
        raise ValueError("the floor packs at most 63 attribute rules")
    hits_sql = (
        " + ".join(
            f"CASE WHEN ({_predicate(r['field'], r['op'], r.get('value'))}) IS TRUE"
            f" THEN {1 << j}::int8 ELSE 0::int8 END"
            for j, (_, r) in enumerate(attribute)
        )
        or "0::int8"
    )
    types = sorted({r["event_type"] for _, r in events})
    conditions = list(
        dict.fromkeys(
            json.dumps({key: value})
            for _, r in events
            for key, value in (r.get("where") or {}).items()
        )
    )
    if len(conditions) > 63:
        raise ValueError("the floor packs at most 63 event conditions")
    type_array = "ARRAY[" + ", ".join("'" + t.replace("'", "''") + "'" for t in types) + "]::text[]"
    bits_sql = (
        " + ".join(
            f"CASE WHEN properties @> '{c.replace(chr(39), chr(39) * 2)}'::jsonb"
            f" THEN {1 << b}::int8 ELSE 0::int8 END"
            for b, c in enumerate(conditions)
        )
        or "0::int8"
    )
    event_code = [types.index(r["event_type"]) + 1 for _, r in events]
    event_bits = [
        [conditions.index(json.dumps({k: v})) for k, v in (r.get("where") or {}).items()]
        for _, r in events
    ]
    longest = max((r["window_days"] for _, r in events), default=0)

    # Bands per scope: a persona with its own bands uses them, every other lead the shared ones.
    scopes: dict[str | None, tuple[np.ndarray, np.ndarray]] = {}
    for scope in {b.get("persona") for b in document["bands"]}:
        chosen = sorted(
            (b for b in document["bands"] if b.get("persona") == scope),
            key=lambda b: b["min_score"],
        )
        scopes[scope] = (
            np.array([b["min_score"] for b in chosen], dtype=np.float64),
            np.array([b["name"] for b in chosen], dtype=object),
        )
    rule_persona = np.array(
        [0 if not r.get("persona") else persona_names.index(r["persona"]) + 1 for r in rules]
    )
    floor, ceiling = document.get("floor", 0), document.get("ceiling", 100)

    # Each rule's fixed part of its breakdown entry, rendered once.
    heads, tails = [], []
    for r, (rule, spec_rule) in enumerate(zip(rules, compiled.rules, strict=True)):
        entry: dict[str, Any] = {"rule": r, "kind": rule["kind"], "label": rule_label(spec_rule)}
        if rule.get("name"):
            entry["name"] = rule["name"]
        heads.append(json.dumps(entry, separators=(",", ":"))[:-1] + ',"points":')
        tails.append(
            f',"points_per_event":{json.dumps(rule["points"])}}}'
            if rule["kind"] == "event"
            else "}"
        )

    escape = any("\\" in text for text in heads + tails)
    now = time.time()
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(id), max(id) FROM scoring_lead")
        low, high = cursor.fetchone()
    event_filter = (
        ""
        if inactivity
        else f" AND event_type = ANY({type_array})"
        f" AND occurred_at >= to_timestamp({now - longest * SECONDS_PER_DAY})"
    )

    def rescore_chunk(start: int) -> dict[str, float]:
        end = start + chunk_size - 1
        timings = {"read": 0.0, "score": 0.0, "write": 0.0}
        with transaction.atomic(), connection.cursor() as django_cursor:
            cursor = django_cursor.cursor
            # Per connection (each thread has its own), emptied at each commit.
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS floor_staging (id bigint, score int, band text,"
                " persona text, breakdown jsonb) ON COMMIT DELETE ROWS"
            )
            t0 = time.perf_counter()
            leads = _records(
                cursor,
                f"SELECT id, ({persona_sql})::int2, date_part('epoch', created_at),"
                f" ({hits_sql})::int8 FROM scoring_lead WHERE id BETWEEN {start} AND {end}"
                " ORDER BY id",
                [("id", ">i8"), ("persona", ">i2"), ("created", ">f8"), ("hits", ">i8")],
            )
            if not leads.shape[0]:
                return timings
            rows = _records(
                cursor,
                f"SELECT lead_id, COALESCE(array_position({type_array}, event_type::text), 0)"
                f"::int2, occurred_at, ({bits_sql})::int8 FROM scoring_event"
                f" WHERE lead_id BETWEEN {start} AND {end}"
                f" AND occurred_at <= to_timestamp({now}){event_filter}",
                [("lead", ">i8"), ("code", ">i2"), ("at", ">i8"), ("bits", ">i8")],
            )
            t1 = time.perf_counter()
            ids = leads["id"].astype(np.int64)
            persona = leads["persona"].astype(np.int64)
            created = leads["created"].astype(np.float64)
            hits = leads["hits"].astype(np.int64)
            n = ids.shape[0]
            lead_of = np.searchsorted(ids, rows["lead"].astype(np.int64))
            inside = lead_of < n
            inside[inside] = ids[lead_of[inside]] == rows["lead"][inside]
            lead_of = lead_of[inside]
            code = rows["code"][inside].astype(np.int64)
            epoch = rows["at"][inside].astype(np.int64) / 1e6 + PG_EPOCH_SECONDS
            bits = rows["bits"][inside].astype(np.int64)
            age = (now - epoch) / SECONDS_PER_DAY
            order = np.argsort(code, kind="stable")
            bounds = np.searchsorted(code[order], np.arange(len(types) + 2))

            contributions = np.zeros((n, len(rules)), order="F")
            counts = np.zeros((n, len(rules)), dtype=np.int64, order="F")
            decayed = np.zeros((n, len(rules)), order="F")
            capped = np.zeros((n, len(rules)), dtype=bool, order="F")
            for j, (i, rule) in enumerate(attribute):
                contributions[:, i] = np.where((hits >> j) & 1, float(rule["points"]), 0.0)
            for (i, rule), c, needed in zip(events, event_code, event_bits, strict=True):
                rows_of_type = order[bounds[c] : bounds[c + 1]]
                a = age[rows_of_type]
                matched = a <= rule["window_days"]
                for b in needed:
                    matched &= ((bits[rows_of_type] >> b) & 1).astype(bool)
                who = lead_of[rows_of_type][matched]
                counts[:, i] = np.bincount(who, minlength=n)
                if rule.get("half_life_days"):
                    weights = np.power(0.5, a[matched] / rule["half_life_days"])
                    decayed[:, i] = np.bincount(who, weights=weights, minlength=n)
                else:
                    decayed[:, i] = counts[:, i]
                value = rule["points"] * decayed[:, i]
                if rule.get("cap") is not None:
                    limit = abs(rule["cap"])
                    capped[:, i] = np.abs(value) > limit
                    value = np.clip(value, -limit, limit)
                contributions[:, i] = value
            if inactivity:
                last = np.full(n, -np.inf)
                np.maximum.at(last, lead_of, epoch)
                idle = (now - np.where(np.isneginf(last), created, last)) / SECONDS_PER_DAY
                for i, rule in inactivity:
                    contributions[:, i] = np.where(idle >= rule["days"], float(rule["points"]), 0.0)
            applies = (rule_persona[None, :] == 0) | (rule_persona[None, :] == persona[:, None])
            contributions *= applies
            capped &= applies
            total = np.zeros(n)
            for i in range(len(rules)):
                total += contributions[:, i]
            scores = np.clip(np.sign(total) * np.floor(np.abs(total) + 0.5 + 1e-9), floor, ceiling)
            band = np.full(n, "", dtype=object)
            names = np.array(["", *persona_names], dtype=object)
            scope_of = np.array(
                [None, *[p if p in scopes else None for p in persona_names]], dtype=object
            )[persona]
            for scope, (minimum, band_names) in scopes.items():
                who = np.flatnonzero(scope_of == scope)
                position = np.searchsorted(minimum, scores[who], side="right") - 1
                band[who[position >= 0]] = band_names[position[position >= 0]]

            # The breakdown: entries in lead order, then rule order, joined per lead.
            nonzero = contributions != 0
            per_lead = nonzero.sum(axis=1)
            slots = np.zeros((n, len(rules)), dtype=np.int64)
            slots[nonzero] = np.arange(int(per_lead.sum()))  # row-major: lead, then rule
            entries: list[str] = [""] * int(per_lead.sum())
            points = np.round(contributions, 2)
            for i, rule in enumerate(rules):
                who = np.flatnonzero(nonzero[:, i])
                if not who.shape[0]:
                    continue
                head, tail = heads[i], tails[i]
                if rule["kind"] == "event":
                    rendered = [
                        f'{head}{p},"count":{c},"decayed_sum":{d},"capped":{"true" if x else "false"}{tail}'
                        for p, c, d, x in zip(
                            points[who, i].tolist(),
                            counts[who, i].tolist(),
                            np.round(decayed[who, i], 4).tolist(),
                            capped[who, i].tolist(),
                            strict=True,
                        )
                    ]
                else:
                    rendered = [f"{head}{p}{tail}" for p in points[who, i].tolist()]
                for slot, text in zip(slots[who, i].tolist(), rendered, strict=True):
                    entries[slot] = text
            ends = np.cumsum(per_lead).tolist()
            starts = [0, *ends[:-1]]
            breakdowns = [
                "[" + ",".join(entries[a:b]) + "]" for a, b in zip(starts, ends, strict=True)
            ]
            if escape:  # COPY's text format reads a backslash as an escape
                breakdowns = [text.replace("\\", "\\\\") for text in breakdowns]
            t2 = time.perf_counter()
            buffer = "".join(
                f"{i}\t{int(s)}\t{b}\t{names[p]}\t{e}\n"
                for i, s, b, p, e in zip(
                    ids.tolist(), scores.tolist(), band, persona.tolist(), breakdowns, strict=True
                )
            )
            with cursor.copy("COPY floor_staging FROM STDIN") as copy:
                copy.write(buffer)
            cursor.execute("ANALYZE floor_staging (id)")
            cursor.execute(
                "UPDATE scoring_lead l SET score = f.score, band = f.band, persona = f.persona, "
                "breakdown = f.breakdown, scored_at = now() FROM floor_staging f "
                f"WHERE l.id = f.id AND l.id BETWEEN {int(ids[0])} AND {int(ids[-1])}"
            )
            t3 = time.perf_counter()
        timings["read"] += t1 - t0
        timings["score"] += t2 - t1
        timings["write"] += t3 - t2
        return timings

    # Chunks side by side, as the product's inline run does (`scoring.threads.in_threads`);
    # the parts are summed over the threads, the total is the wall time.
    started = time.perf_counter()
    parts = in_threads(
        list(range(low, high + 1, chunk_size)), rescore_chunk, workers=INLINE_THREADS, name="floor"
    )
    timings = {key: sum(part[key] for part in parts) for key in ("read", "score", "write")}
    timings["total"] = time.perf_counter() - started
    return timings
