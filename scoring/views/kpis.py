"""The KPI dashboard page (/kpis/) and its CSV exports (/kpis/export/<table>.csv).

The page parses the filters, asks `KpiReport` for every KPI once, turns each into a plotly
figure dict (`scoring.charts.kpis`) and hands the template prepared rows; `static/js/charts.js`
draws the figures from the JSON the template embeds with `json_script`. The calibration is the
one KPI the cube cannot answer (deciles of the model's probability over every known-outcome
lead: seconds at 1M leads), so the page loads it after itself, from `/kpis/calibration/`."""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from leadscoring.middleware import site_time_zone
from scoring import formatting
from scoring.api.kpis import AS_OF_HEADER, request_filters
from scoring.charts import kpis as charts
from scoring.csv_safety import csv_lines
from scoring.kpis.filters import KpiFilterError, KpiFilters, leads_queue_url
from scoring.kpis.grades import conversion_by_account_band, conversion_by_grade
from scoring.kpis.report import (
    DEFINITIONS,
    SMALL_N,
    TABLES,
    UNSCORED_LABEL,
    KpiReport,
    table_rows,
)
from scoring.kpis.selectors import filter_choices
from scoring.views.access import require

log = logging.getLogger(__name__)


def _fmt_rate(value: float | None) -> str:
    return formatting.percent(value)


def _rate_cells(row: dict[str, Any]) -> dict[str, Any]:
    """A conversion row's table cells (bands, grades, account bands alike): its rate, its
    Wilson interval, and whether its n is below SMALL_N (hatched)."""
    interval = (
        f"{_fmt_rate(row['ci_low'])} to {_fmt_rate(row['ci_high'])}"
        if row["ci_low"] is not None
        else formatting.DASH
    )
    return {
        "rate_text": _fmt_rate(row["conversion_rate"]),
        "ci_text": interval,
        "small": row["leads"] < SMALL_N,
    }


