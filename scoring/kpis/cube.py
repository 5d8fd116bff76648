"""The KPI cube: the dashboard's per-lead facts aggregated by creation day, so a request sums a
few tens of thousands of rows instead of scanning every lead (DESIGN.md §7: KPI data at 1M
leads in under 500 ms p95).

What is stored (tables of migration 0008, no models):
- `kpi_cube_cell`: leads per (creation day in the project's time zone, honest band, honest
  score, converted, disqualified, MQL before converting, furthest funnel stage), with their
  revenue, how many have a model probability and the earliest creation time;
- `kpi_cube_cycle`: each converter's creation day, honest band and days created -> customer;
- `kpi_cube_entry`: band entries (score-history rows whose band differs from the previous
  one) per (lead creation day, entry day, entry week, band);
- `kpi_cube_choice`: the distinct (persona, source, owner) of the leads (the filter choices).
The honest band is the one of `selectors._facts_from_rollup` with open leads at their current
band, so the cube applies to a period whose end is after the latest scoring.

When it is read. Statement triggers on the leads, the score history and the rescore runs
append a row to `kpi_cube_change` on every write, and the refresh deletes the rows it saw in
the same transaction (a REPEATABLE READ snapshot on PostgreSQL) that computes the cube. An
empty change log therefore means no write committed since the snapshot the cube was computed
from: the cube is *fresh* and gives the current numbers. After a write the cube still gives
the numbers as they were at `built_at` (the moment just before the snapshot: everything
committed before it is in the cube). While it is younger than
`settings.KPI_CUBE_MAX_AGE_SECONDS` it is read anyway and the reader carries `as_of =
built_at`, which the page and the API show; older than that (beat stopped), or with the
setting at 0, the selectors compute directly (the current numbers, seconds at 1M leads). A
live system rescoring single leads as events arrive always has writes, so without the max
age the cube would almost never be read. Also only for filters it can answer: no persona,
source, owner or rule-set version, a period ending after the latest rescore run, in the time
zone the cube was built in. With an end date the cutoff and the 90-day outcome horizon are
midnights, which creation days resolve exactly; without one (the cutoff is "now") the leads
created on the horizon's day are read from the leads table (so, read "as of", that one day's
leads are current), and the cube is used only when every score-history row it holds is before
now. Read "as of", the rescore-run condition is checked on the runs created before `built_at`
(the ones the cube saw), since the open leads' bands in the cube are those of that moment.
The model probabilities' table (`scoring_leadprobability`, migration 0010) has the same
trigger: the cells count the leads with a probability.

The refresh runs with the conversion-band rollup (`scoring.kpis.rollup`): after each bulk
rescore run and from beat."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, F
from django.db.models.functions import TruncDate, TruncWeek
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from leadscoring.db import days_between_sql, db_datetime, is_postgres
from scoring.kpis import selectors
from scoring.kpis.filters import KpiFilters
from scoring.models import ScoreHistory

logger = logging.getLogger(__name__)

TABLES = ("kpi_cube_cell", "kpi_cube_cycle", "kpi_cube_entry", "kpi_cube_choice")
# Any fixed number: serialises refreshes on PostgreSQL.
_LOCK_KEY = 7_0008


# --- refresh -------------------------------------------------------------------------------


def cube_refresh() -> bool:
    """Recompute the cube from one snapshot; False when another refresh holds the lock (or
    won the race for the change log), which leaves that refresh's cube in place."""
    postgres = is_postgres()
    try:
        with transaction.atomic():
            # Taken before the snapshot: every write committed before this moment is in the
            # cube, so "figures as of built_at" never claims a write the cube missed.
            built_at = timezone.now()
            with connection.cursor() as cursor:
                if postgres and not _in_outer_transaction():
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                if postgres:
                    cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_LOCK_KEY])
                    if not cursor.fetchone()[0]:
                        return False
                    cursor.execute("SET LOCAL jit = off")
                # First, so that a write committed after this snapshot keeps its row.
                cursor.execute("DELETE FROM kpi_cube_change")
                for table in TABLES:
                    cursor.execute(f"DELETE FROM {table}")
                _build_cells(cursor)
                _build_cycle(cursor)
                _build_choices(cursor)
                cursor.execute("DELETE FROM kpi_cube_state")
                cursor.execute(
                    "INSERT INTO kpi_cube_state (id, built_at, time_zone, last_entry_at)"
                    f" SELECT 1, %s, %s, MAX(as_of) FROM {selectors.HISTORY_TABLE}",
                    [db_datetime(built_at), timezone.get_current_timezone_name()],
                )
            _build_entries()
    except DatabaseError as error:
        # A concurrent refresh deleted the same change rows first (a serialization failure
        # on PostgreSQL). Anything else is a real fault and must not pass for "skipped".
        if getattr(error.__cause__, "sqlstate", None) != "40001":
            raise
        logger.warning("kpis.cube.refresh_skipped error=%s", error)
        return False
    logger.info("kpis.cube.refreshed")
    return True


