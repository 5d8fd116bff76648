"""Lead writes: upsert by identity or email, set-based bulk upsert, and merge by email.

Identity rules (DESIGN §3):

- A lead is found by its identity ``(source, external_id)`` first, then by its normalised
  email (trimmed, lower-cased). Emails are always stored normalised.
- When the identity points at one lead and the email at another, the two are the same person:
  they are merged (the older lead, i.e. the lower id, survives), and the upsert then applies to
  the survivor. Identities, events and feedback follow the survivor; a ``LeadMerge`` row records
  what moved, and the merged lead is deleted.
- A value that is ``None`` (or absent) never erases what is stored: "missing" is not "empty".
  Custom attributes are merged key by key into the stored ones.
- Setting ``converted_at`` without a ``lifecycle_stage`` makes the lead a customer.

The bulk path is set-based: per chunk, one query resolves identities, one reads the candidate
leads, then one statement inserts the new leads (COPY on PostgreSQL for large chunks), one
inserts the identities (conflict-ignoring) and one updates the changed leads. Only merges,
which are rare, are done lead by lead.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from django.db import connection, transaction
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from leadscoring.db import advisory_xact_lock, copy_in, is_postgres, temp_table
from scoring.models import (
    FUNNEL_STAGES,
    Event,
    Feedback,
    Identity,
    Lead,
    LeadMerge,
    LifecycleStage,
    normalise_email,
)

logger = logging.getLogger(__name__)

#: Lead columns an upsert may write (besides ``attributes``). ``owner_id`` is a user id.
LEAD_FIELDS: tuple[str, ...] = (
    "email",
    "first_name",
    "last_name",
    "title",
    "company",
    "employees",
    "industry",
    "country",
    "source",
    "owner_id",
    "lifecycle_stage",
    "created_at",
    "mql_at",
    "sql_at",
    "opportunity_at",
    "converted_at",
    "disqualified_at",
    "lost_at",
    "revenue",
)
_STAGE_TIMES = ("created_at", "mql_at", "sql_at", "opportunity_at", "converted_at")
_VALID_STAGES = frozenset(LifecycleStage.values)

# Above this many new or changed leads in one chunk, PostgreSQL writes go through COPY.
COPY_THRESHOLD = 500
# Every writer of leads takes this lock on PostgreSQL, so two concurrent upserts of the same
# new email wait for each other instead of one failing on the unique constraint.
_LEAD_WRITE_LOCK = zlib.crc32(b"scoring.lead.write")

Status = Literal["created", "updated", "unchanged", "rejected"]


@dataclass(frozen=True)
class LeadUpsert:
    """One lead as a source gives it. ``values`` holds the LEAD_FIELDS the source provided,
    already typed (datetimes aware); ``None`` means "unknown, keep what is stored"."""

    source: str | None = None
    external_id: str | None = None
    values: Mapping[str, Any] = field(default_factory=dict)
    attributes: Mapping[str, Any] = field(default_factory=dict)
    # Attribute keys to delete from the stored ones (a re-import whose mapping drops them).
    remove_attributes: tuple[str, ...] = ()


@dataclass
class UpsertOutcome:
    status: Status
    lead_id: int | None = None
    reason: str = ""


@dataclass
class BulkUpsertResult:
    """Per-record outcomes in input order plus the totals."""

    outcomes: list[UpsertOutcome]
    merges: int = 0

    def count(self, status: Status) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status == status)

    @property
    def changed_lead_ids(self) -> list[int]:
        return sorted(
            {
                o.lead_id
                for o in self.outcomes
                if o.status in ("created", "updated") and o.lead_id is not None
            }
        )


def lock_lead_writes() -> None:
    """Serialise lead writers on PostgreSQL until the end of the current transaction (SQLite
    serialises writers by itself)."""
    advisory_xact_lock(_LEAD_WRITE_LOCK)


def _request_rescore(lead_ids: Iterable[int]) -> None:
    ids = sorted(set(lead_ids))
    if ids:
        from scoring.services.rescore import request_rescore

        request_rescore(ids)


# --------------------------------------------------------------------------------------------
# Single upsert (API) and bulk upsert (imports, syncs)
# --------------------------------------------------------------------------------------------


def lead_upsert(record: LeadUpsert) -> UpsertOutcome:
    """Upsert one lead; see the module docstring. Returns its outcome (``rejected`` with a
    reason when the record has neither identity nor email)."""
    return leads_bulk_upsert([record]).outcomes[0]


def leads_bulk_upsert(records: Sequence[LeadUpsert], *, rescore: bool = True) -> BulkUpsertResult:
    """Upsert a chunk of leads in one transaction and return one outcome per record, in order.

    A record without identity and email is rejected; so is one whose email is claimed by
    another record of the same chunk that resolves to a different lead. Leads that were
    created or changed are handed to ``request_rescore`` after the commit (unless
    ``rescore=False``)."""
    records = [_normalised(record) for record in records]
    with transaction.atomic():
        lock_lead_writes()
        found = _lookup(records)
        merges = _merge_conflicting(records, found)
        if merges:
            found = _lookup(records)
        result = _upsert_resolved(records, found)
        result.merges = merges
        if rescore:
            _request_rescore(result.changed_lead_ids)
    return result


def _normalised(record: LeadUpsert) -> LeadUpsert:
    values = dict(record.values)
    if "email" in values:
        values["email"] = normalise_email(values["email"])
    external_id = (record.external_id or "").strip() or None
    source = (record.source or "").strip() or None
    return LeadUpsert(
        source=source,
        external_id=external_id,
        values=values,
        attributes=dict(record.attributes),
        remove_attributes=tuple(record.remove_attributes),
    )


def _identity_key(record: LeadUpsert) -> tuple[str, str] | None:
    if record.external_id and record.source:
        return (record.source, record.external_id)
    return None


@dataclass
class _Lookup:
    by_identity: dict[tuple[str, str], int]
    by_email: dict[str, int]
    rows: dict[int, dict[str, Any]]  # lead id -> stored LEAD_FIELDS + attributes


def _lookup(records: Sequence[LeadUpsert]) -> _Lookup:
    """Everything the chunk needs to know about stored leads, in two queries: the identities
    it names, then every lead those identities or its emails point at. PostgreSQL gets the
    keys as arrays (one parameter each), which keeps 5,000-key queries cheap to send."""
    keys = sorted({key for r in records if (key := _identity_key(r))})
    emails = sorted({r.values.get("email") for r in records} - {None})
    by_identity: dict[tuple[str, str], int] = {}
    if keys:
        if is_postgres():
            identities = Identity.objects.filter(
                id__in=RawSQL(
                    "SELECT i.id FROM scoring_identity i JOIN unnest(%s::text[], %s::text[]) "
                    "AS k(s, e) ON i.source = k.s AND i.external_id = k.e",
                    ([k[0] for k in keys], [k[1] for k in keys]),
                )
            )
        else:
            condition = Q()
            by_source: dict[str, list[str]] = {}
            for source, external_id in keys:
                by_source.setdefault(source, []).append(external_id)
            for source, ids in by_source.items():
                condition |= Q(source=source, external_id__in=ids)
            identities = Identity.objects.filter(condition)
        for source, external_id, lead_id in identities.values_list(
            "source", "external_id", "lead_id"
        ):
            by_identity[(source, external_id)] = lead_id
    rows: dict[int, dict[str, Any]] = {}
    ids = sorted(set(by_identity.values()))
    if ids or emails:
        if is_postgres():
            condition = Q(id__in=RawSQL("SELECT unnest(%s::bigint[])", (ids,))) | Q(
                email__in=RawSQL("SELECT unnest(%s::text[])", (emails,))
            )
        else:
            condition = Q(id__in=ids) | Q(email__in=emails)
        for row in Lead.objects.filter(condition).values("id", "attributes", *LEAD_FIELDS):
            rows[row.pop("id")] = row
    wanted = set(emails)
    by_email = {row["email"]: lead_id for lead_id, row in rows.items() if row["email"] in wanted}
    return _Lookup(by_identity, by_email, rows)


def _merge_conflicting(records: Sequence[LeadUpsert], found: _Lookup) -> int:
    """Merge the leads that one record says are the same person (its identity points at one
    lead, its email at another). Rare, so done pair by pair."""
    by_identity, by_email = found.by_identity, found.by_email
    pairs: set[tuple[int, int]] = set()
    for record in records:
        key = _identity_key(record)
        email = record.values.get("email")
        if key and email and key in by_identity and email in by_email:
            a, b = by_identity[key], by_email[email]
            if a != b:
                pairs.add((min(a, b), max(a, b)))
    merged: dict[int, int] = {}
    for survivor_id, other_id in sorted(pairs):
        while survivor_id in merged:
            survivor_id = merged[survivor_id]
        while other_id in merged:
            other_id = merged[other_id]
        if survivor_id == other_id:
            continue
        survivor_id, other_id = min(survivor_id, other_id), max(survivor_id, other_id)
        lead_merge(Lead.objects.get(pk=survivor_id), Lead.objects.get(pk=other_id))
        merged[other_id] = survivor_id
    return len(merged)


def _apply(state: dict[str, Any], record: LeadUpsert) -> None:
    """Apply one record's known values onto a lead's state (in place)."""
    for name, value in record.values.items():
        if name in LEAD_FIELDS and value is not None and value != "":
            state[name] = value
    if record.values.get("converted_at") is not None and not record.values.get("lifecycle_stage"):
        state["lifecycle_stage"] = LifecycleStage.CUSTOMER
    if record.attributes or record.remove_attributes:
        attributes = dict(state.get("attributes") or {})
        for key, value in record.attributes.items():
            if value is not None and value != "":
                attributes[key] = value
        for key in record.remove_attributes:
            attributes.pop(key, None)
        state["attributes"] = attributes


def _validate_values(record: LeadUpsert) -> str:
    stage = record.values.get("lifecycle_stage")
    if stage and stage not in _VALID_STAGES:
        return f"lifecycle_stage {stage!r} is not one of {', '.join(sorted(_VALID_STAGES))}"
    for name in (*_STAGE_TIMES, "disqualified_at", "lost_at"):
        value = record.values.get(name)
        if value is not None and (not isinstance(value, dt.datetime) or timezone.is_naive(value)):
            return f"{name} must be a date-time with a time zone"
    return ""


def _state_template() -> dict[str, Any]:
    """A new lead's state (model defaults), built once per chunk: instantiating a model per
    row costs more than the rest of the row's work."""
    lead = Lead()
    state = {name: getattr(lead, name) for name in LEAD_FIELDS}
    state["attributes"] = {}
    return state


