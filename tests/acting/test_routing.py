"""Routing: the document and its import, round robin, least loaded, capacity and fallback, the
SLA, the pages; against the real database."""

from __future__ import annotations

import datetime as dt
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from scoring.engine.routing import parse_routing, routing_to_document
from scoring.models import Feedback, Lead, LeadAssignment, LeadTransition, RoutingConfig
from scoring.services.routing import (
    RoutingInvalid,
    assignment_accept,
    route_leads,
    routing_import,
    sla_sweep,
)
from tests.factories import LeadFactory

ISSUE_DOCUMENT = {
    "rules": [
        {
            "name": "EMEA devs",
            "when": [
                {"field": "country", "op": "in", "value": ["DE", "FR"]},
                {"field": "persona", "op": "eq", "value": "Developer"},
            ],
            "team": ["sales1", "sales2"],
            "method": "round_robin",
            "daily_capacity": 20,
            "on_sla_breach": "reassign",
        }
    ],
    "fallback": {"team": ["sales1"], "method": "least_loaded"},
}


def qualified(n=1, **fields):
    values = {
        "qualified": True,
        "score": 60,
        "band": "MQL",
        "country": "DE",
        "persona": "Developer",
    }
    return [LeadFactory(**{**values, **fields}) for _ in range(n)]


def owners(leads):
    return [Lead.objects.get(pk=lead.pk).owner.username for lead in leads]


def test_the_issue_document_round_trips():
    assert routing_to_document(parse_routing(ISSUE_DOCUMENT)) == ISSUE_DOCUMENT


def test_an_invalid_import_lists_every_error_by_path_and_writes_nothing(role_users, tmp_path):
    bad = {
        "rules": [
            {
                "name": "x",
                "when": [{"field": "country", "op": "within", "value": "DE"}],
                "team": ["sales1", "nobody"],
                "method": "random",
                "daily_capacity": 0,
            }
        ],
        "fallback": {"team": []},
    }
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(bad))
    out = StringIO()
    with pytest.raises(CommandError, match="nothing was written"):
        call_command("routing", "import", str(path), stdout=out)
    errors = {e["path"]: e["error"] for e in json.loads(out.getvalue())["errors"]}
    assert set(errors) == {
        "$.rules[0].when[0].op",
        "$.rules[0].method",
        "$.rules[0].daily_capacity",
        "$.fallback.team",
    }
    assert not RoutingConfig.objects.exists()
    # Shape fixed, one unknown user left: reported by path too.
    bad["rules"][0].update(when=[], method="round_robin", daily_capacity=2)
    bad["fallback"]["team"] = ["sales1"]
    with pytest.raises(RoutingInvalid) as caught:
        routing_import(bad)
    assert [(e.path, e.message) for e in caught.value.errors] == [
        ("$.rules[0].team[1]", "no active user 'nobody'")
    ]
    assert not RoutingConfig.objects.exists()


def test_the_command_imports_a_valid_document_as_the_next_version(role_users, tmp_path):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(ISSUE_DOCUMENT))
    out = StringIO()
    call_command("routing", "import", str(path), stdout=out)
    assert json.loads(out.getvalue()) == {"imported": True, "version": 1, "rules": 1}
    call_command("routing", "import", str(path), stdout=StringIO())
    assert list(RoutingConfig.objects.values_list("version", flat=True)) == [2, 1]


def test_four_qualified_leads_split_two_and_two_round_robin(role_users):
    routing_import(ISSUE_DOCUMENT)
    leads = qualified(4)
    made = route_leads([lead.pk for lead in leads])
    assert [a.user.username for a in made] == ["sales1", "sales2", "sales1", "sales2"]
    assert owners(leads) == ["sales1", "sales2", "sales1", "sales2"]
    # The turn carries over to the next pass.
    (next_lead,) = qualified(1)
    (made_next,) = route_leads([next_lead.pk])
    assert made_next.user.username == "sales1"
    assignment = made[0]
    assert (assignment.rule, assignment.team, assignment.method) == (
        "EMEA devs",
        ["sales1", "sales2"],
        "round_robin",
    )
    assigned = LeadTransition.objects.filter(kind="assigned").order_by("pk")
    assert [t.details["owner"] for t in assigned] == [
        "sales1",
        "sales2",
        "sales1",
        "sales2",
        "sales1",
    ]
    assert assigned[0].details["rule"] == "EMEA devs"


def test_routing_twice_assigns_once_and_skips_owned_or_unqualified_leads(role_users):
    routing_import(ISSUE_DOCUMENT)
    (lead,) = qualified(1)
    owned = LeadFactory(qualified=True, owner=role_users["sales2"])
    cold = LeadFactory(qualified=False, country="DE", persona="Developer")
    assert len(route_leads([lead.pk, owned.pk, cold.pk])) == 1
    assert route_leads([lead.pk]) == []
    assert LeadAssignment.objects.count() == 1


def test_least_loaded_picks_the_rep_with_fewest_open_qualified_leads(role_users):
    document = {
        "rules": [
            {"name": "all", "when": [], "team": ["sales1", "sales2"], "method": "least_loaded"}
        ]
    }
    routing_import(document)
    LeadFactory.create_batch(2, qualified=True, owner=role_users["sales1"])
    LeadFactory(qualified=True, owner=role_users["sales2"])
    LeadFactory(qualified=True, owner=role_users["sales2"], lifecycle_stage="customer")
    leads = qualified(3)
    route_leads([lead.pk for lead in leads])
    # 2 vs 1 open: sales2 first, then tied 2-2 goes to the team's first, then sales2.
    assert owners(leads) == ["sales2", "sales1", "sales2"]


