"""Set-based event ingest: the write behind POST /api/v1/events/ and `import_events`.

Contract of :func:`events_ingest`:

- Each event names its lead by ``email`` or by ``(lead_source, lead_external_id)``. Leads are
  resolved with one query per batch (PostgreSQL; chunks of 2,000 on SQLite). An identity that
  is unknown falls back to the email when one is given (and the identity is then recorded on
  that lead); otherwise the event is rejected. An unknown email creates a lead (in bulk,
  conflict-ignoring, so two batches creating the same lead at once create it once).
- ``(source, external_id)`` is the idempotency key. Events are written with one
  ``INSERT ... ON CONFLICT DO NOTHING`` (``RETURNING`` on PostgreSQL gives the truly inserted
  rows), so a batch sent twice, or two identical batches arriving at the same moment, store
  each event once; the later copies count as ``duplicate``.
- With ``atomic=True`` nothing is written when any event is rejected.
- After the commit, ``request_rescore`` gets every lead that received a new event or was
  created. Rescoring requests are recorded in the database (PendingRescore) before the broker
  is used, so a broker outage loses nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from leadscoring.db import is_postgres
from scoring import strict_json
from scoring.models import Event, Identity, Lead, normalise_email
from scoring.services.leads import _request_rescore, lock_lead_writes

logger = logging.getLogger(__name__)

DEFAULT_SOURCE = "api"
_SQLITE_CHUNK = 2000


@dataclass(frozen=True)
class EventInput:
    """One validated event (``occurred_at`` aware, ``properties`` a JSON object)."""

    external_id: str
    event_type: str
    occurred_at: dt.datetime
    source: str = DEFAULT_SOURCE
    properties: dict[str, Any] = field(default_factory=dict)
    email: str | None = None
    lead_source: str | None = None
    lead_external_id: str | None = None


@dataclass
class IngestResult:
    accepted: int = 0
    duplicate: int = 0
    # (position in the input, reasons) for events that could not be stored.
    rejected: list[tuple[int, list[str]]] = field(default_factory=list)
    lead_ids: list[int] = field(default_factory=list)
    leads_created: int = 0


MAX_EVENTS_PER_REQUEST = 10_000
# Events dated further ahead than this are a client clock or format bug, not behaviour.
FUTURE_TOLERANCE = dt.timedelta(days=1)
# Nothing a lead did predates 1970; a year-1 date with a +14:00 offset cannot even be turned
# into UTC, and stored it broke every page that showed the lead.
EARLIEST_EVENT = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def parse_timestamp(value: Any, *, naive_tz: dt.tzinfo | None = None) -> dt.datetime:
    """An ISO 8601 date-time (or date, meaning midnight). One without a time zone is read in
    ``naive_tz`` when given (file imports) and refused otherwise (the API); raises
    ValueError with a readable reason."""
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time string")
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        if naive_tz is None:
            raise ValueError(f"{value!r} has no time zone (add Z or +00:00)")
        parsed = parsed.replace(tzinfo=naive_tz)
    try:
        parsed.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError(f"{value!r} is out of range") from None
    return parsed


def _text(
    item: dict, name: str, reasons: list[str], *, max_length: int, required: bool = False
) -> str | None:
    value = item.get(name)
    if value is None or value == "":
        if required:
            reasons.append(f"{name}: this field is required")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        reasons.append(f"{name}: must be a string")
        return None
    value = str(value).strip()
    if not value:
        if required:
            reasons.append(f"{name}: this field is required")
        return None
    try:
        strict_json.check_text(value, name)
    except strict_json.StrictJSONError as exc:
        reasons.append(str(exc))
        return None
    if len(value) > max_length:
        reasons.append(f"{name}: at most {max_length} characters")
        return None
    return value


def parse_event_item(
    item: Any,
    *,
    now: dt.datetime,
    default_source: str = DEFAULT_SOURCE,
    naive_tz: dt.tzinfo | None = None,
) -> tuple[EventInput | None, list[str]]:
    """Validate one raw event (API item or import row): (the event, []) or (None, reasons).
    Reasons read ``field: problem``."""
    if not isinstance(item, dict):
        return None, ["each event must be a JSON object"]
    reasons: list[str] = []
    external_id = _text(item, "external_id", reasons, max_length=255, required=True)
    source = _text(item, "source", reasons, max_length=40) or default_source
    event_type = _text(item, "event_type", reasons, max_length=80, required=True)
    occurred_at = None
    if item.get("occurred_at") in (None, ""):
        reasons.append("occurred_at: this field is required")
    else:
        try:
            occurred_at = parse_timestamp(item["occurred_at"], naive_tz=naive_tz)
        except ValueError as exc:
            reasons.append(f"occurred_at: {exc}")
        else:
            if occurred_at > now + FUTURE_TOLERANCE:
                reasons.append("occurred_at: is more than a day in the future")
                occurred_at = None
            elif occurred_at < EARLIEST_EVENT:
                reasons.append("occurred_at: is before 1970")
                occurred_at = None
    email = _text(item, "email", reasons, max_length=254)
    if email is not None and not _EMAIL.match(email):
        reasons.append(f"email: {email!r} is not an email address")
    lead_source = _text(item, "lead_source", reasons, max_length=40)
    lead_external_id = _text(item, "lead_external_id", reasons, max_length=255)
    if lead_source and not lead_external_id:
        reasons.append("lead_external_id: required with lead_source")
    if (
        email is None
        and lead_external_id is None
        and not any(r.startswith(("email:", "lead_")) for r in reasons)
    ):
        reasons.append("lead: give email or lead_source + lead_external_id")
    properties = item.get("properties")
    if properties is None:
        properties = {}
    elif not isinstance(properties, dict):
        reasons.append("properties: must be a JSON object")
    else:
        try:
            strict_json.check(properties)
        except strict_json.StrictJSONError as exc:
            reasons.append(f"properties: {exc}")
    if reasons:
        return None, reasons
    return (
        EventInput(
            external_id=external_id,
            event_type=event_type,
            occurred_at=occurred_at,
            source=source,
            properties=properties,
            email=email,
            lead_source=lead_source,
            lead_external_id=lead_external_id,
        ),
        [],
    )


def events_ingest(events: Sequence[EventInput], *, atomic: bool = False) -> IngestResult:
    """Store a batch of validated events; see the module docstring for the contract."""
    result = IngestResult()
    if not events:
        return result
    with transaction.atomic():
        by_identity, by_email = _resolve(events)
        lead_refs: list[int | str | None] = []
        missing_emails: set[str] = set()
        new_identities: dict[tuple[str, str], str] = {}
        for index, event in enumerate(events):
            email = normalise_email(event.email)
            key = (
                (event.lead_source or event.source, event.lead_external_id)
                if event.lead_external_id
                else None
            )
            lead_id = by_identity.get(key) if key else None
            if lead_id is None and email:
                lead_id = by_email.get(email)
                if lead_id is None:
                    missing_emails.add(email)
                if key:
                    new_identities[key] = email
                lead_refs.append(lead_id if lead_id is not None else email)
                continue
            if lead_id is None:
                source, external_id = key if key else ("", "")
                result.rejected.append(
                    (index, [f"lead_external_id: no lead with identity {source}:{external_id}"])
                )
            lead_refs.append(lead_id)
        if atomic and result.rejected:
            return result
        if missing_emails or new_identities:
            lock_lead_writes()
            if missing_emails:
                result.leads_created = _create_leads(sorted(missing_emails), by_email)
            Identity.objects.bulk_create(
                [
                    Identity(source=s, external_id=e, lead_id=by_email[email])
                    for (s, e), email in sorted(new_identities.items())
                ],
                ignore_conflicts=True,
            )
        rows: dict[tuple[str, str], tuple[int, EventInput]] = {}
        for event, ref in zip(events, lead_refs, strict=True):
            if ref is None:
                continue
            lead_id = by_email[ref] if isinstance(ref, str) else ref
            # A key repeated inside the batch is stored once; the repeats are duplicates.
            rows.setdefault((event.source, event.external_id), (lead_id, event))
        inserted_leads = _insert_events(rows)
        result.accepted = len(inserted_leads)
        result.duplicate = len(events) - len(result.rejected) - result.accepted
        new_lead_ids = {by_email[e] for e in missing_emails}
        result.lead_ids = sorted(set(inserted_leads) | new_lead_ids)
        _request_rescore(result.lead_ids)
    logger.info(
        "events.ingested accepted=%s duplicate=%s rejected=%s leads_created=%s",
        result.accepted,
        result.duplicate,
        len(result.rejected),
        result.leads_created,
    )
    return result


def _resolve(
    events: Sequence[EventInput],
) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """(identity -> lead id, email -> lead id) for every lead the batch names."""
    keys = sorted(
        {(e.lead_source or e.source, e.lead_external_id) for e in events if e.lead_external_id}
    )
    emails = sorted({email for e in events if (email := normalise_email(e.email))})
    by_identity: dict[tuple[str, str], int] = {}
    by_email: dict[str, int] = {}
    if not keys and not emails:
        return by_identity, by_email
    with connection.cursor() as cursor:
        if is_postgres():
            cursor.execute(
                "SELECT 'i', i.source, i.external_id, i.lead_id FROM scoring_identity i "
                "JOIN unnest(%s::text[], %s::text[]) AS k(s, e) "
                "ON i.source = k.s AND i.external_id = k.e "
                "UNION ALL "
                "SELECT 'e', l.email, NULL, l.id FROM scoring_lead l "
                "WHERE l.email = ANY(%s::text[])",
                [[k[0] for k in keys], [k[1] for k in keys], emails],
            )
            rows = cursor.fetchall()
        else:
            rows = []
            for start in range(0, max(len(keys), len(emails)), _SQLITE_CHUNK):
                key_chunk = keys[start : start + _SQLITE_CHUNK]
                email_chunk = emails[start : start + _SQLITE_CHUNK]
                parts, params = [], []
                if key_chunk:
                    values = ", ".join(["(%s, %s)"] * len(key_chunk))
                    parts.append(
                        "SELECT 'i', source, external_id, lead_id FROM scoring_identity "
                        f"WHERE (source, external_id) IN (VALUES {values})"
                    )
                    params.extend(x for k in key_chunk for x in k)
                if email_chunk:
                    marks = ", ".join(["%s"] * len(email_chunk))
                    parts.append(
                        f"SELECT 'e', email, NULL, id FROM scoring_lead WHERE email IN ({marks})"
                    )
                    params.extend(email_chunk)
                cursor.execute(" UNION ALL ".join(parts), params)
                rows.extend(cursor.fetchall())
    for kind, a, b, lead_id in rows:
        if kind == "i":
            by_identity[(a, b)] = lead_id
        else:
            by_email[a] = lead_id
    return by_identity, by_email


def _create_leads(emails: Sequence[str], by_email: dict[str, int]) -> int:
    """Create a lead per unknown email (conflict-ignoring) and fill ``by_email``; returns how
    many were new (a concurrent batch may have created some of them first)."""
    now = timezone.now()
    Lead.objects.bulk_create(
        [Lead(email=email, created_at=now) for email in emails],
        ignore_conflicts=True,
        batch_size=1000,
    )
    created = 0
    for start in range(0, len(emails), _SQLITE_CHUNK):
        chunk = emails[start : start + _SQLITE_CHUNK]
        for email, lead_id, created_at in Lead.objects.filter(email__in=chunk).values_list(
            "email", "id", "created_at"
        ):
            by_email[email] = lead_id
            created += created_at == now
    return created


def _insert_events(rows: dict[tuple[str, str], tuple[int, EventInput]]) -> list[int]:
    """Insert the events, skipping keys already stored; returns the lead id of every row that
    was truly inserted."""
    if not rows:
        return []
    now = timezone.now()
    keys = sorted(rows)  # a stable order keeps concurrent identical batches from deadlocking
    if is_postgres():
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO scoring_event "
                "(source, external_id, lead_id, event_type, occurred_at, properties, received_at) "
                "SELECT s, e, l, t, o, p::jsonb, %s FROM unnest("
                "%s::text[], %s::text[], %s::bigint[], %s::text[], %s::timestamptz[], %s::text[]"
                ") AS u(s, e, l, t, o, p) "
                "ON CONFLICT (source, external_id) DO NOTHING RETURNING lead_id",
                [
                    now,
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                    [rows[k][0] for k in keys],
                    [rows[k][1].event_type for k in keys],
                    [rows[k][1].occurred_at for k in keys],
                    [json.dumps(rows[k][1].properties) for k in keys],
                ],
            )
            return [row[0] for row in cursor.fetchall()]
    # Generic path (SQLite): writers are serialised (IMMEDIATE transactions), so the keys
    # already stored can be read first and the rest inserted.
    existing: set[tuple[str, str]] = set()
    by_source: dict[str, list[str]] = {}
    for source, external_id in keys:
        by_source.setdefault(source, []).append(external_id)
    for source, ids in by_source.items():
        for start in range(0, len(ids), _SQLITE_CHUNK):
            existing.update(
                Event.objects.filter(
                    source=source, external_id__in=ids[start : start + _SQLITE_CHUNK]
                ).values_list("source", "external_id")
            )
    new = [
        Event(
            source=k[0],
            external_id=k[1],
            lead_id=rows[k][0],
            event_type=rows[k][1].event_type,
            occurred_at=rows[k][1].occurred_at,
            properties=rows[k][1].properties,
            received_at=now,
        )
        for k in keys
        if k not in existing
    ]
    Event.objects.bulk_create(new, batch_size=1000, ignore_conflicts=True)
    return [event.lead_id for event in new]