def _scored(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of real bands: "Unscored" is not a band, and a bar for it (100 % of 5 leads,
    say) misleads; the page counts those leads in a note instead."""
    return [row for row in rows if row["band"] != UNSCORED_LABEL]


def unscored_note(bands: list[dict[str, Any]], version: int | None) -> str:
    """The sentence that accounts for the leads left out of the band charts ("" when none
    are): leads with no score before their outcome (under `version`, when filtered by one)."""
    row = next((r for r in bands if r["band"] == UNSCORED_LABEL), None)
    if row is None or not row["leads"]:
        return ""
    leads, converted = row["leads"], row["converted"]
    their = "their" if leads != 1 else "its"
    what = (
        f"not scored by rule set v{version} before {their} outcome"
        if version is not None
        else f"not scored before {their} outcome"
    )
    return (
        f"{formatting.count(leads)} lead{'s' if leads != 1 else ''} "
        f"({formatting.count(converted)} converted) {'were' if leads != 1 else 'was'} {what}: "
        "counted in the totals, left out of the band charts and tables."
    )


def _refresh_minutes() -> int:
    schedule = settings.CELERY_BEAT_SCHEDULE["kpi-rollup-refresh"]["schedule"]
    return max(1, round(float(schedule) / 60))


def freshness_text(report: KpiReport) -> dict[str, Any]:
    """The line the page shows next to the filters: whether the figures are current or as of
    the KPI cube's last refresh (call after the report's figures were read)."""
    stale = report.stale_as_of()
    # Shown in the site's time zone (TIME_ZONE), named: the page runs in it (site_time_zone).
    as_of = timezone.localtime(report.as_of())
    zone = as_of.tzname() or ""
    if stale is None:
        text = f"Figures are current (computed at {as_of:%H:%M} {zone})."
    else:
        text = (
            f"Figures as of {as_of:%H:%M} {zone}, refreshed every {_refresh_minutes()} minutes;"
            " changes since then are not yet included."
        )
    return {"text": text, "stale": stale is not None, "iso": as_of.isoformat()}


@site_time_zone
@require("view_kpis")
@require_GET
def kpi_dashboard(request: HttpRequest) -> HttpResponse:
    try:
        filters = request_filters(request)
        errors: dict[str, str] = {}
    except KpiFilterError as error:
        errors = error.errors
        filters = KpiFilters()
    started = time.perf_counter()
    report = KpiReport(filters)

    def link_for(band: str | None) -> str:
        return leads_queue_url(filters, band)

    all_bands = report.bands()
    bands = _scored(all_bands)
    funnel = report.funnel()
    cycle = _scored(report.cycle())
    qualification = report.qualification()
    lift = report.lift()
    revenue = _scored(report.revenue())
    entries = _scored(report.band_entries())
    feedback = _scored(report.feedback())
    figures = {
        "fig-bands": charts.conversion_by_band(bands, link_for),
        "fig-funnel": charts.funnel(funnel, link_for),
        "fig-cycle": charts.cycle_box(cycle, link_for),
        "fig-qualification": charts.qualification_curve(qualification),
        "fig-lift": charts.lift_and_gains(lift),
        "fig-revenue": charts.revenue_by_band(revenue, link_for),
        "fig-entries": charts.band_entries_area(entries, [b["band"] for b in bands]),
        "fig-feedback": charts.feedback_share(feedback, link_for),
    }
    grade_grid = conversion_by_grade(filters)
    if grade_grid is not None:
        queue = leads_queue_url(filters)
        joiner = "&" if "?" in queue else "?"
        figures["fig-grades"] = charts.conversion_by_grade(
            grade_grid, lambda grade: f"{queue}{joiner}grade={quote(grade or '')}"
        )
    charts.mark_empty(figures)
    log.info(
        "kpis.dashboard.rendered leads=%s ms=%.0f",
        sum(b["leads"] for b in all_bands),
        (time.perf_counter() - started) * 1000,
    )
    querystring = filters.querystring()
    context = {
        "filters": filters,
        "freshness": freshness_text(report),
        "site_time_zone": settings.TIME_ZONE,
        "errors": errors,
        "choices": filter_choices(),
        "definitions": DEFINITIONS,
        "small_n": SMALL_N,
        "unscored_note": unscored_note(all_bands, filters.rule_set_version),
        "figures": figures,
        "figure_ids": list(figures),
        "exports": {name: _export_url(name, querystring) for name in TABLES},
        "band_rows": [{**row, **_rate_cells(row), "url": link_for(row["band"])} for row in bands],
        "funnel_rows": [
            {**row, "rate_text": _fmt_rate(row["rate_from_previous"])} for row in funnel
        ],
        "cycle_rows": cycle,
        "qualification": {
            **qualification,
            "precision_text": _fmt_rate(qualification["precision"]),
            "recall_text": _fmt_rate(qualification["recall"]),
        },
        "lift": lift,
        "calibration_url": _with_query("/kpis/calibration/", querystring),
        "feedback_rows": [
            {**row, "share_text": _fmt_rate(row["bad_share"]), "small": row["reviewed"] < SMALL_N}
            for row in feedback
        ],
        "entries_weeks": len({row["week"] for row in entries}),
        "all_leads_url": link_for(None),
        "grade_grid": grade_grid,
        "account_band_rows": [
            {**row, **_rate_cells(row)} for row in conversion_by_account_band(filters)
        ],
        "grade_rows": [
            {**cell, **_rate_cells(cell)} for cell in (grade_grid.cells if grade_grid else [])
        ],
    }
    response = render(request, "kpis/dashboard.html", context, status=400 if errors else 200)
    response[AS_OF_HEADER] = report.as_of().isoformat()
    return response


@site_time_zone
@require("view_kpis")
@require_GET
def kpi_calibration(request: HttpRequest) -> HttpResponse:
    """The dashboard's calibration card body, for the same filters as the page."""
    try:
        filters = request_filters(request)
    except KpiFilterError:
        filters = KpiFilters()  # the page itself reports the filter errors
    calibration = KpiReport(filters).calibration()
    figures = charts.mark_empty({"fig-calibration": charts.calibration(calibration)})
    context = {"calibration": calibration, "figures": figures}
    return render(request, "kpis/dashboard.html#calibration", context)


def _with_query(url: str, querystring: str) -> str:
    return f"{url}?{querystring}" if querystring else url


def _export_url(name: str, querystring: str) -> str:
    return _with_query(f"/kpis/export/{name}.csv", querystring)


@site_time_zone
@require("view_kpis")
@require_GET
def kpi_export(request: HttpRequest, table: str) -> HttpResponse:
    """One dashboard table as CSV, for the same filters as the page."""
    if table not in TABLES:
        raise Http404(f"No KPI table named {table!r}.")
    try:
        filters = request_filters(request)
    except KpiFilterError as error:
        message = "; ".join(f"{k}: {v}" for k, v in error.errors.items())
        return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
    report = KpiReport(filters)
    columns, rows = table_rows(report, table)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response[AS_OF_HEADER] = report.as_of().isoformat()
    response["Content-Disposition"] = f'attachment; filename="kpi-{table}.csv"'
    # Cells are escaped against formula injection by csv_lines, as in every CSV we write.
    table = [columns, *([row.get(column) for column in columns] for row in rows)]
    response.writelines(csv_lines(table))
    return response
