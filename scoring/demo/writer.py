"""Stores generated demo data set-based: COPY on PostgreSQL, large `bulk_create` batches on
SQLite. Everything is written in one transaction, so a failure leaves nothing behind.

Lead ids are reserved up front (a contiguous range taken from the table's sequence while the
table is locked against other inserts), so events and identities can reference their leads
without reading anything back.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypedDict

import numpy as np
from django.db import connection, models, transaction
from django.db.models import Max

from leadscoring.db import copy_in, is_postgres
from scoring.models import Event, Identity, Lead
from scoring.prefetch import prefetched

from .generator import STR, DemoData, EventColumns, IdentityColumns, LeadColumns, generate

logger = logging.getLogger(__name__)

NULL = r"\N"
COPY_ROWS = 100_000
# A load at least this big (and at least as big as the table) drops the table's secondary
# indexes and constraints first and builds them again afterwards: one sorted index build is
# many times faster than 10M incremental inserts into four B-trees plus 10M deferred foreign
# key checks.
REBUILD_INDEXES_MIN_ROWS = 100_000
SQLITE_BATCH = 5_000


class DemoWriteSummary(TypedDict):
    leads: int
    identities: int
    events: int
    first_lead_id: int | None
    last_lead_id: int | None
    seconds: float


def generate_and_write(
    n_leads: int,
    seed: int = 0,
    events_per_lead: float = 10.0,
    owners: Sequence[int] = (),
    *,
    now: dt.datetime | None = None,
) -> DemoWriteSummary:
    """Generate a demo company of `n_leads` leads (about `events_per_lead` events each, owned
    by the users with ids `owners`, the first two owning most) and store it in one transaction.

    Deterministic for a given `(seed, now)`; `now` defaults to the current time. Raises
    `django.db.IntegrityError` (with nothing written) when the data collides with existing
    rows, e.g. a second run with the same seed."""
    started = time.perf_counter()
    data = generate(
        n_leads, seed=seed, events_per_lead=events_per_lead, n_owners=len(owners), now=now
    )
    summary = write_demo_data(data, owners)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return summary


def write_demo_data(data: DemoData, owners: Sequence[int]) -> DemoWriteSummary:
    """Store `data` (leads, identities, then its events block by block) in one transaction."""
    started = time.perf_counter()
    owner_ids = np.asarray(list(owners), dtype=np.int64)
    n = len(data.leads)
    postgres = is_postgres()
    with transaction.atomic():
        first_id = _reserve_lead_ids(n) if postgres else _next_sqlite_lead_id()
        if postgres:
            with _indexes_rebuilt_after(Lead, n):
                leads_written = _copy_leads(data.leads, first_id, owner_ids)
            with _indexes_rebuilt_after(Identity, len(data.identities)):
                identities = _copy_identities(data.identities, data.leads, first_id)
            with _indexes_rebuilt_after(Event, data.leads.n_events):
                events = _copy_events(data.iter_events(), first_id)
        else:
            leads_written = _bulk_leads(data.leads, first_id, owner_ids)
            identities = _bulk_identities(data.identities, data.leads, first_id)
            events = sum(_bulk_events(block, first_id) for block in data.iter_events())
    seconds = round(time.perf_counter() - started, 3)
    logger.info(
        "demo.write.finished leads=%s identities=%s events=%s seconds=%s",
        leads_written,
        identities,
        events,
        seconds,
    )
    return DemoWriteSummary(
        leads=leads_written,
        identities=identities,
        events=events,
        first_lead_id=first_id if n else None,
        last_lead_id=first_id + n - 1 if n else None,
        seconds=seconds,
    )


# --------------------------------------------------------------------------------------------
# PostgreSQL: COPY in text format, rows built with NumPy string operations


def _reserve_lead_ids(n: int) -> int:
    """Take ids first..first+n-1 from the lead id sequence. The table lock (held to the end of
    the transaction) keeps other writers from drawing ids in between; they continue after."""
    table = Lead._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f'LOCK TABLE "{table}" IN SHARE ROW EXCLUSIVE MODE')
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
        sequence = cursor.fetchone()[0]
        cursor.execute("SELECT nextval(%s)", [sequence])
        first = int(cursor.fetchone()[0])
        if n > 1:
            cursor.execute("SELECT setval(%s, %s)", [sequence, first + n - 1])
    return first


@contextmanager
def _indexes_rebuilt_after(model: type[models.Model], rows: int) -> Iterator[None]:
    """For a big load: drop the table's secondary indexes, unique and foreign-key constraints,
    let the caller load, then recreate each from its exact definition as read from the catalog
    (so indexes added by later migrations are kept too) and refresh the planner's statistics.
    Inside the caller's transaction, so a failure restores everything."""
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [table])
        existing = max(float(cursor.fetchone()[0]), 0.0)
    if rows < max(REBUILD_INDEXES_MIN_ROWS, existing):
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = %s::regclass AND contype IN ('f', 'u') ORDER BY conname",
            [table],
        )
        constraints = cursor.fetchall()
        cursor.execute(
            "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index"
            " WHERE indrelid = %s::regclass AND NOT indisprimary AND NOT EXISTS"
            " (SELECT 1 FROM pg_constraint WHERE conindid = indexrelid AND conrelid = indrelid)",
            [table],
        )
        indexes = cursor.fetchall()
        # ALTER TABLE refuses to run while deferred foreign-key checks (from rows written
        # earlier in this transaction) are pending on the tables involved: run them now.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        for name, _ in constraints:
            cursor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            cursor.execute(f"DROP INDEX {name}")
    started = time.perf_counter()
    yield
    loaded = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
        for _, definition in indexes:
            cursor.execute(definition)
        for name, definition in constraints:
            cursor.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
        cursor.execute(f'ANALYZE "{table}"')
    logger.info(
        "demo.write.table table=%s rows=%s load_seconds=%.1f index_seconds=%.1f",
        table,
        rows,
        loaded - started,
        time.perf_counter() - loaded,
    )


