"""The KPI rollup (band before conversion stored on the lead, today's band for open leads)
gives the numbers of the plain score-history search: the same band for every lead, the same
score for every converter. (An open lead's score is its current one; the history keeps a row
only when the score moves by SCORE_HISTORY_DELTA, so its last row may lag by a few points.)"""

from __future__ import annotations

from unittest import mock

from scoring.demo.seed import seed_demo
from scoring.kpis import selectors
from scoring.kpis.filters import parse_filters
from scoring.kpis.rollup import conversion_bands_refresh
from scoring.models import Lead


def cells(filters):
    return sorted(selectors.outcome_cells(filters), key=repr)


def by_band(cell_list):
    """Leads, converters and revenue per band, and the converters' cells with their scores."""
    totals: dict[str, list] = {}
    for cell in cell_list:
        entry = totals.setdefault(cell.band, [0, 0, 0.0])
        entry[0] += cell.leads
        entry[1] += cell.leads if cell.converted else 0
        entry[2] += cell.revenue or 0.0
    converters = sorted(repr(c) for c in cell_list if c.converted)
    return totals, converters


def test_the_rollup_gives_the_numbers_of_the_history_search(db):
    seed_demo(n_leads=600, seed=3, history_months=6)
    assert Lead.objects.filter(converted_at__isnull=False).count() > 10
    filters = parse_filters({})

    with_rollup = cells(filters)
    assert Lead.objects.filter(conversion_band_at__isnull=False).exists()

    Lead.objects.update(conversion_band_at=None)
    with mock.patch.object(selectors, "_current_band_is_latest", return_value=False):
        searched = cells(filters)
    assert by_band(with_rollup) == by_band(searched)
    assert {cell.band for cell in searched} >= {"Cold", "Warm"}


def test_a_stale_rollup_is_never_read(db):
    seed_demo(n_leads=300, seed=4, history_months=3)
    filters = parse_filters({})
    expected = cells(filters)
    converter = Lead.objects.filter(converted_at__isnull=False).first()
    # A conversion time that changed after the refresh: the stored band no longer applies.
    Lead.objects.filter(pk=converter.pk).update(
        conversion_band="Hot", converted_at=converter.converted_at
    )
    Lead.objects.filter(pk=converter.pk).update(conversion_band_at=None)
    assert cells(filters) == expected
    assert conversion_bands_refresh() >= 1
    assert cells(filters) == expected


def test_a_band_changed_after_the_period_counts_at_its_band_then(db):
    # A real-time rescore makes no rescore run; one that changed an open lead's band after
    # the period's end must not move that lead in the period's numbers.
    import datetime as dt

    from django.utils import timezone

    from scoring.models import ScoreHistory

    seed_demo(n_leads=300, seed=5, history_months=3)
    end = timezone.localdate() + dt.timedelta(days=2)
    filters = parse_filters({"end": end.isoformat()})
    before = by_band(cells(filters))

    lead = Lead.objects.filter(converted_at__isnull=True, band="Cold").first()
    later = filters.cutoff() + dt.timedelta(hours=1)
    ScoreHistory.objects.create(lead=lead, as_of=later, score=95, band="Hot", previous_band="Cold")
    Lead.objects.filter(pk=lead.pk).update(band="Hot", score=95)

    assert by_band(cells(filters)) == before
    with mock.patch.object(selectors, "_current_band_is_latest", return_value=False):
        assert by_band(cells(filters)) == before
