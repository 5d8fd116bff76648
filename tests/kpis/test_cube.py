"""The KPI cube gives exactly the numbers of the direct computation (every KPI table and the
filter choices). With KPI_CUBE_MAX_AGE_SECONDS at 0 it is read only while no write happened
since its refresh, and again, with the new numbers, once refreshed; above 0 it is read after
writes too, "as of" its refresh (which the API's X-KPI-As-Of header and the page say), until it
is older than that."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.utils import timezone

from leadscoring.db import is_postgres
from scoring.demo.seed import seed_demo
from scoring.kpis import cube, rollup, selectors
from scoring.kpis.filters import KpiFilters
from scoring.kpis.report import TABLES, KpiReport
from scoring.kpis.rollup import conversion_bands_refresh
from scoring.models import Lead, LeadProbability, RescoreRun, ScoreHistory


@pytest.fixture(autouse=True)
def strict(settings):
    """The cube read only while no write happened since its refresh (the "as of" tests below
    set a max age)."""
    settings.KPI_CUBE_MAX_AGE_SECONDS = 0


def all_tables(filters: KpiFilters) -> dict:
    report = KpiReport(filters)
    return {name: TABLES[name][0](report) for name in TABLES}


def direct_tables(filters: KpiFilters) -> dict:
    with (
        mock.patch.object(cube, "reader", return_value=None),
        mock.patch.object(cube, "choices_if_fresh", return_value=None),
    ):
        return {**all_tables(filters), "choices": selectors.filter_choices()}


def cube_tables(filters: KpiFilters) -> dict:
    assert cube.reader(filters) is not None, "the cube should answer these filters"
    assert cube.choices_if_fresh() is not None
    return {**all_tables(filters), "choices": selectors.filter_choices()}


def assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for name in want:
        assert _rounded(got[name]) == _rounded(want[name]), name


def _rounded(value):
    """Sums of floats may differ in the last bits with the order they are added in."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def periods() -> list[KpiFilters]:
    today = timezone.localdate()
    return [
        # The whole history; the 90-day outcome horizon cuts through it.
        KpiFilters(end=today),
        KpiFilters(start=today - dt.timedelta(days=200), end=today),
        # Ends far after the data: every lead's outcome known by age.
        KpiFilters(start=dt.date(2000, 1, 1), end=dt.date(2100, 1, 1)),
        KpiFilters(start=today - dt.timedelta(days=40), end=today + dt.timedelta(days=3)),
        # Until now (the page's default): the horizon falls inside a creation day.
        KpiFilters(),
        KpiFilters(start=today - dt.timedelta(days=120)),
    ]


def refresh_as_the_periodic_task() -> None:
    """What beat's kpi_rollup_refresh_task runs: the conversion bands, then the cube."""
    task = mock.Mock()
    task.name = rollup.REFRESH_TASK
    with mock.patch("celery.current_task", task):
        conversion_bands_refresh()


@pytest.fixture
def demo(db):
    seed_demo(n_leads=500, seed=11, history_months=6, events_per_lead=4)
    assert cube.cube_refresh()
    return periods()


def test_the_cube_gives_the_numbers_of_the_direct_computation(demo):
    assert Lead.objects.filter(converted_at__isnull=False).count() > 10
    assert ScoreHistory.objects.exclude(band="").exists()
    for filters in demo:
        expected = direct_tables(filters)
        assert expected["bands"] and expected["band_entries"]
        assert_same(cube_tables(filters), expected)


def test_a_new_conversion_makes_the_cube_stale_until_refreshed(demo):
    filters = demo[0]
    before = cube_tables(filters)
    lead = Lead.objects.filter(converted_at__isnull=True, band="Hot").first() or (
        Lead.objects.filter(converted_at__isnull=True).first()
    )
    lead.converted_at = timezone.now() - dt.timedelta(hours=1)
    lead.revenue = 12345.0
    lead.save(update_fields=["converted_at", "revenue"])

    assert cube.reader(filters) is None
    assert cube.choices_if_fresh() is None
    after = direct_tables(filters)
    assert after["bands"] != before["bands"]
    # Read while stale: the direct numbers, not the cube's.
    assert_same({**all_tables(filters), "choices": selectors.filter_choices()}, after)

    refresh_as_the_periodic_task()
    assert_same(cube_tables(filters), after)