def _text_time(values: np.ndarray) -> np.ndarray:
    text = np.strings.add(values.astype("datetime64[us]").astype(STR), "+00")
    return np.where(np.isnat(values), NULL, text)


def _text_default(field: models.Field) -> str:
    value = field.get_default()
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def _prefetched(items: Iterator[str], depth: int = 2) -> Iterator[str]:
    """Yield `items`, computed ahead in a background thread, so that NumPy builds the next
    chunk of COPY text while PostgreSQL digests the current one (two cores, both busy).
    The thread touches no database connection."""
    return prefetched(items, depth=depth, name="demo-copy-text")


ColumnsFor = Callable[[int, int], dict[str, np.ndarray | str]]


def _copy(
    model: type[models.Model],
    provided: Sequence[str],
    slices: Iterator[tuple[ColumnsFor, int, int]],
) -> int:
    """COPY rows into the model's table. Each slice `(columns_for, start, stop)` gives, through
    `columns_for(start, stop)`, a text array (or one text for every row) per column named in
    `provided`; every other column except the primary key gets its field default."""
    constants: dict[str, str] = {}
    names: list[str] = []
    for field in model._meta.concrete_fields:
        if field.column in provided:
            names.append(field.column)
        elif not field.primary_key:
            names.append(field.column)
            constants[field.column] = _text_default(field)

    def texts() -> Iterator[str]:
        for columns_for, start, stop in slices:
            columns = {**columns_for(start, stop), **constants}
            line = _tab_joined([columns[name] for name in names], stop - start)
            yield "\n".join(line.tolist()) + "\n"

    table = connection.ops.quote_name(model._meta.db_table)
    rows = 0
    with connection.cursor() as cursor, copy_in(cursor, table, names) as copy:
        for text in _prefetched(texts()):
            copy.write(text)
            rows += text.count("\n")
    return rows


def _tab_joined(pieces: list[np.ndarray | str], n: int) -> np.ndarray:
    """Row texts: the pieces joined by tabs. Joined pairwise, like a tree, so each byte is
    copied about log2(columns) times rather than once per column to its right."""
    if not pieces:
        return np.full(n, "", dtype=STR)
    level = pieces
    while len(level) > 1:
        paired = [
            np.strings.add(np.strings.add(level[i], "\t"), level[i + 1])
            if i + 1 < len(level)
            else level[i]
            for i in range(0, len(level), 2)
        ]
        level = paired
    row = level[0]
    return np.full(n, row, dtype=STR) if isinstance(row, str) else row


