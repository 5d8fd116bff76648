"""Set-based lead import on PostgreSQL: the validated rows of a file are COPYed into a
temporary staging table, then written with a handful of statements over the whole file.

Why: the chunked generic path (``leads_bulk_upsert`` per 5,000 rows) spends most of its time
looking up each chunk's stored leads and shipping them through Python; at 1M stored leads a
100,000-row file took 45 s. Here the lookups are index probes in one pass, new leads go in with one
``INSERT ... SELECT``, changed leads with one ``UPDATE ... FROM`` (unchanged rows are not
written), identities with one conflict-ignoring insert.

The result is the same as feeding the rows to ``leads_bulk_upsert`` in file order:

- A staged row carries the values ``lead_from_row`` gave it; ``NULL`` means "keep what is
  stored", as ``None`` does in ``_apply`` of scoring.services.leads. Attributes merge key by
  key (``jsonb ||``); ``converted_at`` without a ``lifecycle_stage`` makes the lead a
  customer.
- Rows whose outcome depends on the order of the rows or needs a merge are *entangled*: they
  share an email, an identity or a resolved lead with another row of the file, or their
  identity and their email point at two different stored leads. Entangled rows touch no lead
  that a plain row touches, so they are handed, in file order, to ``leads_bulk_upsert`` (which
  merges and rejects exactly as it does for any other caller) after the plain rows are written.

The caller owns the transaction of :meth:`LeadStage.apply`; staging (``add``/``flush``) may
run in autocommit so that progress is visible while a large file is read.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from django.db import connection
from django.utils import timezone

from leadscoring.db import copy_in, temp_table
from scoring.models import Lead, LifecycleStage
from scoring.services.leads import LEAD_FIELDS, LeadUpsert, lock_lead_writes
from scoring.services.rescore import request_rescore

logger = logging.getLogger(__name__)

TABLE = "import_lead_stage"  # the rows as read
PLAN = "import_lead_plan"  # the rows with what each one does (built by apply)


class _Clock:
    """Seconds per phase, for the log line that says where an import's time went."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 3)
        self._last = now

    def __str__(self) -> str:
        return " ".join(f"{name}={seconds}s" for name, seconds in self.laps.items())


# The staged value columns and their SQL types, in LEAD_FIELDS order.
_TEXT_FIELDS = frozenset(
    {
        "email",
        "first_name",
        "last_name",
        "title",
        "company",
        "industry",
        "country",
        "source",
        "lifecycle_stage",
    }
)
_TIME_FIELDS = frozenset(
    {
        "created_at",
        "mql_at",
        "sql_at",
        "opportunity_at",
        "converted_at",
        "disqualified_at",
        "lost_at",
    }
)
_SQL_TYPES = {"employees": "integer", "owner_id": "integer", "revenue": "double precision"}


def _sql_type(name: str) -> str:
    if name in _TEXT_FIELDS:
        return "text"
    if name in _TIME_FIELDS:
        return "timestamptz"
    return _SQL_TYPES[name]


def _column(name: str) -> str:
    return Lead._meta.get_field(name).column


# ``source`` is both a lead column and the identity's source: the staging table calls the
# identity's ``id_source`` / ``id_external``.
_VALUE_COLUMNS = [_column(name) for name in LEAD_FIELDS]
_STAGED = ["line", "id_source", "id_external", *_VALUE_COLUMNS, "attributes", "odd"]


_POSITION = {name: 3 + i for i, name in enumerate(LEAD_FIELDS)}
_EMAIL_AT = _POSITION["email"]
_WIDTH = len(_STAGED)
_STRING_FIELDS = _TEXT_FIELDS - {"lifecycle_stage"}


def _plain_value(name: str, value: Any) -> bool:
    """Is this value of the type the column takes? Anything else goes the generic way, which
    validates (and rejects) it."""
    if name in _TIME_FIELDS:
        return isinstance(value, dt.datetime) and not timezone.is_naive(value)
    if name in ("employees", "owner_id"):
        return isinstance(value, int) and not isinstance(value, bool) and -(2**31) < value < 2**31
    if name == "revenue":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if name == "lifecycle_stage":
        return value in LifecycleStage.values
    return isinstance(value, str)