def test_a_rescore_makes_the_cube_stale_until_refreshed(demo):
    filters = demo[1]
    lead = Lead.objects.filter(converted_at__isnull=True).exclude(band="Hot").first()
    now = timezone.now()
    ScoreHistory.objects.create(
        lead=lead,
        score=99,
        band="Hot",
        previous_band=lead.band,
        as_of=now,
        rule_set_version=lead.rule_set_version,
    )
    Lead.objects.filter(pk=lead.pk).update(score=99, band="Hot")
    assert cube.reader(filters) is None
    expected = direct_tables(filters)

    assert cube.cube_refresh()
    assert_same(cube_tables(filters), expected)

    # A rescore run alone (e.g. one dated later than the period's end) is a change too.
    RescoreRun.objects.filter(pk=RescoreRun.objects.order_by("-id").first().pk).update(as_of=now)
    assert cube.reader(filters) is None


@pytest.mark.parametrize(
    "overrides",
    [{"persona": "Developer"}, {"source": "web"}, {"owner_id": 1}, {"rule_set_version": 1}],
)
def test_filters_the_cube_does_not_hold_are_computed_directly(demo, overrides):
    filters = KpiFilters(end=timezone.localdate(), **overrides)
    assert cube.reader(filters) is None


def test_a_period_ending_before_the_last_rescore_is_computed_directly(demo):
    last = RescoreRun.objects.order_by("-id").first().as_of
    before_last = timezone.localtime(last).date() - dt.timedelta(days=1)
    assert cube.reader(KpiFilters(end=before_last)) is None


def test_without_a_refresh_the_cube_is_not_read(db):
    seed_demo(n_leads=50, seed=2, history_months=1, events_per_lead=2)
    Lead.objects.filter(pk=Lead.objects.first().pk).update(revenue=1.0)
    assert cube.reader(KpiFilters(end=timezone.localdate())) is None


def test_a_rescore_run_enqueues_the_refresh_instead_of_building_the_cube(
    demo, django_capture_on_commit_callbacks, sent_tasks
):
    Lead.objects.filter(pk=Lead.objects.first().pk).update(revenue=2.0)
    with (
        mock.patch.object(cube, "cube_refresh") as build,
        django_capture_on_commit_callbacks(execute=True),
    ):
        conversion_bands_refresh()
    assert sent_tasks == [(rollup.REFRESH_TASK, [])]
    build.assert_not_called()
    assert cube.reader(demo[0]) is None


def test_until_now_the_cube_needs_every_history_row_before_now(db):
    seed_demo(n_leads=60, seed=5, history_months=1, events_per_lead=2)
    lead = Lead.objects.first()
    ScoreHistory.objects.create(
        lead=lead, score=1, band="Cold", previous_band="Hot", as_of=timezone.now()
    )
    assert cube.cube_refresh()
    with_end = KpiFilters(end=timezone.localdate() + dt.timedelta(days=1))
    assert cube.reader(with_end) is not None
    # Filters taken before that row: its entry is after their cutoff.
    assert cube.reader(KpiFilters(now=timezone.now() - dt.timedelta(minutes=5))) is None
    assert cube.reader(KpiFilters()) is not None


# --- read "as of" its refresh after writes (KPI_CUBE_MAX_AGE_SECONDS > 0) -------------------


def convert_a_lead() -> None:
    lead = Lead.objects.filter(converted_at__isnull=True, band="Hot").first() or (
        Lead.objects.filter(converted_at__isnull=True).first()
    )
    lead.converted_at = timezone.now() - dt.timedelta(hours=1)
    lead.revenue = 12345.0
    lead.save(update_fields=["converted_at", "revenue"])


def built_at() -> dt.datetime:
    return cube.state().built_at


def seconds_after_the_refresh(seconds: int):
    """The clock moved to `seconds` after the cube's refresh (beat stopped meanwhile)."""
    return mock.patch.object(
        timezone, "now", return_value=built_at() + dt.timedelta(seconds=seconds)
    )