def _slices(columns_for: ColumnsFor, n: int) -> Iterator[tuple[ColumnsFor, int, int]]:
    for start in range(0, n, COPY_ROWS):
        yield columns_for, start, min(start + COPY_ROWS, n)


def _owner_text(owner_index: np.ndarray, owner_ids: np.ndarray) -> np.ndarray:
    if len(owner_ids) == 0:
        return np.full(len(owner_index), NULL, dtype=STR)
    return owner_ids[np.maximum(owner_index, 0)].astype(STR)


LEAD_COLUMNS = (
    "id", "email", "first_name", "last_name", "title", "company", "employees", "industry",
    "country", "source", "attributes", "owner_id", "lifecycle_stage", "created_at", "updated_at",
    "mql_at", "sql_at", "opportunity_at", "converted_at", "disqualified_at", "revenue",
)  # fmt: skip
IDENTITY_COLUMNS = ("source", "external_id", "lead_id", "created_at")
EVENT_COLUMNS = (
    "source", "external_id", "lead_id", "event_type", "occurred_at", "properties", "received_at",
)  # fmt: skip


def _copy_leads(leads: LeadColumns, first_id: int, owner_ids: np.ndarray) -> int:
    def columns_for(start: int, stop: int) -> dict[str, np.ndarray | str]:
        part = slice(start, stop)
        revenue = leads.revenue[part]
        return {
            "id": np.arange(first_id + start, first_id + stop, dtype=np.int64).astype(STR),
            "email": leads.email[part],
            "first_name": leads.first_name[part],
            "last_name": leads.last_name[part],
            "title": leads.title[part],
            "company": leads.company[part],
            "employees": np.where(
                leads.employees_missing[part], NULL, leads.employees[part].astype(STR)
            ),
            "industry": leads.industry[part],
            "country": leads.country[part],
            "source": leads.source[part],
            "attributes": leads.attributes_json[part],
            "owner_id": _owner_text(leads.owner_index[part], owner_ids),
            "lifecycle_stage": leads.lifecycle_stage[part],
            "created_at": _text_time(leads.created_at[part]),
            "updated_at": _text_time(leads.updated_at[part]),
            "mql_at": _text_time(leads.mql_at[part]),
            "sql_at": _text_time(leads.sql_at[part]),
            "opportunity_at": _text_time(leads.opportunity_at[part]),
            "converted_at": _text_time(leads.converted_at[part]),
            "disqualified_at": _text_time(leads.disqualified_at[part]),
            "revenue": np.where(np.isnan(revenue), NULL, revenue.astype(STR)),
        }

    return _copy(Lead, LEAD_COLUMNS, _slices(columns_for, len(leads)))


def _copy_identities(identities: IdentityColumns, leads: LeadColumns, first_id: int) -> int:
    def columns_for(start: int, stop: int) -> dict[str, np.ndarray | str]:
        lead_index = identities.lead_index[start:stop]
        return {
            "source": identities.source[start:stop],
            "external_id": identities.external_id[start:stop],
            "lead_id": (lead_index + first_id).astype(STR),
            "created_at": _text_time(leads.created_at[lead_index]),
        }

    return _copy(Identity, IDENTITY_COLUMNS, _slices(columns_for, len(identities)))


def _copy_events(blocks: Iterable[EventColumns], first_id: int) -> int:
    def block_slices() -> Iterator[tuple[ColumnsFor, int, int]]:
        # Generating a block runs in the prefetch thread too, since this iterator is consumed
        # there.
        for block in blocks:

            def columns_for(
                start: int, stop: int, block: EventColumns = block
            ) -> dict[str, np.ndarray | str]:
                part = slice(start, stop)
                return {
                    "source": block.source[part],
                    "external_id": block.external_id[part],
                    "lead_id": (block.lead_index[part] + first_id).astype(STR),
                    "event_type": block.event_type[part],
                    "occurred_at": _text_time(block.occurred_at[part]),
                    "properties": block.properties_json[part],
                    "received_at": _text_time(block.received_at[part]),
                }

            yield from _slices(columns_for, len(block))

    return _copy(Event, EVENT_COLUMNS, block_slices())


