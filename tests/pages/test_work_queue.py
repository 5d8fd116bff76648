"""The work queue a rep works from: open leads by default, the untouched new MQLs first, stage
presets, the rep's counts (SLA due included), and "next lead" on the lead page."""

import datetime as dt
import itertools

import pytest
from django.utils import timezone

from scoring.models import Lead, LeadAssignment
from scoring.selectors.leads import (
    LeadCursor,
    lead_list_page,
    new_mql_q,
    queue_counts,
    sla_due_q,
)
from scoring.services.routing import sla_sweep
from tests.pages.factories import FeedbackFactory, ScoredLeadFactory


def ids(response):
    return [row["id"] for row in response.context["page"].rows]


@pytest.fixture
def day(role_users):
    """sales1's leads: an old hot customer, a lost and a disqualified lead, two untouched new
    MQLs (one low-scored), one new MQL already flagged, and a plain open lead."""
    rep = role_users["sales1"]
    yesterday = timezone.now() - dt.timedelta(days=1)
    leads = {
        "customer": ScoredLeadFactory(owner=rep, score=100, lifecycle_stage="customer"),
        "lost": ScoredLeadFactory(owner=rep, score=95, lifecycle_stage="lost"),
        "dq": ScoredLeadFactory(owner=rep, score=90, lifecycle_stage="disqualified"),
        "open": ScoredLeadFactory(owner=rep, score=80),
        "flagged": ScoredLeadFactory(
            owner=rep, score=75, lifecycle_stage="mql", qualified=True, mql_at=yesterday
        ),
        "new_high": ScoredLeadFactory(
            owner=rep, score=70, lifecycle_stage="mql", qualified=True, mql_at=yesterday
        ),
        "new_low": ScoredLeadFactory(owner=rep, score=40, qualified=True, mql_at=yesterday),
        # Qualified a month ago: waiting for feedback, but not new any more.
        "old_mql": ScoredLeadFactory(
            owner=rep,
            score=65,
            lifecycle_stage="mql",
            qualified=True,
            mql_at=timezone.now() - dt.timedelta(days=30),
        ),
    }
    FeedbackFactory(lead=leads["flagged"], author=rep, verdict="good", reason="")
    return leads


def test_the_queue_lists_open_leads_with_the_untouched_new_mqls_first(client_as, day):
    response = client_as("sales1").get("/leads/")
    expected = ["new_high", "new_low", "open", "flagged", "old_mql"]
    assert ids(response) == [day[k].pk for k in expected]
    rows = response.context["page"].rows
    assert [row["first"] for row in rows] == [True, True, False, False, False]
    assert response.content.count(b"New MQL</span>") == 2


@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        ("open", {"new_high", "new_low", "open", "flagged", "old_mql"}),
        ("won", {"customer"}),
        ("all", {"customer", "lost", "dq", "new_high", "new_low", "open", "flagged", "old_mql"}),
        ("lost,disqualified", {"lost", "dq"}),
    ],
)
def test_the_stage_presets_and_the_multi_select_pick_stages(client_as, day, stage, expected):
    response = client_as("sales1").get(f"/leads/?stage={stage}")
    assert set(ids(response)) == {day[k].pk for k in expected}


def test_the_multi_select_sends_one_parameter_per_stage(client_as, day):
    response = client_as("sales1").get("/leads/?stage=lost&stage=customer")
    assert ids(response) == [day["customer"].pk, day["lost"].pk]
    assert response.context["selected_stages"] == {"lost", "customer"}


def test_a_preset_button_wins_over_the_stages_selected_beside_it(client_as, day):
    response = client_as("sales1").get("/leads/?stage=lost&stage=won")
    assert ids(response) == [day["customer"].pk]
    assert response.context["stage_preset"] == "won"


def test_the_default_shows_the_open_preset_as_chosen(client_as, day):
    response = client_as("sales1").get("/leads/")
    assert response.context["stage_preset"] == "open"
    assert response.context["default_open"]
    assert not response.context["filters_active"]


def test_the_export_has_the_pages_default_and_order(client_as, day):
    response = client_as("sales1").get("/leads/export.csv")
    lines = b"".join(response.streaming_content).decode().splitlines()[1:]
    exported = [int(line.split(",")[0]) for line in lines]
    assert exported == [day[k].pk for k in ("new_high", "new_low", "open", "flagged", "old_mql")]


def test_the_api_lists_every_stage_unless_asked_for_open_leads(role_users, day):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(role_users["sales1"])
    everything = [row["id"] for row in client.get("/api/v1/leads/").json()["results"]]
    assert everything[0] == day["customer"].pk
    open_only = [row["id"] for row in client.get("/api/v1/leads/?open=true").json()["results"]]
    assert set(open_only) == {
        day[k].pk for k in ("new_high", "new_low", "open", "flagged", "old_mql")
    }
    queue = client.get("/api/v1/leads/?open=true&ordering=queue").json()["results"]
    assert [row["id"] for row in queue[:2]] == [day["new_high"].pk, day["new_low"].pk]


