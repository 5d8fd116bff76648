"""Conversion by grade (fit x engagement): one cell per pair of grid bands, with its n,
conversions, rate and Wilson 95 % interval (`scoring.kpis.stats`).

Leads count by the grade they hold now (`Lead.grade`, written by every rescore): unlike the
band KPIs there is no grade history, so a converted lead's grade is its current one. The grid
and the order of its bands (highest min_score first) come from the live rule set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q

from scoring.kpis.filters import KpiFilters
from scoring.kpis.selectors import cohort
from scoring.kpis.stats import rate, wilson_interval
from scoring.models import RuleSet
from scoring.selectors.rules import bands_best_first


@dataclass(frozen=True)
class GradeGrid:
    """`rows` are the first grid group's bands, `columns` the second's (best first); `cells`
    one dict per (row, column): grade, leads, converted, conversion_rate, ci_low, ci_high."""

    row_group: str
    column_group: str
    rows: list[str]
    columns: list[str]
    cells: list[dict[str, Any]]


def conversion_by_grade(filters: KpiFilters) -> GradeGrid | None:
    """The grid of the live rule set over the KPI cohort; None when it has no grid."""
    live = RuleSet.objects.filter(status=RuleSet.Status.PUBLISHED).first()
    if live is None or not live.grid:
        return None
    row_group, column_group = live.grid
    rows = bands_best_first(live.groups, row_group)
    columns = bands_best_first(live.groups, column_group)
    counted = {
        grade: (leads, converted)
        for grade, leads, converted in cohort(filters)
        .exclude(grade="")
        .order_by()
        .values("grade")
        .annotate(leads=Count("id"), converted=Count("id", filter=Q(converted_at__isnull=False)))
        .values_list("grade", "leads", "converted")
    }
    cells = []
    for row in rows:
        for column in columns:
            grade = row + column
            leads, converted = counted.get(grade, (0, 0))
            low, high = wilson_interval(converted, leads)
            cells.append(
                {
                    "grade": grade,
                    "row": row,
                    "column": column,
                    "leads": leads,
                    "converted": converted,
                    "conversion_rate": rate(converted, leads),
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    return GradeGrid(row_group, column_group, rows, columns, cells)


def conversion_by_account_band(filters: KpiFilters) -> list[dict[str, Any]]:
    """Per account band of the live rule set's roll-up (none without one; best first, then
    "No account band" for contacts whose account has none and "No account" for leads without
    one): accounts, contacts in the cohort, converted
    contacts, conversion rate and its Wilson 95 % interval. Accounts count by their band now."""
    live = RuleSet.objects.filter(status=RuleSet.Status.PUBLISHED).first()
    rollup = (live.account or {}) if live else {}
    if not rollup:
        # No roll-up in the live rule set: accounts have no bands to compare.
        return []
    order = [
        b["name"]
        for b in sorted(rollup.get("bands") or [], key=lambda b: b["min_score"], reverse=True)
    ]
    # A lead without an account joins to a NULL band; an account without a band has "".
    counted = {
        band: (accounts, leads, converted)
        for band, accounts, leads, converted in cohort(filters)
        .order_by()
        .values("account__band")
        .annotate(
            accounts=Count("account", distinct=True),
            leads=Count("id"),
            converted=Count("id", filter=Q(converted_at__isnull=False)),
        )
        .values_list("account__band", "accounts", "leads", "converted")
    }
    rows = []
    labels = [(name, name) for name in order]
    labels += [("", "No account band"), (None, "No account")]
    for band, label in labels:
        accounts, leads, converted = counted.get(band, (0, 0, 0))
        if band in ("", None) and not leads:
            continue
        low, high = wilson_interval(converted, leads)
        rows.append(
            {
                "account_band": label,
                "accounts": accounts,
                "leads": leads,
                "converted": converted,
                "conversion_rate": rate(converted, leads),
                "ci_low": low,
                "ci_high": high,
            }
        )
    return rows