# --------------------------------------------------------------------------------------------
# SQLite (and any other database): bulk_create in large batches


def _next_sqlite_lead_id() -> int:
    # SQLite serialises writers, and the transaction is already open, so nobody inserts
    # between this read and our rows.
    return (Lead.objects.aggregate(top=Max("id"))["top"] or 0) + 1


def _aware(values: np.ndarray) -> list[dt.datetime | None]:
    return [
        None if value is None else value.replace(tzinfo=dt.UTC)
        for value in values.astype("datetime64[us]").tolist()
    ]


def _bulk(objects: Iterable[models.Model], model: type[models.Model]) -> int:
    batch = list(objects)
    model.objects.bulk_create(batch, batch_size=SQLITE_BATCH)
    return len(batch)


def _bulk_leads(leads: LeadColumns, first_id: int, owner_ids: np.ndarray) -> int:
    n = len(leads)
    owners: list[Any] = (
        owner_ids[np.maximum(leads.owner_index, 0)].tolist() if len(owner_ids) else [None] * n
    )
    employees = np.where(leads.employees_missing, -1, leads.employees).tolist()
    revenue = leads.revenue.tolist()
    rows = zip(
        range(first_id, first_id + n),
        leads.email.tolist(),
        leads.first_name.tolist(),
        leads.last_name.tolist(),
        leads.title.tolist(),
        leads.company.tolist(),
        employees,
        leads.industry.tolist(),
        leads.country.tolist(),
        leads.source.tolist(),
        leads.attributes_json.tolist(),
        owners,
        leads.lifecycle_stage.tolist(),
        _aware(leads.created_at),
        _aware(leads.mql_at),
        _aware(leads.sql_at),
        _aware(leads.opportunity_at),
        _aware(leads.converted_at),
        _aware(leads.disqualified_at),
        revenue,
        strict=True,
    )
    objects = (
        Lead(
            id=lead_id,
            email=email,
            first_name=first,
            last_name=last,
            title=title,
            company=company,
            employees=None if employee_count < 0 else employee_count,
            industry=industry,
            country=country,
            source=source,
            attributes=json.loads(attributes),
            owner_id=owner,
            lifecycle_stage=stage,
            created_at=created,
            mql_at=mql,
            sql_at=sql,
            opportunity_at=opportunity,
            converted_at=converted,
            disqualified_at=disqualified,
            revenue=None if amount != amount else amount,  # NaN -> None
        )
        for (
            lead_id,
            email,
            first,
            last,
            title,
            company,
            employee_count,
            industry,
            country,
            source,
            attributes,
            owner,
            stage,
            created,
            mql,
            sql,
            opportunity,
            converted,
            disqualified,
            amount,
        ) in rows
    )
    return _bulk(objects, Lead)


def _bulk_identities(identities: IdentityColumns, leads: LeadColumns, first_id: int) -> int:
    created = _aware(leads.created_at[identities.lead_index])
    objects = (
        Identity(source=source, external_id=external_id, lead_id=lead_id, created_at=at)
        for source, external_id, lead_id, at in zip(
            identities.source.tolist(),
            identities.external_id.tolist(),
            (identities.lead_index + first_id).tolist(),
            created,
            strict=True,
        )
    )
    return _bulk(objects, Identity)


def _bulk_events(block: EventColumns, first_id: int) -> int:
    # Properties come from a small table of documents: parse each distinct one once.
    parsed = {text: json.loads(text) for text in np.unique(block.properties_json).tolist()}
    objects = (
        Event(
            source=source,
            external_id=external_id,
            lead_id=lead_id,
            event_type=event_type,
            occurred_at=occurred,
            received_at=received,
            properties=parsed[properties],
        )
        for source, external_id, lead_id, event_type, occurred, received, properties in zip(
            block.source.tolist(),
            block.external_id.tolist(),
            (block.lead_index + first_id).tolist(),
            block.event_type.tolist(),
            _aware(block.occurred_at),
            _aware(block.received_at),
            block.properties_json.tolist(),
            strict=True,
        )
    )
    return _bulk(objects, Event)
