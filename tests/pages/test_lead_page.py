"""The lead page: the breakdown as checkable arithmetic, history, timeline, stages,
identities, merges and feedback."""

import datetime as dt
import json

import pytest
from django.utils import timezone

from scoring.models import LeadMerge, RuleSet
from scoring.selectors.lead_page import breakdown_line, breakdown_rows
from tests.factories import EventFactory, IdentityFactory
from tests.pages.factories import FeedbackFactory, ScoredLeadFactory, ScoreHistoryFactory


@pytest.fixture
def lead(role_users):
    return ScoredLeadFactory(
        owner=role_users["sales1"], first_name="Grace", last_name="Hopper", model_probability=0.73
    )


def test_event_entries_read_as_arithmetic_a_rep_can_check():
    entry = {
        "kind": "event",
        "label": "pricing_page_visit in 30 d",
        "points": 12.07,
        "count": 3,
        "decayed_sum": 2.4137,
        "capped": False,
        "points_per_event": 5,
    }
    assert breakdown_line(entry) == "3 events, decayed sum 2.4137 \u00d7 5 pts = 12.07"
    capped = {**entry, "points": 10.0, "capped": True}
    assert breakdown_line(capped).endswith("= 12.07, capped at 10")
    undecayed = {**entry, "decayed_sum": 3.0, "points": 15.0}
    assert breakdown_line(undecayed) == "3 events \u00d7 5 pts = 15"
    one = {**entry, "count": 1, "decayed_sum": 1.0, "points": 5.0}
    assert breakdown_line(one) == "1 event \u00d7 5 pts = 5"


def test_other_entries_show_their_signed_points():
    assert breakdown_line({"kind": "attribute", "points": 15.0}) == "matched: +15 pts"
    assert breakdown_line({"kind": "inactivity", "points": -10.0}) == "inactive: -10 pts"
    assert breakdown_line({"kind": "model", "points": 4.5}) == "blend effect +4.5 pts"


def test_a_malformed_stored_breakdown_does_not_break_the_page():
    rows, total = breakdown_rows([{"kind": "attribute", "points": 3}, "junk", None])
    assert [r["points"] for r in rows] == ["+3"]
    assert total == 3
    assert breakdown_rows({"not": "a list"}) == ([], 0)