def _upsert_resolved(records: Sequence[LeadUpsert], found: _Lookup) -> BulkUpsertResult:
    by_identity, by_email, original = found.by_identity, found.by_email, found.rows
    working: dict[int, dict[str, Any]] = {}
    # New leads are referred to by negative placeholders until they get real ids.
    new_states: dict[int, dict[str, Any]] = {}
    email_owner: dict[str, int] = dict(by_email)
    identity_owner: dict[tuple[str, str], int] = dict(by_identity)
    new_identities: dict[tuple[str, str], int] = {}
    lead_email: dict[int, str | None] = {ref: email for email, ref in by_email.items()}
    for lead_id, row in original.items():
        lead_email[lead_id] = row["email"]
    outcomes: list[UpsertOutcome] = []
    template = _state_template()

    for record in records:
        key = _identity_key(record)
        email = record.values.get("email")
        if key is None and email is None:
            outcomes.append(UpsertOutcome("rejected", reason="needs an email or an external id"))
            continue
        problem = _validate_values(record)
        if problem:
            outcomes.append(UpsertOutcome("rejected", reason=problem))
            continue
        ref = identity_owner.get(key) if key else None
        if ref is None and email is not None:
            ref = email_owner.get(email)
        if ref is not None and email is not None and email_owner.get(email, ref) != ref:
            outcomes.append(
                UpsertOutcome("rejected", reason=f"email {email} belongs to another lead")
            )
            continue
        if ref is None:
            ref = -(len(new_states) + 1)
            state = {**template, "attributes": {}}
            _apply(state, record)
            new_states[ref] = state
            status: Status = "created"
        else:
            state = new_states[ref] if ref < 0 else working.setdefault(ref, dict(original[ref]))
            before = dict(state)
            _apply(state, record)
            status = "unchanged" if state == before else "updated"
        old_email = lead_email.get(ref)
        if old_email is not None and old_email != state["email"]:
            email_owner.pop(old_email, None)
        if state["email"]:
            email_owner[state["email"]] = ref
        lead_email[ref] = state["email"]
        if key and key not in identity_owner:
            identity_owner[key] = ref
            new_identities[key] = ref
        outcomes.append(UpsertOutcome(status, lead_id=ref))

    changed = {lead_id: state for lead_id, state in working.items() if state != original[lead_id]}
    id_map = _insert_leads(new_states)
    _update_leads(changed)
    _insert_identities(
        [
            (source, external_id, id_map.get(ref, ref))
            for (source, external_id), ref in new_identities.items()
        ]
    )
    for outcome in outcomes:
        if outcome.lead_id is not None and outcome.lead_id < 0:
            outcome.lead_id = id_map[outcome.lead_id]
    # A lead touched twice in one chunk whose net effect is nothing is unchanged.
    for outcome in outcomes:
        if (
            outcome.status == "updated"
            and outcome.lead_id in working
            and (outcome.lead_id not in changed)
        ):
            outcome.status = "unchanged"
    return BulkUpsertResult(outcomes=outcomes)