def _in_outer_transaction() -> bool:
    # atomic() above opened the transaction unless the caller already had one (then it made a
    # savepoint, and the isolation level can no longer be set).
    return bool(connection.savepoint_ids)


def _created_day_sql() -> tuple[str, list[Any]]:
    sql, params = connection.ops.datetime_cast_date_sql(
        "l.created_at", (), timezone.get_current_timezone_name()
    )
    return sql, list(params)


def _facts_for_cube() -> tuple[str, list[Any]]:
    """Every lead with its creation day, honest band and score (open leads at their current
    band), outcome flags and furthest funnel stage."""
    probe, probe_params = selectors.history_probe(timezone.now())
    band, score = selectors.honest_band_score_sql(probe, current=True)
    day, day_params = _created_day_sql()
    sql = (
        f"SELECT {day} AS created_day, l.created_at, l.converted_at,"
        f" {band} AS kpi_band, {score} AS kpi_score,"
        " CASE WHEN l.converted_at IS NOT NULL THEN 1 ELSE 0 END AS converted,"
        # `disqualified` flags every closed non-conversion: disqualified or a lost deal.
        " CASE WHEN l.disqualified_at IS NOT NULL OR l.lost_at IS NOT NULL THEN 1 ELSE 0 END"
        " AS disqualified,"
        " CASE WHEN l.mql_at IS NOT NULL AND (l.converted_at IS NULL OR l.mql_at < l.converted_at)"
        "      THEN 1 ELSE 0 END AS mql_first,"
        " CASE WHEN l.converted_at IS NOT NULL THEN 4 WHEN l.opportunity_at IS NOT NULL THEN 3"
        "      WHEN l.sql_at IS NOT NULL THEN 2 WHEN l.mql_at IS NOT NULL THEN 1 ELSE 0 END"
        "      AS stage,"
        " l.revenue, lp.probability AS model_probability"
        f" FROM {selectors.LEAD_TABLE} l{selectors.PROBABILITY_JOIN}"
    )
    return sql, [*day_params, *probe_params, *probe_params]


def _build_cells(cursor: Any) -> None:
    facts, params = _facts_for_cube()
    cursor.execute(
        "INSERT INTO kpi_cube_cell (created_day, band, score, converted, disqualified,"
        " mql_first, stage, leads, revenue, with_p, first_created)"
        " SELECT f.created_day, COALESCE(f.kpi_band, ''), f.kpi_score, f.converted,"
        " f.disqualified, f.mql_first, f.stage, COUNT(*), SUM(f.revenue),"
        " COUNT(f.model_probability), MIN(f.created_at)"
        f" FROM ({facts}) f GROUP BY 1, 2, 3, 4, 5, 6, 7",
        params,
    )


def _build_cycle(cursor: Any) -> None:
    facts, params = _facts_for_cube()
    days = days_between_sql("f.created_at", "f.converted_at")
    cursor.execute(
        "INSERT INTO kpi_cube_cycle (created_day, band, days)"
        f" SELECT f.created_day, COALESCE(f.kpi_band, ''), {days}"
        f" FROM ({facts}) f WHERE f.converted = 1",
        params,
    )