class LeadStage:
    """A staging table for one import; use as a context manager (it drops the table)."""

    def __init__(self, *, remove_attributes: tuple[str, ...] = ()) -> None:
        # Attribute keys deleted from every lead the import updates (its mapping drops them).
        self.remove_attributes = tuple(remove_attributes)
        self._buffer: list[list[Any]] = []
        # Rows the staging table cannot hold as given (rare): kept as they came.
        self._odd: dict[int, LeadUpsert] = {}
        # First line of each email and identity, and the lines that share one with another
        # line: found here while reading, so the database does not sort the file to find them.
        self._first_line: dict[Any, int] = {}
        self._shared: set[int] = set()
        self.staged = 0
        self._clock = _Clock()

    def __enter__(self) -> LeadStage:
        # Inside a transaction the table goes with it (also on a rollback); in autocommit it
        # lives in the session until __exit__ drops it.
        columns = ", ".join(
            [
                "line integer NOT NULL",
                "id_source text",
                "id_external text",
                *(
                    f'"{c}" {_sql_type(n)}'
                    for n, c in zip(LEAD_FIELDS, _VALUE_COLUMNS, strict=True)
                ),
                "attributes jsonb",
                "odd boolean NOT NULL",
            ]
        )
        self._table = temp_table(TABLE, f"({columns})")
        self._table.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._table.__exit__(*exc)

    # ----------------------------------------------------------------------------------------
    # Staging
    # ----------------------------------------------------------------------------------------

    def add(self, line: int, record: LeadUpsert) -> None:
        """Buffer one validated row (normalised as ``leads_bulk_upsert`` normalises it)."""
        row: list[Any] = [None] * _WIDTH
        row[0] = line
        source = (record.source or "").strip()
        external_id = (record.external_id or "").strip()
        if source and external_id:
            row[1], row[2] = source, external_id
        odd = False
        for name, value in record.values.items():
            position = _POSITION.get(name)
            if position is None or value is None or value == "":
                continue  # not a lead column, or missing: _apply ignores both
            if name == "email" and isinstance(value, str):
                value = value.strip().lower() or None
                if value is None:
                    continue
            if not (type(value) is str and name in _STRING_FIELDS) and not _plain_value(
                name, value
            ):
                odd = True  # not staged; the generic path gets the record as it came
                continue
            row[position] = value
        attributes = record.attributes
        if attributes:
            kept = {k: v for k, v in attributes.items() if v is not None and v != ""}
            row[-2] = json.dumps(kept) if kept else None
        email = row[_EMAIL_AT]
        if row[1] is None and email is None:
            odd = True  # neither identity nor email: rejected the generic way
        for key in (email, (row[1], row[2]) if row[1] else None):
            if key is not None:
                first = self._first_line.setdefault(key, line)
                if first != line:
                    self._shared.update((first, line))
        row[-1] = odd
        if odd:
            self._odd[line] = record
        self._buffer.append(row)

    def flush(self) -> None:
        """COPY the buffered rows into the staging table."""
        if not self._buffer:
            return
        with connection.cursor() as cursor, copy_in(cursor, TABLE, _STAGED) as copy:
            for row in self._buffer:
                copy.write_row(row)
        self.staged += len(self._buffer)
        self._buffer = []

    # ----------------------------------------------------------------------------------------
    # Writing
    # ----------------------------------------------------------------------------------------

    def apply(self) -> dict[str, int]:
        """Write the plain rows; returns ``created``, ``updated``, ``unchanged`` counts. Call
        inside a transaction, then :meth:`entangled_rows` for the rest."""
        self.flush()
        clock = self._clock
        clock.lap("read")
        lock_lead_writes()
        now = timezone.now()
        with connection.cursor() as cursor:
            # The lookups are index probes per row: their cost follows the file, not the
            # table (a hash join reads every stored lead). JIT compiles longer than these run.
            cursor.execute("SET LOCAL enable_hashjoin = off")
            cursor.execute("SET LOCAL enable_mergejoin = off")
            cursor.execute("SET LOCAL jit = off")
            # The window over the staged rows sorts in memory rather than on disk.
            cursor.execute("SET LOCAL work_mem = '256MB'")
            cursor.execute(f"ANALYZE {TABLE}")
            self._plan(cursor)
            clock.lap("resolve")
            created = self._insert_new(cursor, now)
            clock.lap("insert")
            updated_ids = self._update_changed(cursor, now)
            clock.lap("update")
            cursor.execute(
                "INSERT INTO scoring_identity "
                "(source, external_id, lead_id, created_at, pushed_band) "
                f"SELECT id_source, id_external, lead_id, %s, '' FROM {PLAN} "
                "WHERE NOT entangled AND id_external IS NOT NULL AND id_lead IS NULL "
                "ON CONFLICT (source, external_id) DO NOTHING",
                [now],
            )
            clock.lap("identities")
            cursor.execute(
                f"SELECT count(*) FROM {PLAN} WHERE NOT entangled AND NOT created "
                "AND lead_id IS NOT NULL"
            )
            resolved = cursor.fetchone()[0]
            cursor.execute(f"SELECT lead_id FROM {PLAN} WHERE created")
            created_ids = [row[0] for row in cursor.fetchall()]
        request_rescore([*created_ids, *updated_ids])
        clock.lap("rescore_marks")
        logger.info("import.staged rows=%s %s", self.staged, clock)
        return {
            "created": created,
            "updated": len(updated_ids),
            "unchanged": resolved - len(updated_ids),
        }

    def _plan(self, cursor: Any) -> None:
        """One pass over the staged rows: each row's stored lead by identity and by email,
        whether it is entangled (it shares an email or identity with another row, found while
        reading; it touches, by identity or by email, a lead another row touches; its identity
        and email name two leads), and a new lead id (in file order) for each plain row that
        found no lead."""
        email = _column("email")
        cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{PLAN}")
        if self._shared:
            cursor.execute(
                f"UPDATE {TABLE} SET odd = true WHERE line = ANY(%s)", [sorted(self._shared)]
            )
        cursor.execute(
            f"""
            CREATE TEMP TABLE {PLAN} ON COMMIT DROP AS
            SELECT c.*,
                CASE WHEN NOT c.entangled AND c.found IS NULL
                    THEN nextval(pg_get_serial_sequence('scoring_lead', 'id'))
                    ELSE c.found END AS lead_id,
                NOT c.entangled AND c.found IS NULL AS created
            FROM (
                SELECT r.*,
                    r.odd
                    OR (r.found IS NOT NULL AND count(*) OVER (PARTITION BY r.found) > 1)
                    OR coalesce(r.id_lead <> r.email_lead, false) AS entangled
                FROM (
                    SELECT s.*, i.lead_id AS id_lead, l.id AS email_lead,
                        coalesce(i.lead_id, l.id) AS found
                    FROM {TABLE} s
                    LEFT JOIN scoring_identity i
                        ON s.id_external IS NOT NULL
                        AND i.source = s.id_source AND i.external_id = s.id_external
                    LEFT JOIN scoring_lead l
                        ON s."{email}" IS NOT NULL AND l.email = s."{email}"
                ) r
            ) c
            ORDER BY c.line
            """
        )
        # A row whose identity and email name two leads (entangled above) also touches its
        # email's lead, which the window over `found` does not see: another row reaching that
        # lead must wait for the merge too. Only rows that found a lead can share one, so no
        # new lead id changes hands here.
        cursor.execute("SET LOCAL enable_hashjoin = on")
        cursor.execute(
            f"""
            UPDATE {PLAN} AS p SET entangled = true
            FROM (
                SELECT lead FROM (
                    SELECT line, id_lead AS lead FROM {PLAN} WHERE id_lead IS NOT NULL
                    UNION
                    SELECT line, email_lead FROM {PLAN} WHERE email_lead IS NOT NULL
                ) touches
                GROUP BY lead HAVING count(*) > 1
            ) shared
            WHERE NOT p.entangled AND p.found = shared.lead
            """
        )
        cursor.execute("SET LOCAL enable_hashjoin = off")

    def _insert_new(self, cursor: Any, now: dt.datetime) -> int:
        """Insert a lead for every plain row that found none."""
        cursor.execute(f"SELECT count(*) FROM {PLAN} WHERE created")
        created = cursor.fetchone()[0]
        if not created:
            return 0
        template = Lead()
        columns = ['"id"']
        expressions = ["s.lead_id"]
        params: list[Any] = []
        for field in Lead._meta.concrete_fields:
            if field.primary_key:
                continue
            name, column = field.attname, field.column
            default = getattr(template, name)
            if name in ("created_at", "updated_at"):
                default = now
            db_type = field.db_type(connection)
            if field.get_internal_type() == "JSONField":
                default = json.dumps(default)
            columns.append(f'"{column}"')
            if name == "attributes":
                expressions.append("coalesce(s.attributes, '{}'::jsonb)")
            elif name == "lifecycle_stage":
                expressions.append(
                    f'coalesce(s."{column}", CASE WHEN s."{_column("converted_at")}" IS NOT NULL '
                    f"THEN '{LifecycleStage.CUSTOMER}' END, %s::{db_type})"
                )
                params.append(default)
            elif name in LEAD_FIELDS:
                expressions.append(f'coalesce(s."{column}", %s::{db_type})')
                params.append(default)
            else:
                expressions.append(f"%s::{db_type}")
                params.append(default)
        cursor.execute(
            f"INSERT INTO scoring_lead ({', '.join(columns)}) "
            f"SELECT {', '.join(expressions)} FROM {PLAN} s WHERE s.created ORDER BY s.lead_id",
            params,
        )
        return created

    def _update_changed(self, cursor: Any, now: dt.datetime) -> list[int]:
        """Apply the plain rows to their stored leads; only leads whose values change are
        written. Returns their ids."""
        converted = _column("converted_at")
        new: list[str] = []
        old: list[str] = []
        for name, column in zip(LEAD_FIELDS, _VALUE_COLUMNS, strict=True):
            if name == "lifecycle_stage":
                new.append(
                    f'coalesce(s."{column}", CASE WHEN s."{converted}" IS NOT NULL '
                    f"THEN '{LifecycleStage.CUSTOMER}' END, l.\"{column}\")"
                )
            else:
                new.append(f'coalesce(s."{column}", l."{column}")')
            old.append(f'l."{column}"')
        new.append(
            "(CASE WHEN s.attributes IS NULL THEN l.attributes ELSE l.attributes || s.attributes "
            "END) - %s::text[]"
        )
        old.append("l.attributes")
        targets = [*_VALUE_COLUMNS, "attributes"]
        aliases = [f"v{i}" for i in range(len(targets))]
        selected = ", ".join(f"{expr} AS {alias}" for expr, alias in zip(new, aliases, strict=True))
        assignments = ", ".join(
            f'"{column}" = n.{alias}' for column, alias in zip(targets, aliases, strict=True)
        )
        changed = " OR ".join(
            f"n.{alias} IS DISTINCT FROM {current}"
            for alias, current in zip(aliases, old, strict=True)
        )
        cursor.execute(
            f"UPDATE scoring_lead l SET {assignments}, updated_at = %s FROM ("
            f"SELECT s.lead_id AS id, {selected} FROM {PLAN} s "
            "JOIN scoring_lead l ON l.id = s.lead_id "
            "WHERE NOT s.entangled AND NOT s.created AND s.lead_id IS NOT NULL"
            f") n WHERE l.id = n.id AND ({changed}) RETURNING l.id",
            [now, list(self.remove_attributes)],
        )
        return [row[0] for row in cursor.fetchall()]

    def entangled_rows(self) -> Iterator[tuple[int, LeadUpsert]]:
        """The entangled rows in file order, as the records they were staged from."""
        columns = ", ".join(f'"{c}"' for c in _STAGED[:-1])
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {columns} FROM {PLAN} WHERE entangled ORDER BY line")
            rows = cursor.fetchall()
        for row in rows:
            line, source, external_id, *values, attributes = row
            if line in self._odd:
                yield line, self._odd[line]
                continue
            yield (
                line,
                LeadUpsert(
                    source=source,
                    external_id=external_id,
                    values={
                        name: value
                        for name, value in zip(LEAD_FIELDS, values, strict=True)
                        if value is not None
                    },
                    attributes=attributes or {},
                    remove_attributes=self.remove_attributes,
                ),
            )