def test_the_rep_sees_their_counts_and_each_links_to_its_leads(client_as, day):
    client = client_as("sales1")
    response = client.get("/leads/")
    counts = response.context["counts"]
    assert (counts.new_mqls, counts.awaiting_feedback) == (2, 3)
    assert b'data-testid="count-new-mqls">2<' in response.content
    new = client.get("/leads/?new_mql=true")
    assert ids(new) == [day["new_high"].pk, day["new_low"].pk]
    waiting = client.get("/leads/?awaiting_feedback=true")
    assert set(ids(waiting)) == {day[k].pk for k in ("new_high", "new_low", "old_mql")}


def test_managers_get_no_counts_over_every_lead(client_as, day):
    response = client_as("manager").get("/leads/")
    assert response.context["counts"] is None
    assert b"queue-counts" not in response.content


def test_counts_stop_at_the_cap_and_say_so(client_as, day, monkeypatch):
    from scoring.selectors import leads as lead_selectors

    monkeypatch.setattr(lead_selectors, "QUEUE_COUNT_CAP", 2)
    response = client_as("sales1").get("/leads/")
    counts = response.context["counts"]
    assert (counts.new_mqls, counts.awaiting_feedback) == (2, 3)  # 3: the cap's + 1
    assert counts.shown["new_mqls"] == "2" and counts.shown["awaiting_feedback"] == "2+"
    assert b'data-testid="count-awaiting">2+<' in response.content


def test_counts_are_of_the_given_leads_only(day, role_users):
    assert queue_counts(Lead.objects.filter(owner=role_users["sales2"])).new_mqls == 0


def test_a_lead_flagged_or_moved_on_leaves_the_leading_part(day, role_users):
    FeedbackFactory(lead=day["new_high"], author=role_users["sales1"], verdict="bad")
    Lead.objects.filter(pk=day["new_low"].pk).update(lifecycle_stage="sql")
    assert not Lead.objects.filter(new_mql_q()).exists()


def test_keyset_pages_walk_both_parts_once(day):
    leads = Lead.objects.exclude(lifecycle_stage__in=("customer", "lost", "disqualified"))
    seen, after = [], None
    while True:
        page = lead_list_page(leads, after, size=2, first=new_mql_q())
        seen += [row["id"] for row in page.rows]
        if not page.has_more:
            break
        after = LeadCursor.decode(page.next_cursor)
    assert seen == [day[k].pk for k in ("new_high", "new_low", "open", "flagged", "old_mql")]


def test_next_lead_walks_the_queue_top_down_past_the_leads_already_flagged(client_as, day):
    client = client_as("sales1")
    # "flagged" has sales1's verdict: done, so skipped.
    order = ["new_high", "new_low", "open", "old_mql"]
    for here, there in itertools.pairwise(order):
        response = client.get(f"/leads/{day[here].pk}/")
        assert response.context["next_lead"]["id"] == day[there].pk
        assert f'href="/leads/{day[there].pk}/"'.encode() in response.content
    last = client.get(f"/leads/{day['old_mql'].pk}/")
    assert last.context["next_lead"] is None
    assert b"Last lead in the queue." in last.content


def test_next_lead_keeps_the_queues_filters(client_as, day):
    response = client_as("sales1").get(f"/leads/{day['customer'].pk}/?stage=all")
    assert response.context["next_lead"]["id"] == day["lost"].pk
    assert f'href="/leads/{day["lost"].pk}/?stage=all"'.encode() in response.content


def test_a_flagged_new_mql_still_has_a_next_lead(client_as, day, role_users):
    # The page shown before the flag already links to the next new MQL (the rep flags in
    # place); reloaded after it, the lead has left the leading part and "next" continues from
    # where it now is, by score among the rest, past what the rep has flagged.
    client = client_as("sales1")
    before = client.get(f"/leads/{day['new_high'].pk}/")
    assert before.context["next_lead"]["id"] == day["new_low"].pk
    FeedbackFactory(lead=day["new_high"], author=role_users["sales1"], verdict="good")
    after = client.get(f"/leads/{day['new_high'].pk}/")
    assert after.context["next_lead"]["id"] == day["old_mql"].pk
    # Another rep's flag does not count as this rep's work.
    FeedbackFactory(lead=day["old_mql"], author=role_users["manager"], verdict="bad")
    assert client.get(f"/leads/{day['open'].pk}/").context["next_lead"]["id"] == day["old_mql"].pk


