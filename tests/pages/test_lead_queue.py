"""The lead queue: who sees which leads, sorting, filters, keyset pages, CSV export."""

import csv
import datetime as dt
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scoring.models import Lead
from scoring.selectors.leads import LeadCursor, lead_list, lead_list_page, lead_list_query
from tests.factories import LeadFactory
from tests.pages.factories import FeedbackFactory, ScoredLeadFactory


def lead_ids(response):
    return [row["id"] for row in response.context["page"].rows]


def test_a_sales_rep_sees_only_their_own_leads_sorted_by_score(client_as, rep_leads):
    response = client_as("sales1").get("/leads/")
    assert response.status_code == 200
    assert lead_ids(response) == [rep_leads[k].pk for k in ("hot", "mql", "warm")]
    assert b"other@delta.test" not in response.content
    assert b"My leads" in response.content


@pytest.mark.parametrize("username", ["ops", "manager", "admin"])
def test_marketing_ops_managers_and_admins_see_every_lead(client_as, rep_leads, username):
    response = client_as(username).get("/leads/")
    assert lead_ids(response) == [rep_leads[k].pk for k in ("hot", "other", "mql", "warm")]


def test_unscored_leads_come_after_every_scored_lead(client_as, rep_leads, role_users):
    unscored = LeadFactory(owner=role_users["sales1"])
    response = client_as("sales1").get("/leads/")
    assert lead_ids(response)[-1] == unscored.pk


def test_ties_on_score_are_broken_by_newest_id(client_as, role_users):
    leads = [ScoredLeadFactory(owner=role_users["sales1"], score=50) for _ in range(3)]
    response = client_as("sales1").get("/leads/")
    assert lead_ids(response) == [lead.pk for lead in reversed(leads)]


def test_keyset_pages_walk_every_lead_once_across_the_scored_and_unscored_parts(db):
    scores = [70, 70, 70, 50, 50, 10, None, None, 90, None, 0]
    for score in scores:
        LeadFactory(score=score)
    expected = [
        lead.pk
        for lead in sorted(
            Lead.objects.all(), key=lambda lead: (lead.score is None, -(lead.score or 0), -lead.pk)
        )
    ]
    seen, after = [], None
    while True:
        page = lead_list_page(Lead.objects.all(), after, size=3)
        seen += [row["id"] for row in page.rows]
        if not page.has_more:
            break
        after = LeadCursor.decode(page.next_cursor)
    assert seen == expected


def test_a_page_never_counts_the_whole_table(client_as, rep_leads):
    client = client_as("manager")
    with CaptureQueriesContext(connection) as queries:
        client.get("/leads/?band=Hot")
    lead_queries = [q["sql"] for q in queries if '"scoring_lead"' in q["sql"]]
    assert lead_queries
    assert not any("COUNT(" in sql.upper() for sql in lead_queries)


def test_the_next_page_link_carries_the_filters(client_as, role_users):
    for score in range(60):
        ScoredLeadFactory(owner=role_users["sales1"], score=score, band="Warm")
    client = client_as("sales1")
    first = client.get("/leads/?band=Warm")
    assert first.context["page"].has_more
    next_url = first.context["next_url"]
    assert "band=Warm" in next_url and "after=" in next_url
    second = client.get("/leads/" + next_url)
    assert len(lead_ids(first)) == 50
    assert len(lead_ids(second)) == 10
    assert not set(lead_ids(first)) & set(lead_ids(second))
    assert not second.context["page"].has_more


def test_a_broken_cursor_shows_the_first_page_with_a_message(client_as, rep_leads):
    response = client_as("sales1").get("/leads/?after=drop-table")
    assert response.status_code == 200
    assert "after" in response.context["filter_errors"]
    assert lead_ids(response)[0] == rep_leads["hot"].pk


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("band=MQL", ["mql"]),
        ("persona=Developer", ["warm"]),
        ("stage=customer", ["mql"]),
        ("source=hubspot", ["hot"]),
        ("q=beta", ["mql"]),
        ("q=GAMMA.test", ["warm"]),
        ("q=+MQL@Beta.test+", ["mql"]),
        ("q=ql@beta.test", []),
        ("q=Ada+Lovelace", ["hot"]),
        ("q=Globex", ["warm"]),
        ("created_from=2024-03-01&created_to=2024-03-31", ["mql"]),
        ("created_to=2024-02-15", ["hot"]),
    ],
)
def test_filters_narrow_the_queue(client_as, rep_leads, query, expected):
    Lead.objects.filter(pk=rep_leads["warm"].pk).update(persona="Developer", company="Globex")
    Lead.objects.filter(pk=rep_leads["mql"].pk).update(
        lifecycle_stage="customer",
        created_at=timezone.make_aware(dt.datetime(2024, 3, 31, 23, 30)),
    )
    Lead.objects.filter(pk=rep_leads["hot"].pk).update(
        source="hubspot",
        first_name="Ada",
        last_name="Lovelace",
        created_at=timezone.make_aware(dt.datetime(2024, 2, 15, 8, 0)),
    )
    # Every stage: the "mql" lead is a customer now, which the default (open leads) hides.
    stages = "" if "stage=" in query else "&stage=all"
    response = client_as("sales1").get(f"/leads/?{query}{stages}")
    assert lead_ids(response) == [rep_leads[k].pk for k in expected]