def test_a_full_team_falls_back_and_the_persona_and_band_select_the_rule(role_users):
    document = {
        "rules": [
            {
                "name": "hot devs",
                "when": [
                    {"field": "band", "op": "eq", "value": "Hot"},
                    {"field": "persona", "op": "eq", "value": "Developer"},
                ],
                "team": ["sales2"],
                "daily_capacity": 1,
            }
        ],
        "fallback": {"team": ["sales1"], "method": "least_loaded"},
    }
    routing_import(document)
    hot = qualified(2, band="Hot")
    other = qualified(1, band="MQL")
    made = route_leads([lead.pk for lead in hot + other])
    assert [(a.user.username, a.rule) for a in made] == [
        ("sales2", "hot devs"),
        ("sales1", "fallback"),
        ("sales1", "fallback"),
    ]


def _assigned(role_users, document=ISSUE_DOCUMENT, hours_ago=25):
    routing_import(document)
    (lead,) = qualified(1)
    (assignment,) = route_leads([lead.pk], now=timezone.now() - dt.timedelta(hours=hours_ago))
    return lead, assignment


def test_an_sla_breach_reassigns_to_the_next_rep_of_the_team(role_users, settings):
    settings.ROUTING_SLA_HOURS = 24
    lead, first = _assigned(role_users)
    assert first.user.username == "sales1"
    assert sla_sweep() == 1
    assert sla_sweep() == 0  # once
    first.refresh_from_db()
    assert first.sla_breached_at is not None and first.ended_at is not None
    current = LeadAssignment.objects.get(lead=lead, ended_at=None)
    assert (current.user.username, current.reason) == ("sales2", "sla_reassign")
    assert owners([lead]) == ["sales2"]
    kinds = list(
        LeadTransition.objects.filter(lead=lead).order_by("pk").values_list("kind", flat=True)
    )
    assert kinds == ["assigned", "sla_breached", "assigned"]


def test_an_sla_breach_escalates_to_the_manager_when_the_rule_says_so(role_users):
    document = json.loads(json.dumps(ISSUE_DOCUMENT))
    document["rules"][0].update(on_sla_breach="escalate", manager="manager")
    lead, _ = _assigned(role_users, document)
    sla_sweep()
    current = LeadAssignment.objects.get(lead=lead, ended_at=None)
    assert (current.user.username, current.reason, current.method) == (
        "manager",
        "sla_escalate",
        "escalate",
    )


def test_a_rep_who_acted_in_time_keeps_the_lead(role_users):
    lead, _first = _assigned(role_users)
    Feedback.objects.create(lead=lead, author=role_users["sales1"], verdict="good")
    other, _second = _assigned(role_users)
    assert assignment_accept(other, role_users["sales1"]) is False  # not theirs
    assert assignment_accept(other, role_users["sales2"]) is True
    _third, _ = _assigned(role_users, hours_ago=1)  # not yet due
    assert sla_sweep() == 0


def test_the_lead_page_shows_the_assignment_and_its_rep_accepts(client_as, role_users):
    lead, assignment = _assigned(role_users, hours_ago=1)
    rep = client_as("sales1")
    page = rep.get(f"/leads/{lead.pk}/").content.decode()
    assert "EMEA devs" in page and "round_robin" in page and "Accept" in page
    assert client_as("sales2").post(f"/leads/{lead.pk}/accept/").status_code == 404
    assert rep.post(f"/leads/{lead.pk}/accept/").status_code == 302
    assignment.refresh_from_db()
    assert assignment.accepted_at is not None


def test_ops_edit_routing_on_the_page_and_managers_only_read(client_as, role_users):
    ops = client_as("ops")
    bad = ops.post("/routing/", {"document": '{"rules": [{"name": "x"}]}'})
    assert bad.status_code == 200 and "$.rules[0].team" in bad.content.decode()
    assert not RoutingConfig.objects.exists()
    assert ops.post("/routing/", {"document": json.dumps(ISSUE_DOCUMENT)}).status_code == 302
    manager = client_as("manager")
    assert manager.post("/routing/", {"document": json.dumps(ISSUE_DOCUMENT)}).status_code == 403
    assert "EMEA devs" in manager.get("/routing/").content.decode()
    assert RoutingConfig.objects.get().created_by == role_users["ops"]
    assert manager.get("/routing/v1.json").json() == ISSUE_DOCUMENT


def test_the_workload_page_counts_open_leads_capacity_and_breaches(client_as, role_users):
    _lead, _ = _assigned(role_users)
    sla_sweep()
    route_leads([lead.pk for lead in qualified(1)])
    page = client_as("manager").get("/routing/workload/").content.decode()
    assert "sales1" in page and "sales2" in page
    from scoring.selectors.routing import rep_workload

    rows = {r.username: r for r in rep_workload()}
    assert rows["sales1"].sla_breaches_30d == 1
    assert rows["sales2"].open_qualified == 1 and rows["sales2"].capacity == 20
    assert rows["sales1"].open_qualified == 1


def test_a_breach_with_nobody_else_to_take_it_is_recorded_once(role_users):
    document = {"rules": [{"name": "solo", "when": [], "team": ["sales1"]}]}
    lead, assignment = _assigned(role_users, document)
    assert sla_sweep() == 1
    assert sla_sweep() == 0
    assignment.refresh_from_db()
    assert assignment.sla_breached_at is not None and assignment.ended_at is None
    assert LeadTransition.objects.filter(lead=lead, kind="sla_breached").count() == 1