def test_the_page_shows_score_band_persona_probability_and_the_breakdown(client_as, lead):
    response = client_as("sales1").get(f"/leads/{lead.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Grace Hopper" in html
    assert 'data-testid="lead-score">37<' in html
    assert "Warm" in html and "Executive" in html
    assert 'data-testid="model-probability">0.73<' in html
    assert "pricing_page_visit in 30 d (half-life 14 d, cap 20)" in html
    assert "5 events, decayed sum 4.3125 \u00d7 5 pts = 21.56, capped at 20" in html
    assert "Sum 37, rounded to the score 37." in html


def test_the_rounding_note_says_when_the_score_was_clamped(client_as, role_users):
    RuleSet.objects.create(name="live", status="published", version=1, floor=0, ceiling=100)
    lead = ScoredLeadFactory(
        owner=role_users["sales1"],
        score=0,
        breakdown=[{"kind": "inactivity", "label": "no activity", "points": -10}],
    )
    response = client_as("sales1").get(f"/leads/{lead.pk}/")
    assert "Sum -10, rounded to -10 and kept within the rule set&#x27;s range [0, 100]: 0." in (
        response.content.decode()
    )


def test_the_rounding_note_admits_a_breakdown_that_does_not_add_up(client_as, role_users):
    lead = ScoredLeadFactory(owner=role_users["sales1"], score=88)
    response = client_as("sales1").get(f"/leads/{lead.pk}/")
    assert "does not follow from this breakdown" in response.context["rounding_note"]


def test_the_score_history_is_a_plotly_figure_passed_as_json(client_as, lead):
    ScoreHistoryFactory(lead=lead, score=20, band="Cold")
    ScoreHistoryFactory(lead=lead, score=37, band="Warm", as_of=timezone.now() - dt.timedelta(1))
    response = client_as("sales1").get(f"/leads/{lead.pk}/")
    figure = response.context["history_figure"]
    assert figure["data"][0]["y"] == [20, 37, 37]
    assert figure["data"][0]["text"] == ["Cold", "Warm", "Warm"]
    html = response.content.decode()
    assert '<script id="history-figure" type="application/json">' in html
    # charts.js draws it, fetching the plotly bundle it is given after the load event.
    assert 'data-plotly="/static/vendor/plotly-cartesian/plotly-cartesian.min.js"' in html
    assert "js/charts.js" in html
    # No inline scripts: every <script> either loads a file or carries JSON data.
    for chunk in html.split("<script")[1:]:
        assert ' src="' in chunk.split(">")[0] or 'type="application/json"' in chunk


def test_a_lead_without_history_draws_no_chart(client_as, role_users):
    lead = ScoredLeadFactory(owner=role_users["sales1"], score=None, scored_at=None)
    response = client_as("sales1").get(f"/leads/{lead.pk}/")
    assert response.context["history_figure"] is None
    assert b"plotly-cartesian.min.js" not in response.content


def test_the_event_timeline_is_newest_first_and_paginated(client_as, lead):
    now = timezone.now()
    for days in range(30):
        EventFactory(lead=lead, event_type=f"type{days}", occurred_at=now - dt.timedelta(days))
    client = client_as("sales1")
    first = client.get(f"/leads/{lead.pk}/")
    events = first.context["events"]
    assert [e.event_type for e in events][:2] == ["type0", "type1"]
    assert events.paginator.num_pages == 2
    fragment = client.get(
        f"/leads/{lead.pk}/?events_page=2", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="timeline"
    )
    html = fragment.content.decode()
    assert html.lstrip().startswith('<section class="card" id="timeline"')
    assert "type29" in html and "type0<" not in html
    assert "<html" not in html


def test_stages_identities_and_merges_are_listed(client_as, lead):
    lead.lifecycle_stage = "sql"
    lead.mql_at = timezone.now() - dt.timedelta(days=3)
    lead.sql_at = timezone.now() - dt.timedelta(days=1)
    lead.save()
    IdentityFactory(lead=lead, source="salesforce", external_id="00Q1")
    IdentityFactory(lead=lead, source="mixpanel", external_id="mp-a")
    IdentityFactory(lead=lead, source="mixpanel", external_id="mp-b")
    LeadMerge.objects.create(
        survivor=lead, merged_lead_id=999, email="x@y.z", identities_moved=2, events_moved=7
    )
    response = client_as("sales1").get(f"/leads/{lead.pk}/")
    assert [s["stage"] for s in response.context["stages"]] == ["Lead", "MQL", "SQL"]
    html = response.content.decode()
    assert "<strong>mixpanel</strong>: mp-a, mp-b" in html
    assert "<strong>salesforce</strong>: 00Q1" in html
    assert "Lead 999 merged in" in html and "7 events moved" in html


def test_feedback_is_shown_with_who_and_when(client_as, lead, role_users):
    FeedbackFactory(lead=lead, author=role_users["manager"], reason="competitor", note="rival")
    html = client_as("sales1").get(f"/leads/{lead.pk}/").content.decode()
    assert "Competitor" in html and "by manager" in html and "rival" in html


def test_another_reps_lead_is_not_found(client_as, lead):
    assert client_as("sales2").get(f"/leads/{lead.pk}/").status_code == 404


def test_a_role_without_give_feedback_reads_the_lead_but_gets_no_form(client, lead):
    # The admin *group* (unlike a superuser) may view leads but not judge them.
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user("integrator")
    user.groups.add(Group.objects.get_or_create(name="admin")[0])
    client.force_login(user)
    response = client.get(f"/leads/{lead.pk}/")
    assert response.status_code == 200
    assert b"feedback-form" not in response.content


def test_the_figure_json_cannot_break_out_of_its_script_tag(client_as, role_users):
    lead = ScoredLeadFactory(owner=role_users["sales1"], band="</script><b>x")
    ScoreHistoryFactory(lead=lead, band="</script><b>x")
    html = client_as("sales1").get(f"/leads/{lead.pk}/").content.decode()
    data = html.split('<script id="history-figure" type="application/json">')[1]
    data = data.split("</script>")[0]
    assert json.loads(data)["data"][0]["text"][0] == "</script><b>x"