def _build_choices(cursor: Any) -> None:
    cursor.execute(
        "INSERT INTO kpi_cube_choice (persona, source, owner_id)"
        f" SELECT DISTINCT persona, source, owner_id FROM {selectors.LEAD_TABLE}"
    )


def _build_entries() -> None:
    # The ORM's TruncDate/TruncWeek give the project time zone's days and Monday weeks on
    # either backend, exactly as `selectors.band_entries_by_week` groups them.
    rows = (
        ScoreHistory.objects.exclude(band=F("previous_band"))
        .annotate(
            created_day=TruncDate("lead__created_at"),
            as_of_day=TruncDate("as_of"),
            week=TruncWeek("as_of"),
        )
        .values("created_day", "as_of_day", "week", "band")
        .annotate(n=Count("id"))
        .order_by()
    )
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO kpi_cube_entry (created_day, as_of_day, week, band, n)"
            " VALUES (%s, %s, %s, %s, %s)",
            [
                (r["created_day"], r["as_of_day"], r["week"].date(), r["band"], r["n"])
                for r in rows.iterator(chunk_size=10_000)
            ],
        )


# --- read ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CubeReader:
    """Reads for one set of filters the cube can answer (see `reader`). `as_of`: None when
    the cube is fresh (the numbers are current), else its `built_at` (writes since then are
    not included)."""

    filters: KpiFilters
    as_of: dt.datetime | None = None

    def _days(self, column: str = "created_day") -> tuple[str, list[Any]]:
        clauses, params = ["1 = 1"], []
        if self.filters.start:
            clauses.append(f"{column} >= %s")
            params.append(self.filters.start)
        if self.filters.end:
            clauses.append(f"{column} <= %s")
            params.append(self.filters.end)
        return " AND ".join(clauses), params

    def _horizon(self) -> dt.datetime:
        return self.filters.cutoff() - dt.timedelta(days=selectors.OUTCOME_HORIZON_DAYS)

    def _horizon_day(self) -> dt.date:
        return timezone.localtime(self._horizon()).date()

    def _split_day(self) -> dt.date | None:
        """The creation day the outcome horizon falls inside of (a cutoff of "now"): the
        cube cannot tell which of its leads are older than the horizon, so that day's leads
        are read from the leads table. None when the horizon is a midnight."""
        local = timezone.localtime(self._horizon())
        return None if local.time() == dt.time.min else local.date()

    def _split_day_leads(self, split: dt.date) -> tuple[str, list[Any]]:
        """WHERE over lead alias `l` for the cohort's leads created on `split`."""
        day_start = timezone.make_aware(dt.datetime.combine(split, dt.time.min))
        bounds = [day_start, day_start + dt.timedelta(days=1)]
        if self.filters.created_from():
            bounds[0] = max(bounds[0], self.filters.created_from())
        return "l.created_at >= %s AND l.created_at < %s", [db_datetime(b) for b in bounds]

    def outcome_rows(self) -> list[tuple]:
        where, params = self._days()
        split = self._split_day()
        if split is not None:
            where += " AND created_day <> %s"
            params.append(split)
        rows = selectors._fetchall(
            "SELECT band, score, converted,"
            " CASE WHEN converted = 1 OR disqualified = 1 OR created_day < %s THEN 1 ELSE 0 END,"
            " mql_first, SUM(leads), SUM(revenue), SUM(with_p)"
            f" FROM kpi_cube_cell WHERE {where} GROUP BY 1, 2, 3, 4, 5",
            [self._horizon_day(), *params],
        )
        if split is None:
            return rows
        return _merge_cells([*rows, *self._split_day_outcome_rows(split)])

    def _split_day_outcome_rows(self, split: dt.date) -> list[tuple]:
        facts, facts_params = _facts_for_cube()
        where, params = self._split_day_leads(split)
        return selectors._fetchall(
            "SELECT COALESCE(f.kpi_band, ''), f.kpi_score, f.converted,"
            " CASE WHEN f.converted = 1 OR f.disqualified = 1 OR f.created_at < %s"
            "      THEN 1 ELSE 0 END,"
            " f.mql_first, COUNT(*), SUM(f.revenue), COUNT(f.model_probability)"
            f" FROM ({facts} WHERE {where}) f GROUP BY 1, 2, 3, 4, 5",
            [db_datetime(self._horizon()), *facts_params, *params],
        )

    def cycle_rows(self) -> list[tuple]:
        where, params = self._days()
        if is_postgres():
            return selectors._fetchall(
                "SELECT band, COUNT(*), percentile_cont(ARRAY[0, 0.25, 0.5, 0.75, 1]::float8[])"
                " WITHIN GROUP (ORDER BY days)"
                f" FROM kpi_cube_cycle WHERE {where} GROUP BY 1",
                params,
            )
        return selectors._fetchall(f"SELECT band, days FROM kpi_cube_cycle WHERE {where}", params)

    def known_counts(self) -> tuple[int, int]:
        """(known-outcome leads, of which with a model probability)."""
        where, params = self._days()
        split = self._split_day()
        if split is not None:
            where += " AND created_day <> %s"
            params.append(split)
        total, with_p = selectors._fetchall(
            "SELECT SUM(leads), SUM(with_p) FROM kpi_cube_cell"
            f" WHERE {where} AND (converted = 1 OR disqualified = 1 OR created_day < %s)",
            [*params, self._horizon_day()],
        )[0]
        total, with_p = int(total or 0), int(with_p or 0)
        if split is not None:
            lead_where, lead_params = self._split_day_leads(split)
            extra = selectors._fetchall(
                "SELECT COUNT(*), COUNT(lp.probability)"
                f" FROM {selectors.LEAD_TABLE} l{selectors.PROBABILITY_JOIN}"
                f" WHERE {lead_where} AND (l.converted_at IS NOT NULL"
                " OR l.disqualified_at IS NOT NULL OR l.lost_at IS NOT NULL OR l.created_at < %s)",
                [*lead_params, db_datetime(self._horizon())],
            )[0]
            total, with_p = total + int(extra[0]), with_p + int(extra[1])
        return total, with_p

    def funnel(self) -> dict[str, Any]:
        where, params = self._days()
        row = selectors._fetchall(
            "SELECT SUM(leads), SUM(CASE WHEN stage >= 1 THEN leads ELSE 0 END),"
            " SUM(CASE WHEN stage >= 2 THEN leads ELSE 0 END),"
            " SUM(CASE WHEN stage >= 3 THEN leads ELSE 0 END),"
            " SUM(CASE WHEN stage >= 4 THEN leads ELSE 0 END), MIN(first_created)"
            f" FROM kpi_cube_cell WHERE {where}",
            params,
        )[0]
        counts = dict(zip(("lead", "mql", "sql", "opportunity", "customer"), row[:5], strict=True))
        return {
            **{name: int(value or 0) for name, value in counts.items()},
            "first_created": _as_datetime(row[5]),
        }

    def band_entries(self) -> list[tuple]:
        """(week, band, entries) ordered by week then band."""
        where, params = self._days()
        if self.filters.end is not None:
            entry_clause = "as_of_day < %s"
            entry_params: list[Any] = [timezone.localtime(self.filters.cutoff()).date()]
        else:
            # `reader` checked that every entry is before the cutoff.
            entry_clause, entry_params = "1 = 1", []
        if self.filters.start:
            entry_clause += " AND as_of_day >= %s"
            entry_params.append(self.filters.start)
        return [
            (_as_date(week), band, int(n))
            for week, band, n in selectors._fetchall(
                "SELECT week, band, SUM(n) FROM kpi_cube_entry"
                f" WHERE {where} AND {entry_clause} GROUP BY week, band ORDER BY week, band",
                [*params, *entry_params],
            )
        ]


