"""SQL aggregations behind the KPI dashboard. Each returns plain data (dataclasses, dicts);
the arithmetic on top lives in `scoring.kpis.stats` and `scoring.kpis.report`.

The honest band. For every conversion KPI a lead counts in the band it had *before it
converted*: the last `ScoreHistory` row with `as_of < converted_at` (strictly before). A lead
that has not converted counts in the band it had at the end of the period (the last row with
`as_of` before the filter's cutoff, see `KpiFilters.cutoff`). A lead with no such row is
"unscored" (band ""). A converted lead's `Lead.band` — today's band, which its later
activity inflates — is never read here (see `_facts_from_rollup` for when an open lead's is).

One statement finds that row for every lead of the cohort:
- PostgreSQL: `LEFT JOIN LATERAL (... ORDER BY as_of DESC, id DESC LIMIT 1)`, one backward
  probe of `history_lead_asof_idx (lead_id, as_of)` per lead returning band and score at once;
- elsewhere (SQLite): the same probe as a correlated subquery that returns the row's id, joined
  back by primary key.
Both are condition-for-condition the same query; the test suite runs both."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, F, Max, Min, Q
from django.db.models.functions import TruncWeek

from leadscoring.db import days_between_sql, db_datetime, is_postgres, set_local
from scoring.kpis.filters import KpiFilters
from scoring.models import (
    Band,
    Feedback,
    Lead,
    LeadProbability,
    RescoreRun,
    RuleSet,
    ScoreHistory,
)

UNSCORED = ""
# A lead with no conversion and no disqualification has a known outcome (not converted) once it
# is this old at the cutoff; younger open leads may still convert and are left out of AUC,
# lift and calibration.
OUTCOME_HORIZON_DAYS = 90

LEAD_TABLE = Lead._meta.db_table
HISTORY_TABLE = ScoreHistory._meta.db_table
# The model probability has a table of its own, joined from the lead (alias `l`) side: a lead
# without a row has none, and a row whose lead is gone is never read.
PROBABILITY_JOIN = f" LEFT JOIN {LeadProbability._meta.db_table} lp ON lp.lead_id = l.id"


# --- cohort --------------------------------------------------------------------------------


def _lead_where(filters: KpiFilters, alias: str = "l") -> tuple[str, list[Any]]:
    clauses, params = ["1 = 1"], []
    if filters.created_from():
        clauses.append(f"{alias}.created_at >= %s")
        params.append(db_datetime(filters.created_from()))
    if filters.created_before():
        clauses.append(f"{alias}.created_at < %s")
        params.append(db_datetime(filters.created_before()))
    if filters.persona:
        clauses.append(f"{alias}.persona = %s")
        params.append(filters.persona)
    if filters.source:
        clauses.append(f"{alias}.source = %s")
        params.append(filters.source)
    if filters.owner_id is not None:
        clauses.append(f"{alias}.owner_id = %s")
        params.append(filters.owner_id)
    return " AND ".join(clauses), params


def cohort(filters: KpiFilters):
    """The cohort as a Lead queryset (for ORM-shaped selectors)."""
    queryset = Lead.objects.all()
    if filters.created_from():
        queryset = queryset.filter(created_at__gte=filters.created_from())
    if filters.created_before():
        queryset = queryset.filter(created_at__lt=filters.created_before())
    if filters.persona:
        queryset = queryset.filter(persona=filters.persona)
    if filters.source:
        queryset = queryset.filter(source=filters.source)
    if filters.owner_id is not None:
        queryset = queryset.filter(owner_id=filters.owner_id)
    return queryset


def _facts_sql(filters: KpiFilters, *, converted_only: bool = False) -> tuple[str, list[Any]]:
    """One row per cohort lead with its honest band and score (`kpi_band`, `kpi_score`, both
    NULL when unscored) next to the lead columns the KPIs read."""
    version_clause, version_params = "", []
    if filters.rule_set_version is not None:
        version_clause = " AND h.rule_set_version = %s"
        version_params = [filters.rule_set_version]
    where, where_params = _lead_where(filters)
    if converted_only:
        where += " AND l.converted_at IS NOT NULL"
    # as_of < converted_at (strictly) for converters, as_of < cutoff for the others.
    probe = (
        f"FROM {HISTORY_TABLE} h WHERE h.lead_id = l.id"
        f" AND h.as_of < COALESCE(l.converted_at, %s){version_clause}"
        " ORDER BY h.as_of DESC, h.id DESC LIMIT 1"
    )
    probe_params = [db_datetime(filters.cutoff()), *version_params]
    if filters.rule_set_version is None:
        return _facts_from_rollup(filters, where, where_params, probe, probe_params)
    columns = (
        "l.id, l.created_at, l.converted_at, l.mql_at, l.disqualified_at, l.lost_at, l.revenue,"
        " lp.probability AS model_probability, hb.band AS kpi_band, hb.score AS kpi_score"
    )
    if is_postgres():
        sql = (
            f"SELECT {columns} FROM {LEAD_TABLE} l{PROBABILITY_JOIN}"
            f" LEFT JOIN LATERAL (SELECT h.band, h.score {probe}) hb ON TRUE"
            f" WHERE {where}"
        )
    else:
        sql = (
            f"SELECT {columns} FROM {LEAD_TABLE} l{PROBABILITY_JOIN}"
            f" LEFT JOIN {HISTORY_TABLE} hb ON hb.id = (SELECT h.id {probe})"
            f" WHERE {where}"
        )
    return sql, probe_params + where_params


def _facts_from_rollup(
    filters: KpiFilters, where: str, where_params: list[Any], probe: str, probe_params: list[Any]
) -> tuple[str, list[Any]]:
    """The same facts, read from the rollup where it is valid and searched in the history only
    where it is not:
    - a converter whose `conversion_band_at` equals its `converted_at` has its band before
      conversion stored (scoring.kpis.rollup);
    - a lead that has not converted has, at a cutoff after every scoring so far, the band it
      has now (`Lead.band`: each band change writes a history row, so the last row before
      such a cutoff is the current band). That holds when the newest rescore run is also the
      one with the latest `as_of` and the cutoff is after it. Its score is the current one:
      the history keeps a row only when the score moves by SCORE_HISTORY_DELTA, so its last
      row may lag the score at the cutoff by a few points;
    - every other lead gets the history search, as a scalar subquery that runs for it alone.
    Unscored is NULL, as in the plain search."""
    band, score = honest_band_score_sql(probe, current=_current_band_is_latest(filters.cutoff()))
    sql = (
        "SELECT l.id, l.created_at, l.converted_at, l.mql_at, l.disqualified_at, l.lost_at,"
        " l.revenue,"
        f" lp.probability AS model_probability, {band} AS kpi_band, {score} AS kpi_score"
        f" FROM {LEAD_TABLE} l{PROBABILITY_JOIN} WHERE {where}"
    )
    return sql, [*probe_params, *probe_params, *where_params]


def honest_band_score_sql(probe: str, *, current: bool) -> tuple[str, str]:
    """The band and score expressions of `_facts_from_rollup` over lead alias `l`; each embeds
    `probe` once (so its parameters come twice, band's first). `current`: open leads are read
    at their current band (see `_current_band_is_latest`)."""
    fresh = "l.converted_at IS NOT NULL AND l.conversion_band_at = l.converted_at"
    open_lead = "l.converted_at IS NULL" if current else "1 = 0"
    band = (
        f"CASE WHEN {fresh} THEN NULLIF(l.conversion_band, '')"
        f" WHEN {open_lead} THEN NULLIF(l.band, '') ELSE (SELECT h.band {probe}) END"
    )
    score = (
        f"CASE WHEN {fresh} THEN l.conversion_score"
        f" WHEN {open_lead} THEN l.score ELSE (SELECT h.score {probe}) END"
    )
    return band, score


def history_probe(cutoff: dt.datetime) -> tuple[str, list[Any]]:
    """The last-history-row search of `_facts_sql` without a rule-set version."""
    probe = (
        f"FROM {HISTORY_TABLE} h WHERE h.lead_id = l.id"
        " AND h.as_of < COALESCE(l.converted_at, %s)"
        " ORDER BY h.as_of DESC, h.id DESC LIMIT 1"
    )
    return probe, [db_datetime(cutoff)]


def _current_band_is_latest(
    cutoff: dt.datetime, *, runs_created_before: dt.datetime | None = None
) -> bool:
    """Whether every lead's current band is its band at `cutoff` (see _facts_from_rollup).
    `runs_created_before`: judge by the runs created before that moment only, i.e. for the
    bands the leads had then (the KPI cube read "as of" its build)."""
    runs = RescoreRun.objects.all()
    if runs_created_before is not None:
        runs = runs.filter(created_at__lt=runs_created_before)
    newest = runs.order_by("-id").values_list("as_of", flat=True).first()
    latest = runs.aggregate(latest=Max("as_of"))["latest"]
    if newest is None or latest is None:
        return False
    if not (newest == latest and latest < cutoff):
        return False
    # Real-time rescores make no run: a band they changed at or after the cutoff left a
    # history row (every band change does), and then today's band is not the one at the
    # cutoff (a period that ended in the past). MAX walks `history_asof_idx` from its end
    # whatever the table's statistics say (an EXISTS was planned as a scan of the table).
    history = ScoreHistory.objects.all()
    if runs_created_before is not None:
        history = history.filter(recorded_at__lt=runs_created_before)
    last_change = history.aggregate(last=Max("as_of"))["last"]
    return last_change is None or last_change < cutoff


@contextmanager
def _kpi_transaction() -> Iterator[None]:
    """A read transaction with PostgreSQL's JIT off: the KPI queries are many cheap index
    probes whose estimated cost triggers JIT compilation, which alone took ~240 ms of a
    ~780 ms query over 120k leads (measured); without it the same query ran in ~450 ms."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            set_local(cursor, "jit", "off")
        yield


def _fetchall(sql: str, params: list[Any]) -> list[tuple]:
    with _kpi_transaction(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# --- the outcome cube ----------------------------------------------------------------------

# The default of the selectors' `cube_reader`: look the cube up. `KpiReport` passes the reader
# it looked up once instead, so every KPI of one report comes from the same source and the
# report can say what its figures are as of.
LOOK_UP: Any = object()


def _reader(filters: KpiFilters, cube_reader: Any) -> Any:
    from scoring.kpis import cube

    return cube.reader(filters) if cube_reader is LOOK_UP else cube_reader


@dataclass(frozen=True)
class OutcomeCell:
    """Cohort leads sharing an honest band, a score and outcome flags.

    converted: converted_at is set (a won deal; a lost one never is). known: the outcome is
    known (converted, disqualified, lost - a closed non-conversion - or older than
    OUTCOME_HORIZON_DAYS at the cutoff). mql_first: mql_at is set and, for a converter, before
    converted_at. revenue: the sum of their `Lead.revenue` (None if none known).
    with_probability: how many have a model probability."""

    band: str
    score: int | None
    converted: bool
    known: bool
    mql_first: bool
    leads: int
    revenue: float | None
    with_probability: int


def outcome_cells(filters: KpiFilters, cube_reader: Any = LOOK_UP) -> list[OutcomeCell]:
    """The cohort grouped by (honest band, honest score, converted, known, mql_first): a few
    hundred rows at most, from one pass over the cohort. Bands, revenue, AUC, lift, gains, the
    qualification curve and band-rate calibration are all derived from it."""
    if (reader := _reader(filters, cube_reader)) is not None:
        rows = reader.outcome_rows()
    else:
        rows = _outcome_rows(filters)
    return [
        OutcomeCell(
            band=band or UNSCORED,
            score=None if score is None else int(score),
            converted=bool(converted),
            known=bool(known),
            mql_first=bool(mql_first),
            leads=int(leads),
            revenue=None if revenue is None else float(revenue),
            with_probability=int(with_p),
        )
        for band, score, converted, known, mql_first, leads, revenue, with_p in rows
    ]


def _outcome_rows(filters: KpiFilters) -> list[tuple]:
    facts, params = _facts_sql(filters)
    horizon = filters.cutoff() - dt.timedelta(days=OUTCOME_HORIZON_DAYS)
    sql = (
        "SELECT COALESCE(f.kpi_band, '') AS band, f.kpi_score AS score,"
        " CASE WHEN f.converted_at IS NOT NULL THEN 1 ELSE 0 END AS converted,"
        " CASE WHEN f.converted_at IS NOT NULL OR f.disqualified_at IS NOT NULL"
        " OR f.lost_at IS NOT NULL"
        "      OR f.created_at < %s THEN 1 ELSE 0 END AS known,"
        " CASE WHEN f.mql_at IS NOT NULL AND (f.converted_at IS NULL OR f.mql_at < f.converted_at)"
        "      THEN 1 ELSE 0 END AS mql_first,"
        " COUNT(*) AS leads, SUM(f.revenue) AS revenue, COUNT(f.model_probability) AS with_p"
        f" FROM ({facts}) f GROUP BY 1, 2, 3, 4, 5"
    )
    return _fetchall(sql, [db_datetime(horizon), *params])


def cycle_days_by_band(
    filters: KpiFilters, cube_reader: Any = LOOK_UP
) -> dict[str, dict[str, float | int | None]]:
    """Days from creation to conversion of the cohort's converters, per honest band:
    {band: {"n", "min", "q1", "median", "q3", "max"}} (linear-interpolated quantiles)."""
    from scoring.kpis.stats import quantiles

    reader = _reader(filters, cube_reader)
    facts, params = _facts_sql(filters, converted_only=True)
    if is_postgres():
        sql = (
            "SELECT COALESCE(f.kpi_band, ''), COUNT(*),"
            " percentile_cont(ARRAY[0, 0.25, 0.5, 0.75, 1]::float8[]) WITHIN GROUP"
            f" (ORDER BY {days_between_sql('f.created_at', 'f.converted_at')})"
            f" FROM ({facts}) f GROUP BY 1"
        )
        result = {}
        rows = reader.cycle_rows() if reader is not None else _fetchall(sql, params)
        for band, n, q in rows:
            result[band] = {
                "n": int(n),
                **dict(zip(("min", "q1", "median", "q3", "max"), q, strict=True)),
            }
        return result
    sql = (
        "SELECT COALESCE(f.kpi_band, ''),"
        f" ({days_between_sql('f.created_at', 'f.converted_at')})"
        f" FROM ({facts}) f"
    )
    grouped: dict[str, list[float]] = {}
    rows = reader.cycle_rows() if reader is not None else _fetchall(sql, params)
    for band, days in rows:
        grouped.setdefault(band, []).append(float(days))
    return {band: {"n": len(days), **quantiles(days)} for band, days in grouped.items()}


def model_calibration_deciles(filters: KpiFilters, cube_reader: Any = LOOK_UP) -> dict[str, Any]:
    """Known-outcome cohort leads ranked by their model probability into ten equal groups:
    {"leads": n known, "with_probability": n with a probability, "deciles": [{"decile",
    "leads", "predicted" (mean probability), "converted"}]}. Deciles are only computed when
    every known-outcome lead has a probability (otherwise `deciles` is empty)."""
    where, params = _lead_where(filters)
    horizon = db_datetime(filters.cutoff() - dt.timedelta(days=OUTCOME_HORIZON_DAYS))
    known = (
        "(l.converted_at IS NOT NULL OR l.disqualified_at IS NOT NULL OR l.lost_at IS NOT NULL"
        " OR l.created_at < %s)"
    )
    if (reader := _reader(filters, cube_reader)) is not None:
        total, with_p = reader.known_counts()
    else:
        counts = _fetchall(
            f"SELECT COUNT(*), COUNT(lp.probability) FROM {LEAD_TABLE} l{PROBABILITY_JOIN}"
            f" WHERE {where} AND {known}",
            [*params, horizon],
        )[0]
        total, with_p = int(counts[0]), int(counts[1])
    result: dict[str, Any] = {"leads": total, "with_probability": with_p, "deciles": []}
    if total == 0 or with_p < total:
        return result
    sql = (
        "SELECT t.decile, COUNT(*), AVG(t.p), SUM(t.converted) FROM ("
        " SELECT lp.probability AS p,"
        " CASE WHEN l.converted_at IS NOT NULL THEN 1 ELSE 0 END AS converted,"
        " NTILE(10) OVER (ORDER BY lp.probability DESC, l.id) AS decile"
        # IS NOT NULL: when the gate above came from the cube, probabilities may have been
        # cleared or leads added since (these deciles are read live).
        f" FROM {LEAD_TABLE} l{PROBABILITY_JOIN}"
        f" WHERE {where} AND {known} AND lp.probability IS NOT NULL) t"
        " GROUP BY t.decile ORDER BY t.decile"
    )
    result["deciles"] = [
        {"decile": int(d), "leads": int(n), "predicted": float(p), "converted": int(c)}
        for d, n, p, c in _fetchall(sql, [*params, horizon])
    ]
    return result


# --- other reads ---------------------------------------------------------------------------


def funnel_counts(filters: KpiFilters, cube_reader: Any = LOOK_UP) -> dict[str, Any]:
    """How many cohort leads reached each funnel stage. A lead reached a stage when it has the
    timestamp of that stage or of any later one (a lead can skip a stage in the CRM)."""
    converted = Q(converted_at__isnull=False)
    opportunity = converted | Q(opportunity_at__isnull=False)
    sql_stage = opportunity | Q(sql_at__isnull=False)
    mql = sql_stage | Q(mql_at__isnull=False)
    if (reader := _reader(filters, cube_reader)) is not None:
        return reader.funnel()
    with _kpi_transaction():
        return cohort(filters).aggregate(
            lead=Count("id"),
            mql=Count("id", filter=mql),
            sql=Count("id", filter=sql_stage),
            opportunity=Count("id", filter=opportunity),
            customer=Count("id", filter=converted),
            first_created=Min("created_at"),
        )


def band_entries_by_week(filters: KpiFilters, cube_reader: Any = LOOK_UP) -> list[dict[str, Any]]:
    """Band entries per week (Monday-based): score-history rows of cohort leads whose band
    differs from the previous one, up to the cutoff: [{"week": date, "band", "leads"}]. A lead
    that enters the same band twice in one week counts twice: counting rows rather than
    distinct leads lets PostgreSQL hash-aggregate instead of sorting every row."""
    if (reader := _reader(filters, cube_reader)) is not None:
        return [
            {"week": week, "band": band or UNSCORED, "leads": n}
            for week, band, n in reader.band_entries()
        ]
    rows = ScoreHistory.objects.filter(
        lead__in=cohort(filters).values("id"), as_of__lt=filters.cutoff()
    ).exclude(band=F("previous_band"))
    if filters.created_from():
        rows = rows.filter(as_of__gte=filters.created_from())
    if filters.rule_set_version is not None:
        rows = rows.filter(rule_set_version=filters.rule_set_version)
    aggregated = (
        rows.annotate(week=TruncWeek("as_of"))
        .values("week", "band")
        .annotate(leads=Count("id"))
        .order_by("week", "band")
    )
    with _kpi_transaction():
        return [
            {"week": row["week"].date(), "band": row["band"] or UNSCORED, "leads": row["leads"]}
            for row in aggregated
        ]


def feedback_by_band(filters: KpiFilters) -> dict[str, dict[str, int]]:
    """Per band the lead was in when sales gave the verdict: {band: {"reviewed": leads with
    any verdict, "bad": leads with at least one "bad" verdict}}."""
    rows = (
        Feedback.objects.filter(lead__in=cohort(filters).values("id"))
        .values("band")
        .annotate(
            reviewed=Count("lead_id", distinct=True),
            bad=Count("lead_id", distinct=True, filter=Q(verdict=Feedback.Verdict.BAD)),
        )
    )
    return {
        row["band"] or UNSCORED: {"reviewed": row["reviewed"], "bad": row["bad"]} for row in rows
    }


@dataclass(frozen=True)
class BandDefinition:
    name: str
    min_score: float
    qualifies: bool


@dataclass(frozen=True)
class BandScheme:
    """The bands the KPIs are reported in: the live rule set's global bands (or those of the
    version filtered on), lowest first, and which band names count as qualified."""

    rule_set_version: int | None
    bands: tuple[BandDefinition, ...]
    qualifying_names: frozenset[str]
    threshold: float | None
    floor: float
    ceiling: float


def band_scheme(filters: KpiFilters) -> BandScheme:
    """Bands of the live rule set, or of `filters.rule_set_version` when set. A band name
    qualifies when its min_score is at or above its scope's (global or persona) qualifying
    band; `threshold` is the global qualifying band's min_score."""
    if filters.rule_set_version is not None:
        rule_set = RuleSet.objects.filter(version=filters.rule_set_version).first()
    else:
        rule_set = RuleSet.objects.filter(status=RuleSet.Status.PUBLISHED).first()
    if rule_set is None:
        return BandScheme(None, (), frozenset(), None, 0.0, 100.0)
    all_bands = list(Band.objects.filter(rule_set=rule_set).order_by("min_score", "id"))
    thresholds: dict[str, float] = {}
    for band in all_bands:
        if band.qualifies:
            current = thresholds.get(band.persona)
            thresholds[band.persona] = (
                band.min_score if current is None else min(current, band.min_score)
            )
    qualifying = frozenset(
        band.name
        for band in all_bands
        if band.persona in thresholds and band.min_score >= thresholds[band.persona]
    )
    global_bands = tuple(
        BandDefinition(b.name, b.min_score, b.min_score >= thresholds.get("", float("inf")))
        for b in all_bands
        if not b.persona
    )
    return BandScheme(
        rule_set.version,
        global_bands,
        qualifying,
        thresholds.get(""),
        float(rule_set.floor),
        float(rule_set.ceiling),
    )


def filter_choices() -> dict[str, list[Any]]:
    """What the page's filter selects offer."""
    from django.contrib.auth import get_user_model

    from scoring.kpis import cube

    user_model = get_user_model()
    owner_ids = Lead.objects.exclude(owner=None).values("owner_id").distinct()
    versions = list(
        RuleSet.objects.exclude(version=None)
        .order_by("-version")
        .values("version", "name", "status")
    )
    if (cached := cube.choices_if_fresh()) is not None:
        return {
            "personas": cached["personas"],
            "sources": cached["sources"],
            "owners": list(
                user_model.objects.filter(id__in=cached["owner_ids"])
                .order_by("username")
                .values("id", "username")
            ),
            "versions": versions,
        }
    return {
        "personas": list(
            Lead.objects.exclude(persona="")
            .values_list("persona", flat=True)
            .distinct()
            .order_by("persona")
        ),
        "sources": list(
            Lead.objects.exclude(source="")
            .values_list("source", flat=True)
            .distinct()
            .order_by("source")
        ),
        "owners": list(
            user_model.objects.filter(id__in=owner_ids)
            .order_by("username")
            .values("id", "username")
        ),
        "versions": versions,
    }