def lead_update(lead: Lead, record: LeadUpsert) -> tuple[Lead, Status]:
    """Apply a record's values to a known lead (the API's PUT/PATCH). When the new email
    belongs to another lead the two are merged first (lower id survives) and the survivor is
    returned. A new identity in the record is attached to the lead. Returns the lead and
    ``updated`` or ``unchanged``."""
    record = _normalised(record)
    with transaction.atomic():
        lock_lead_writes()
        email = record.values.get("email")
        if email and email != lead.email:
            other = Lead.objects.filter(email=email).exclude(pk=lead.pk).first()
            if other is not None:
                survivor, merged = sorted((lead, other), key=lambda x: x.pk)
                lead_merge(survivor, merged, reason="email changed to a known email")
                lead = Lead.objects.get(pk=survivor.pk)
        state = {name: getattr(lead, name) for name in LEAD_FIELDS}
        state["attributes"] = dict(lead.attributes or {})
        before = dict(state)
        problem = _validate_values(record)
        if problem:
            raise ValueError(problem)
        _apply(state, record)
        key = _identity_key(record)
        if key is not None:
            _insert_identities([(key[0], key[1], lead.pk)])
        if state == before:
            return lead, "unchanged"
        for name, value in state.items():
            setattr(lead, name, value)
        lead.save()
        _request_rescore([lead.pk])
    return lead, "updated"