def _merge_cells(rows: list[tuple]) -> list[tuple]:
    """Sum outcome rows sharing (band, score, converted, known, mql_first)."""
    merged: dict[tuple, list] = {}
    for band, score, converted, known, mql_first, leads, revenue, with_p in rows:
        key = (band, score, int(converted), int(known), int(mql_first))
        entry = merged.setdefault(key, [0, None, 0])
        entry[0] += int(leads)
        if revenue is not None:
            entry[1] = float(revenue) + (entry[1] or 0.0)
        entry[2] += int(with_p)
    return [(*key, *values) for key, values in merged.items()]


def _as_datetime(value: Any) -> dt.datetime | None:
    """A timestamp read by a raw cursor as an aware datetime (SQLite gives naive UTC values
    or text)."""
    if value is None:
        return None
    parsed = value if isinstance(value, dt.datetime) else parse_datetime(str(value))
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, dt.UTC)


def _as_date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


@dataclass(frozen=True)
class CubeState:
    """fresh: built in the current time zone and no write since. readable: fresh, or built in
    the current time zone less than KPI_CUBE_MAX_AGE_SECONDS ago (then read "as of"
    built_at)."""

    fresh: bool
    readable: bool
    built_at: dt.datetime | None
    last_entry_at: dt.datetime | None

    @property
    def as_of(self) -> dt.datetime | None:
        """What a read of the cube is "as of": None when fresh (current numbers)."""
        return None if self.fresh else self.built_at


