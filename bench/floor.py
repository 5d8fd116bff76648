"""The floor: the same bulk rescore written by hand for the benchmark's rule set, to measure
how close the product gets to what PostgreSQL + NumPy can do.

Per chunk: one query reads each lead's persona and attribute-rule hits (CASE expressions), one
aggregation computes every behaviour rule's decayed sum, NumPy applies points, caps, rounding,
clamping and bands, and COPY into a temp table + one UPDATE ... FROM writes score, band, persona
and a breakdown back. It supports just the operators the benchmark's rule set uses."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import numpy as np
from django.db import connection, transaction

from scoring.engine import FREE_EMAIL_DOMAINS


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
        return f"(CASE WHEN split_part(lower(email), '@', 2) IN ({free}) THEN 'free' ELSE 'business' END)"
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


def rescore_floor(document: dict[str, Any], chunk_size: int = 20000) -> dict[str, float]:
    personas = sorted(document["personas"], key=lambda p: p["priority"])
    persona_names = [p["name"] for p in personas]
    persona_sql = (
        "CASE "
        + " ".join(
            f"WHEN {' AND '.join(_predicate(c['field'], c['op'], c.get('value')) for c in p['match'])}"
            f" THEN {i + 1}"
            for i, p in enumerate(personas)
        )
        + " ELSE 0 END"
    )
    rules = document["rules"]
    attribute = [(i, r) for i, r in enumerate(rules) if r["kind"] == "attribute"]
    events = [(i, r) for i, r in enumerate(rules) if r["kind"] == "event"]
    inactivity = [(i, r) for i, r in enumerate(rules) if r["kind"] == "inactivity"]
    hits_sql = ", ".join(
        f"({_predicate(r['field'], r['op'], r.get('value'))}) IS TRUE" for _, r in attribute
    )
    aggregates = []
    for _, rule in events:
        condition = f"event_type = {_literal(rule['event_type'])} AND age <= {rule['window_days']}"
        for key, value in (rule.get("where") or {}).items():
            condition += f" AND properties @> '{json.dumps({key: value})}'::jsonb"
        term = (
            "1.0"
            if not rule.get("half_life_days")
            else f"power(0.5, age / {rule['half_life_days']})"
        )
        aggregates.append(f"coalesce(sum({term}) FILTER (WHERE {condition}), 0)")
    bands = sorted(
        (b for b in document["bands"] if not b.get("persona")), key=lambda b: b["min_score"]
    )
    band_min = np.array([b["min_score"] for b in bands])
    band_names = np.array([b["name"] for b in bands], dtype=object)
    rule_persona = np.array(
        [0 if not r.get("persona") else persona_names.index(r["persona"]) + 1 for r in rules]
    )
    floor, ceiling = document.get("floor", 0), document.get("ceiling", 100)
    timings = {"read": 0.0, "score": 0.0, "write": 0.0}
    now = time.time()
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(id), max(id) FROM scoring_lead")
        low, high = cursor.fetchone()
    for start in range(low, high + 1, chunk_size):
        end = start + chunk_size - 1
        with transaction.atomic(), connection.cursor() as cursor:
            t0 = time.perf_counter()
            cursor.execute(
                f"SELECT id, {persona_sql}, date_part('epoch', created_at), {hits_sql} "
                "FROM scoring_lead WHERE id BETWEEN %s AND %s ORDER BY id",
                [start, end],
            )
            lead_rows = cursor.fetchall()
            if not lead_rows:
                continue
            ids = np.array([row[0] for row in lead_rows], dtype=np.int64)
            persona = np.array([row[1] for row in lead_rows])
            created = np.array([row[2] for row in lead_rows], dtype=np.float64)
            hits = np.array([row[3:] for row in lead_rows], dtype=bool).reshape(len(ids), -1)
            cursor.execute(
                f"SELECT lead_id, {', '.join(aggregates)}, max(date_part('epoch', occurred_at)) FROM ("
                "SELECT lead_id, event_type, properties, occurred_at, "
                "(%s - date_part('epoch', occurred_at)) / 86400.0 AS age FROM scoring_event "
                "WHERE lead_id BETWEEN %s AND %s AND occurred_at <= to_timestamp(%s)) ev "
                "GROUP BY lead_id",
                [now, start, end, now],
            )
            event_rows = cursor.fetchall()
            t1 = time.perf_counter()
            decayed = np.zeros((len(ids), len(events)))
            last = created.copy()
            if event_rows:
                index = np.searchsorted(ids, np.array([row[0] for row in event_rows]))
                values = np.array([row[1:-1] for row in event_rows], dtype=np.float64)
                decayed[index] = values
                last[index] = np.array([row[-1] or np.nan for row in event_rows], dtype=np.float64)
                last = np.where(np.isnan(last), created, last)
            contributions = np.zeros((len(ids), len(rules)))
            for j, (i, rule) in enumerate(attribute):
                contributions[:, i] = hits[:, j] * rule["points"]
            for j, (i, rule) in enumerate(events):
                value = rule["points"] * decayed[:, j]
                if rule.get("cap") is not None:
                    value = np.clip(value, -abs(rule["cap"]), abs(rule["cap"]))
                contributions[:, i] = value
            idle = (now - last) / 86400.0
            for i, rule in inactivity:
                contributions[:, i] = (idle >= rule["days"]) * rule["points"]
            applies = (rule_persona == 0)[None, :] | (rule_persona[None, :] == persona[:, None])
            contributions *= applies
            total = contributions.sum(axis=1)
            scores = np.clip(np.sign(total) * np.floor(np.abs(total) + 0.5), floor, ceiling)
            band = band_names[np.maximum(np.searchsorted(band_min, scores, side="right") - 1, 0)]
            rows_nz, cols_nz = np.nonzero(contributions)
            per_lead: list[list] = [[] for _ in range(len(ids))]
            for r, c in zip(rows_nz.tolist(), cols_nz.tolist(), strict=True):
                per_lead[r].append({"rule": c, "points": round(float(contributions[r, c]), 2)})
            names = ["", *persona_names]
            t2 = time.perf_counter()
            buffer = "".join(
                f"{i}\t{int(s)}\t{b}\t{names[p]}\t{json.dumps(e)}\n"
                for i, s, b, p, e in zip(
                    ids.tolist(), scores.tolist(), band, persona.tolist(), per_lead, strict=True
                )
            )
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS floor_buffer (id bigint, score int, band text, "
                "persona text, breakdown jsonb) ON COMMIT DROP"
            )
            with cursor.cursor.copy("COPY floor_buffer FROM STDIN") as copy:
                copy.write(buffer)
            cursor.execute("ANALYZE floor_buffer")
            cursor.execute(
                "UPDATE scoring_lead l SET score = f.score, band = f.band, persona = f.persona, "
                "breakdown = f.breakdown, scored_at = now() FROM floor_buffer f WHERE l.id = f.id "
                "AND l.id BETWEEN %s AND %s",
                [int(ids[0]), int(ids[-1])],
            )
            t3 = time.perf_counter()
            timings["read"] += t1 - t0
            timings["score"] += t2 - t1
            timings["write"] += t3 - t2
    timings["total"] = sum(timings.values())
    if math.isnan(timings["total"]):
        raise RuntimeError("floor timing failed")
    return timings