# --------------------------------------------------------------------------------------------
# Writers: generic (Django bulk operations) and PostgreSQL COPY for large chunks
# --------------------------------------------------------------------------------------------

_LEAD_COLUMNS = [f for f in Lead._meta.concrete_fields if not f.primary_key]


def _insert_leads(new_states: dict[int, dict[str, Any]]) -> dict[int, int]:
    """Insert the new leads; returns placeholder -> real id. Large chunks on PostgreSQL take
    their ids from the sequence and go in with COPY."""
    if not new_states:
        return {}
    refs = sorted(new_states, reverse=True)  # -1, -2, ... in input order
    if is_postgres() and len(refs) >= COPY_THRESHOLD:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence('scoring_lead', 'id')) "
                "FROM generate_series(1, %s)",
                [len(refs)],
            )
            ids = [row[0] for row in cursor.fetchall()]
            defaults = _column_defaults()
            pairs = zip(refs, ids, strict=True)
            rows = ((lead_id, {**defaults, **new_states[ref]}) for ref, lead_id in pairs)
            _copy_rows(cursor, "scoring_lead", _LEAD_COLUMNS, rows)
        return dict(zip(refs, ids, strict=True))
    leads = [Lead(**new_states[ref]) for ref in refs]
    Lead.objects.bulk_create(leads, batch_size=1000)
    return {ref: lead.id for ref, lead in zip(refs, leads, strict=True)}


def _column_defaults() -> dict[str, Any]:
    """attname -> value for every stored lead column of a brand-new lead."""
    lead = Lead()
    defaults = {f.attname: getattr(lead, f.attname) for f in _LEAD_COLUMNS}
    defaults["updated_at"] = timezone.now()
    return defaults


def _copy_rows(
    cursor: Any, table: str, fields: Sequence[Any], rows: Iterable[tuple[int, dict[str, Any]]]
) -> None:
    """COPY (id, *fields) rows given as (id, attname -> value) into a table."""
    json_names = {f.attname for f in fields if f.get_internal_type() == "JSONField"}
    attnames = [f.attname for f in fields]
    with copy_in(cursor, table, ["id", *(f.column for f in fields)]) as copy:
        for lead_id, values in rows:
            copy.write_row(
                [lead_id]
                + [
                    json.dumps(values[name]) if name in json_names else values[name]
                    for name in attnames
                ]
            )


def _update_leads(changed: dict[int, dict[str, Any]]) -> None:
    if not changed:
        return
    now = timezone.now()
    fields = [*LEAD_FIELDS, "attributes", "updated_at"]
    if is_postgres() and len(changed) >= COPY_THRESHOLD:
        columns = [Lead._meta.get_field(name) for name in fields]
        names = ", ".join(f'"{c.column}"' for c in columns)
        # Types only (no NOT NULL constraints): the rows carry just the upserted columns.
        with (
            temp_table(
                "lead_update_tmp", f'AS SELECT "id", {names} FROM scoring_lead WITH NO DATA'
            ) as table,
            connection.cursor() as cursor,
        ):
            _copy_rows(
                cursor,
                table,
                columns,
                ((lead_id, {**state, "updated_at": now}) for lead_id, state in changed.items()),
            )
            assignments = ", ".join(f'"{c.column}" = t."{c.column}"' for c in columns)
            cursor.execute(
                f"UPDATE scoring_lead AS l SET {assignments} FROM {table} AS t WHERE l.id = t.id"
            )
        return
    leads = []
    for lead_id, state in changed.items():
        lead = Lead(id=lead_id, **state)
        lead.updated_at = now
        leads.append(lead)
    Lead.objects.bulk_update(leads, fields, batch_size=500)