def state() -> CubeState:
    """Whether the cube describes the data as it is now, or as it was a short while ago (see
    the module docstring), when it was built and the latest score-history time it holds."""
    rows = selectors._fetchall(
        "SELECT (SELECT time_zone FROM kpi_cube_state WHERE id = 1),"
        " (SELECT built_at FROM kpi_cube_state WHERE id = 1),"
        " (SELECT last_entry_at FROM kpi_cube_state WHERE id = 1),"
        " EXISTS (SELECT 1 FROM kpi_cube_change)",
        [],
    )
    time_zone, built_at, last_entry_at, changed = rows[0]
    built_at = _as_datetime(built_at)
    same_zone = time_zone == timezone.get_current_timezone_name() and built_at is not None
    fresh = same_zone and not changed
    max_age = dt.timedelta(seconds=settings.KPI_CUBE_MAX_AGE_SECONDS)
    young = same_zone and max_age > dt.timedelta(0) and timezone.now() - built_at < max_age
    return CubeState(fresh, fresh or young, built_at, _as_datetime(last_entry_at))


def is_fresh() -> bool:
    return state().fresh


def reader(filters: KpiFilters) -> CubeReader | None:
    """A reader when the cube can answer `filters` exactly (for the data as of its `as_of`),
    else None."""
    if (
        filters.persona
        or filters.source
        or filters.owner_id is not None
        or filters.rule_set_version is not None
    ):
        return None
    current = state()
    if not current.readable:
        return None
    # The cube holds the open leads' bands as they were at built_at: the condition must hold
    # for the runs it saw. Fresh, those are all of them.
    if not selectors._current_band_is_latest(filters.cutoff(), runs_created_before=current.as_of):
        return None
    if filters.end is None and (
        current.last_entry_at is not None and current.last_entry_at >= filters.cutoff()
    ):
        # Band entries count history before the cutoff; with a cutoff of "now" the cube's
        # days cannot split the current day, so it needs every entry to be before it.
        return None
    return CubeReader(filters, as_of=current.as_of)


def choices_if_fresh() -> dict[str, list[Any]] | None:
    """Personas, sources and owner ids of the leads from the cube when it is readable (fresh,
    or younger than KPI_CUBE_MAX_AGE_SECONDS: then as of its refresh), else None."""
    if not state().readable:
        return None
    personas = selectors._fetchall(
        "SELECT DISTINCT persona FROM kpi_cube_choice WHERE persona <> '' ORDER BY persona", []
    )
    sources = selectors._fetchall(
        "SELECT DISTINCT source FROM kpi_cube_choice WHERE source <> '' ORDER BY source", []
    )
    owners = selectors._fetchall(
        "SELECT DISTINCT owner_id FROM kpi_cube_choice WHERE owner_id IS NOT NULL", []
    )
    return {
        "personas": [p for (p,) in personas],
        "sources": [s for (s,) in sources],
        "owner_ids": [o for (o,) in owners],
    }