@pytest.fixture
def manager(demo):
    """A client logged in as the demo data's manager (the demo seeds the role users)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username="manager"))
    return client


@pytest.fixture
def max_age(settings):
    settings.KPI_CUBE_MAX_AGE_SECONDS = 900
    return 900


def test_after_writes_a_young_cube_is_read_as_of_its_refresh(demo, max_age, manager):
    filters = demo[0]
    before = cube_tables(filters)
    assert cube.reader(filters).as_of is None
    convert_a_lead()
    after = direct_tables(filters)
    assert after["bands"] != before["bands"]

    reader = cube.reader(filters)
    assert reader is not None and reader.as_of == built_at()
    assert cube.choices_if_fresh() is not None
    # The pre-write numbers, for every period the cube answers.
    assert_same(cube_tables(filters), before)
    report = KpiReport(filters)
    report.bands()
    assert report.stale_as_of() == built_at()

    response = manager.get("/api/v1/kpis/bands/", {"end": filters.end})
    assert response.status_code == 200
    assert response.json() == before["bands"]
    assert dt.datetime.fromisoformat(response["X-KPI-As-Of"]) == built_at()

    # Filters the cube does not hold are current, and say so.
    response = manager.get("/api/v1/kpis/bands/", {"persona": "Developer"})
    assert dt.datetime.fromisoformat(response["X-KPI-As-Of"]) > built_at()


def test_a_cube_older_than_the_max_age_is_not_read(demo, max_age, manager):
    filters = demo[0]
    convert_a_lead()
    with seconds_after_the_refresh(max_age - 60):
        assert cube.reader(filters) is not None
    with seconds_after_the_refresh(max_age + 1) as now:
        assert cube.reader(filters) is None
        assert cube.choices_if_fresh() is None
        expected = direct_tables(filters)
        assert_same({**all_tables(filters), "choices": selectors.filter_choices()}, expected)

        response = manager.get("/api/v1/kpis/bands/", {"end": filters.end})
        assert response.json() == expected["bands"]
        assert dt.datetime.fromisoformat(response["X-KPI-As-Of"]) == now.return_value


def test_a_fresh_cube_is_not_read_as_of_when_old(demo, max_age):
    with seconds_after_the_refresh(max_age + 1):
        reader = cube.reader(demo[0])
    assert reader is not None and reader.as_of is None


def test_runs_after_the_refresh_do_not_change_what_the_cube_was_built_for(demo, max_age):
    """Read as of its refresh, the cube's bands are those of the runs it saw: a run created
    later (a rescore under way, here dated after the period's end) does not stop it being read
    as of then."""
    filters = demo[1]
    convert_a_lead()
    RescoreRun.objects.create(
        rule_set=RescoreRun.objects.first().rule_set, as_of=timezone.now() + dt.timedelta(days=9)
    )
    assert cube.reader(filters) is not None
    assert cube.reader(KpiFilters(end=timezone.localdate() + dt.timedelta(days=10))) is not None


def test_the_page_says_what_its_figures_are_as_of(demo, max_age, manager):
    client = manager
    page = client.get("/kpis/", {"end": demo[0].end}).content.decode()
    assert "Figures are current" in page

    convert_a_lead()
    response = client.get("/kpis/", {"end": demo[0].end})
    page = response.content.decode()
    as_of = built_at().astimezone(dt.UTC)
    assert f"Figures as of {as_of:%H:%M} UTC, refreshed every 5 minutes" in page
    assert "changes since then are not yet included" in page
    assert dt.datetime.fromisoformat(response["X-KPI-As-Of"]) == built_at()

    with seconds_after_the_refresh(max_age + 1):
        page = client.get("/kpis/", {"end": demo[0].end}).content.decode()
    assert "Figures are current" in page


def test_probabilities_cleared_after_the_refresh_do_not_break_the_calibration(
    demo, max_age, manager
):
    # The cube said every known-outcome lead had a probability; the deciles are read live,
    # where some no longer have one (a model deactivated, say).
    LeadProbability.objects.bulk_create(
        LeadProbability(lead_id=lead_id, probability=0.3)
        for lead_id in Lead.objects.values_list("id", flat=True)
    )
    assert cube.cube_refresh()
    cleared = list(Lead.objects.order_by("id").values_list("id", flat=True)[:50])
    LeadProbability.objects.filter(lead_id__in=cleared).delete()

    response = manager.get("/api/v1/kpis/calibration/", {"end": demo[0].end})
    assert response.status_code == 200
    deciles = selectors.model_calibration_deciles(demo[0])["deciles"]
    assert deciles and all(row["predicted"] == pytest.approx(0.3) for row in deciles)


def test_the_change_log_triggers_exist_after_every_migration(db):
    # A later migration that rebuilds one of these tables (SQLite remakes a table for most
    # column changes) would drop its triggers silently, and the cube would pass for fresh.
    from django.db import connection

    watched = (
        "scoring_lead",
        "scoring_leadprobability",
        "scoring_scorehistory",
        "scoring_rescorerun",
    )
    with connection.cursor() as cursor:
        if is_postgres():
            cursor.execute(
                "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                " WHERE NOT t.tgisinternal AND t.tgname LIKE '%%kpi_cube%%'"
            )
        else:
            cursor.execute(
                "SELECT tbl_name FROM sqlite_master WHERE type = 'trigger'"
                " AND name LIKE '%kpi_cube%'"
            )
        tables = {row[0] for row in cursor.fetchall()}
    assert tables == set(watched)


def test_a_write_marks_the_cube_stale_once(db):
    from django.db import connection

    cube.cube_refresh()
    Lead.objects.create(email="one@example.com")
    Lead.objects.create(email="two@example.com")
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM kpi_cube_change")
        changes = cursor.fetchone()[0]
    assert not cube.is_fresh()
    # PostgreSQL: a row per statement; SQLite: a row only while the log was empty.
    assert changes == (2 if is_postgres() else 1)