def test_the_owner_filter_narrows_what_managers_see(client_as, rep_leads, role_users):
    response = client_as("manager").get(f"/leads/?owner={role_users['sales2'].pk}")
    assert lead_ids(response) == [rep_leads["other"].pk]
    unassigned = LeadFactory(score=5)
    response = client_as("manager").get("/leads/?owner=none")
    assert lead_ids(response) == [unassigned.pk]


def test_a_rep_cannot_widen_the_queue_with_the_owner_filter(client_as, rep_leads, role_users):
    response = client_as("sales1").get(f"/leads/?owner={role_users['sales2'].pk}")
    assert lead_ids(response) == []


def test_bad_filter_values_are_reported_and_ignored(client_as, rep_leads):
    response = client_as("sales1").get("/leads/?created_from=yesterday&stage=nope&band=MQL")
    assert set(response.context["filter_errors"]) == {"created_from", "stage"}
    assert lead_ids(response) == [rep_leads["mql"].pk]


def test_feedback_and_rule_filters_find_the_leads_behind_the_review(rep_leads, role_users):
    FeedbackFactory(lead=rep_leads["hot"], author=role_users["sales1"], reason="competitor")
    FeedbackFactory(lead=rep_leads["mql"], author=role_users["sales1"], verdict="good", reason="")
    Lead.objects.filter(pk=rep_leads["warm"].pk).update(breakdown=[{"label": "other rule"}])

    def ids(**params):
        query, errors = lead_list_query(params)
        assert not errors
        return set(lead_list(Lead.objects.all(), query).values_list("id", flat=True))

    assert ids(feedback="bad") == {rep_leads["hot"].pk}
    assert ids(feedback="bad", reason="no_budget") == set()
    assert ids(feedback="good") == {rep_leads["mql"].pk}
    assert ids(feedback_band="Hot") == {rep_leads["hot"].pk}
    assert ids(rule="employees >= 200") == {rep_leads[k].pk for k in ("hot", "mql", "other")}
    assert ids(rule="other rule") == {rep_leads["warm"].pk}
    assert ids(rule="employees >= 200", feedback="bad") == {rep_leads["hot"].pk}


def test_the_queue_shows_the_users_own_verdict_on_each_row(client_as, rep_leads, role_users):
    FeedbackFactory(lead=rep_leads["hot"], author=role_users["sales1"], reason="competitor")
    response = client_as("sales1").get("/leads/")
    rows = {row["id"]: row for row in response.context["page"].rows}
    assert rows[rep_leads["hot"].pk]["mine"]["reason_label"] == "Competitor"
    assert rows[rep_leads["mql"].pk]["mine"] is None
    assert b'hx-post="/leads/%d/feedback/"' % rep_leads["hot"].pk in response.content


def read_csv(response):
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_the_export_streams_the_current_filter_as_csv(client_as, rep_leads):
    response = client_as("sales1").get("/leads/export.csv?band=Hot")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv"
    assert "attachment" in response["Content-Disposition"]
    rows = read_csv(response)
    assert [row["email"] for row in rows] == ["hot@acme.test"]
    assert rows[0]["score"] == "90"


def test_the_export_escapes_cells_that_a_spreadsheet_would_run(client_as, role_users):
    ScoredLeadFactory(
        owner=role_users["sales1"],
        first_name='=HYPERLINK("http://evil")',
        last_name="+1",
        company="@SUM(A1)",
        title="-2+3",
    )
    row = read_csv(client_as("sales1").get("/leads/export.csv"))[0]
    assert row["first_name"] == '\'=HYPERLINK("http://evil")'
    assert (row["last_name"], row["company"], row["title"]) == ("'+1", "'@SUM(A1)", "'-2+3")


@pytest.fixture
def live_bands(db):
    from scoring.models import Band, RescoreRun, RuleSet

    live = RuleSet.objects.create(name="live", status="published", version=3)
    for name, min_score in (("Cold", 0), ("Warm", 25), ("MQL", 50), ("Hot", 80)):
        Band.objects.create(rule_set=live, name=name, min_score=min_score)
    # Executives qualify earlier: their own band list.
    for name, min_score in (("Cold", 0), ("MQL", 40), ("Hot", 70)):
        Band.objects.create(rule_set=live, name=name, min_score=min_score, persona="Executive")
    run = RescoreRun.objects.create(rule_set=live, status="done")
    return run


def test_band_bounds_come_from_the_live_thresholds_once_the_rescore_is_done(live_bands):
    from scoring.selectors.leads import band_score_bounds

    assert band_score_bounds("Warm") == (25, 50)
    assert band_score_bounds("MQL") == (40, 80)
    assert band_score_bounds("Hot") == (70, None)
    assert band_score_bounds("Cold") == (None, 40)
    assert band_score_bounds("Legacy") is None
    live_bands.status = "running"
    live_bands.save()
    assert band_score_bounds("Warm") is None


def test_the_band_filter_with_bounds_still_finds_every_lead_in_the_band(
    client_as, rep_leads, live_bands
):
    Lead.objects.filter(pk=rep_leads["mql"].pk).update(score=42, persona="Executive")
    response = client_as("manager").get("/leads/?band=MQL")
    assert lead_ids(response) == [rep_leads["mql"].pk]