def test_the_queue_links_carry_its_filters_to_the_lead_page(client_as, day):
    response = client_as("sales1").get("/leads/?stage=won")
    assert f'href="/leads/{day["customer"].pk}/?stage=won"'.encode() in response.content


def test_the_reps_home_shows_the_head_of_the_work_queue_and_the_counts(client_as, day):
    response = client_as("sales1").get("/")
    rows = response.context["summary"]["top_leads"]
    assert [row["id"] for row in rows] == [
        day[k].pk for k in ("new_high", "new_low", "open", "flagged", "old_mql")
    ]
    assert response.context["summary"]["counts"].new_mqls == 2
    assert b'href="/leads/?new_mql=true"><strong>2</strong>' in response.content


# ---------------------------------------------------------------------------------------------
# SLA due: the rep's open assignments whose deadline is near or past


@pytest.fixture
def assignments(role_users, settings):
    """sales1's assigned qualified leads, one per case, with real assignment rows (SLA 24 h,
    "due" 4 h before the deadline), and one of sales2's past its deadline."""
    settings.ROUTING_SLA_HOURS = 24
    settings.ROUTING_SLA_DUE_SOON_HOURS = 4
    now = timezone.now()
    rep, other = role_users["sales1"], role_users["sales2"]

    def assigned(user, hours_ago, score, **fields):
        lead = ScoredLeadFactory(
            owner=user,
            score=score,
            lifecycle_stage="mql",
            qualified=True,
            mql_at=now - dt.timedelta(days=2),
        )
        LeadAssignment.objects.create(
            lead=lead,
            user=user,
            rule="r",
            method="round_robin",
            assigned_at=now - dt.timedelta(hours=hours_ago),
            **fields,
        )
        return lead

    leads = {
        "due_soon": assigned(rep, 21, 90),  # deadline in 3 h
        "overdue": assigned(rep, 30, 80),  # deadline passed, the sweep has not run yet
        "fresh": assigned(rep, 1, 70),  # deadline in 23 h
        "accepted": assigned(rep, 30, 60, accepted_at=now - dt.timedelta(hours=29)),
        "breached": assigned(rep, 30, 50, sla_breached_at=now - dt.timedelta(hours=5)),
        "ended": assigned(rep, 30, 40, ended_at=now - dt.timedelta(hours=5)),
        "acted": assigned(rep, 30, 30),
        "moved_on": assigned(rep, 30, 20),
        "others": assigned(other, 30, 85),
    }
    FeedbackFactory(lead=leads["acted"], author=rep, verdict="good", reason="")
    Lead.objects.filter(pk=leads["moved_on"].pk).update(
        lifecycle_stage="sql", sql_at=now - dt.timedelta(hours=2)
    )
    return leads


def test_the_rep_counts_sla_due_leads_and_the_count_links_to_them(client_as, assignments):
    client = client_as("sales1")
    response = client.get("/leads/")
    assert response.context["counts"].sla_due == 2
    assert b'data-testid="count-sla-due">2<' in response.content
    assert b'href="?sla_due=true"' in response.content
    due = client.get("/leads/?sla_due=true")
    assert ids(due) == [assignments["due_soon"].pk, assignments["overdue"].pk]


def test_the_due_window_follows_the_setting(assignments, role_users, settings):
    settings.ROUTING_SLA_DUE_SOON_HOURS = 0
    mine = Lead.objects.filter(owner=role_users["sales1"])
    assert queue_counts(mine).sla_due == 1  # only the overdue one
    settings.ROUTING_SLA_DUE_SOON_HOURS = 24
    assert queue_counts(mine).sla_due == 3  # the fresh one too


def test_sla_due_is_the_same_in_the_api_and_the_export(client_as, role_users, assignments):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(role_users["manager"])
    rows = api.get("/api/v1/leads/?sla_due=true").json()["results"]
    expected = [assignments[k].pk for k in ("due_soon", "others", "overdue")]
    assert [row["id"] for row in rows] == expected
    rest = {row["id"] for row in api.get("/api/v1/leads/?sla_due=false").json()["results"]}
    assert not rest & set(expected) and assignments["fresh"].pk in rest
    response = client_as("manager").get("/leads/export.csv?sla_due=true")
    lines = b"".join(response.streaming_content).decode().splitlines()[1:]
    assert [int(line.split(",")[0]) for line in lines] == expected


def test_the_sweep_breaches_the_overdue_part_of_sla_due(assignments, role_users):
    # No routing: nobody to reassign to, so the breach is recorded and the rep keeps the lead.
    assert sla_sweep() == 2  # sales1's overdue lead and sales2's
    mine = Lead.objects.filter(owner=role_users["sales1"])
    assert queue_counts(mine).sla_due == 1
    assert list(mine.filter(sla_due_q()).values_list("pk", flat=True)) == [
        assignments["due_soon"].pk
    ]