def _insert_identities(rows: Sequence[tuple[str, str, int]]) -> None:
    """Record identities, ignoring ones that exist (a concurrent writer may have added them)."""
    if not rows:
        return
    if is_postgres():
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO scoring_identity "
                "(source, external_id, lead_id, created_at, pushed_band) "
                "SELECT s, e, l, %s, '' FROM unnest(%s::text[], %s::text[], %s::bigint[]) "
                "AS u(s, e, l) ON CONFLICT (source, external_id) DO NOTHING",
                [timezone.now(), [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]],
            )
        return
    Identity.objects.bulk_create(
        [Identity(source=s, external_id=e, lead_id=lead_id) for s, e, lead_id in rows],
        batch_size=2000,
        ignore_conflicts=True,
    )


# --------------------------------------------------------------------------------------------
# Merge
# --------------------------------------------------------------------------------------------


def _stage_rank(stage: str) -> int:
    return FUNNEL_STAGES.index(stage) if stage in FUNNEL_STAGES else -1


@transaction.atomic
def lead_merge(survivor: Lead, merged: Lead, *, reason: str = "same email") -> LeadMerge:
    """Fold ``merged`` into ``survivor``: identities, events and feedback move to the
    survivor (when both leads have feedback from the same author, the newer verdict is kept),
    empty fields of the survivor are filled from the merged lead, custom attributes are
    combined (the survivor's win), the earliest stage times and the furthest funnel stage are
    kept. The merged lead is deleted and a ``LeadMerge`` row records the move."""
    if survivor.pk == merged.pk:
        raise ValueError("a lead cannot be merged into itself")
    lock_lead_writes()
    identities_moved = Identity.objects.filter(lead=merged).update(lead=survivor)
    events_moved = Event.objects.filter(lead=merged).update(lead=survivor)
    survivor_feedback = {f.author_id: f for f in Feedback.objects.filter(lead=survivor)}
    feedback_moved = 0
    for feedback in Feedback.objects.filter(lead=merged):
        mine = survivor_feedback.get(feedback.author_id)
        if mine is not None:
            if feedback.updated_at > mine.updated_at:
                mine.delete()
            else:
                continue
        feedback.lead = survivor
        feedback.save(update_fields=["lead"])
        feedback_moved += 1

    filled = []
    for name in (
        "first_name",
        "last_name",
        "title",
        "company",
        "employees",
        "industry",
        "country",
        "source",
        "owner_id",
        "revenue",
    ):
        if getattr(survivor, name) in (None, "") and getattr(merged, name) not in (None, ""):
            setattr(survivor, name, getattr(merged, name))
            filled.append(name)
    for name in (*_STAGE_TIMES, "disqualified_at", "lost_at"):
        mine, theirs = getattr(survivor, name), getattr(merged, name)
        if theirs is not None and (mine is None or theirs < mine):
            setattr(survivor, name, theirs)
            filled.append(name)
    if _stage_rank(merged.lifecycle_stage) > _stage_rank(survivor.lifecycle_stage):
        survivor.lifecycle_stage = merged.lifecycle_stage
        filled.append("lifecycle_stage")
    survivor.attributes = {**(merged.attributes or {}), **(survivor.attributes or {})}
    email = survivor.email or merged.email
    merged_id = merged.pk
    merged_email = merged.email
    merged.delete()
    survivor.email = email
    survivor.save()
    record = LeadMerge.objects.create(
        survivor=survivor,
        merged_lead_id=merged_id,
        email=email or "",
        identities_moved=identities_moved,
        events_moved=events_moved,
        details={
            "reason": reason,
            "merged_email": merged_email,
            "feedback_moved": feedback_moved,
            "fields_filled": filled,
        },
    )
    logger.info(
        "lead.merged survivor=%s merged=%s identities=%s events=%s",
        survivor.pk,
        merged_id,
        identities_moved,
        events_moved,
    )
    _request_rescore([survivor.pk])
    return record
