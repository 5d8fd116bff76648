"""One lead list: the same query string gives the same leads, in the same order, on the queue
page (/leads/), from the API (/api/v1/leads/) and in the CSV export (/leads/export.csv),
whichever of the page's or the API's parameter names it uses, and the list is the one a
plain-Python reading of the filter expects."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from scoring.models import Lead
from tests.factories import LeadFactory
from tests.pages.factories import FeedbackFactory


def _at(day: int) -> dt.datetime:
    return timezone.make_aware(dt.datetime(2024, 3, day, 12, 0))


# (key, score, band, persona, source, stage, owner, created day, first, last, company)
ROWS = [
    ("a", 95, "Hot", "Developer", "Google", "lead", "sales1", 1, "Ada", "Lovelace", "Acme"),
    ("b", 80, "Hot", "", "Referral", "mql", "sales2", 3, "Bob", "Stone", "Beta Labs"),
    ("c", 80, "Hot", "Developer", "google", "customer", None, 5, "Cy", "Acme", "Gamma"),
    ("d", 60, "MQL", "Executive", "Web", "sql", "sales1", 7, "Di", "Ng", "ACME Rockets"),
    ("e", 60, "MQL", "Executive", "Web", "disqualified", "sales2", 9, "Ed", "Ow", "Delta"),
    ("f", 40, "Warm", "", "Referral", "lead", "sales1", 11, "Fay", "Acme", "Epsilon"),
    ("g", 25, "Warm", "Developer", "Google", "opportunity", None, 13, "Gus", "Li", "Zeta"),
    ("h", 10, "Cold", "Executive", "Web", "lead", "sales1", 15, "Hal", "Mo", "Acme"),
    ("i", 0, "Cold", "", "Web", "lead", "sales2", 17, "Ida", "Po", "Eta"),
    ("j", None, "", "", "Google", "lead", "sales1", 19, "Jo", "Qi", "Acme"),
    ("k", None, "", "Developer", "Referral", "mql", None, 21, "Kim", "Ra", "Theta"),
    ("l", None, "", "", "Web", "lead", "sales2", 23, "Lu", "Sa", "Iota"),
    ("m", 55, "MQL", "", "Web", "lost", "sales1", 25, "Mo", "Ta", "Kappa"),
]


@pytest.fixture
def listed(role_users) -> dict[str, Lead]:
    leads = {}
    for key, score, band, persona, source, stage, owner, day, first, last, company in ROWS:
        leads[key] = LeadFactory(
            email=f"{key}@{company.split()[0].lower()}.test",
            score=score,
            band=band,
            persona=persona,
            source=source,
            lifecycle_stage=stage,
            owner=role_users[owner] if owner else None,
            created_at=_at(day),
            first_name=first,
            last_name=last,
            company=company,
            breakdown=[{"label": "demo request", "points": 10}] if key in "adgj" else [],
        )
    FeedbackFactory(lead=leads["b"], author=role_users["sales2"], reason="competitor")
    FeedbackFactory(lead=leads["d"], author=role_users["sales1"], verdict="good", reason="")
    # Qualified yesterday: "f" and "h" are untouched new MQLs and head the work queue; "b" has
    # feedback and "d" is an SQL already, so they keep their place by score.
    yesterday = timezone.now() - dt.timedelta(days=1)
    for key in "bdfh":
        Lead.objects.filter(pk=leads[key].pk).update(qualified=True, mql_at=yesterday)
        leads[key].refresh_from_db()
    return leads


NEW_MQLS = {"f@epsilon.test", "h@acme.test"}
CLOSED = ("customer", "lost", "disqualified")


def _sorted(leads: list[Lead], descending: bool = True, queue: bool = False) -> list[Lead]:
    if queue:
        first = [lead for lead in leads if lead.email in NEW_MQLS]
        rest = [lead for lead in leads if lead.email not in NEW_MQLS]
        return _sorted(first, descending) + _sorted(rest, descending)
    scored = [lead for lead in leads if lead.score is not None]
    unscored = [lead for lead in leads if lead.score is None]
    sign = -1 if descending else 1
    return sorted(scored, key=lambda x: (sign * x.score, sign * x.pk)) + sorted(
        unscored, key=lambda x: sign * x.pk
    )


Predicate = Callable[[Lead], bool]
CASES: list[tuple[str, Predicate]] = [
    ("", lambda x: True),
    ("band=Hot", lambda x: x.band == "Hot"),
    ("band=hot", lambda x: x.band == "Hot"),
    ("persona=developer", lambda x: x.persona == "Developer"),
    ("source=google", lambda x: x.source.lower() == "google"),
    ("stage=mql", lambda x: x.lifecycle_stage == "mql"),
    ("lifecycle_stage=mql", lambda x: x.lifecycle_stage == "mql"),
    ("owner=none", lambda x: x.owner_id is None),
    ("owner=sales2", lambda x: x.owner is not None and x.owner.username == "sales2"),
    ("open=true", lambda x: x.lifecycle_stage not in CLOSED),
    ("stage=all", lambda x: True),
    ("stage=won", lambda x: x.lifecycle_stage == "customer"),
    ("stage=lead,sql", lambda x: x.lifecycle_stage in ("lead", "sql")),
    ("stage=lead&stage=opportunity", lambda x: x.lifecycle_stage in ("lead", "opportunity")),
    ("new_mql=true", lambda x: x.email in NEW_MQLS),
    ("awaiting_feedback=true", lambda x: x.email in NEW_MQLS),
    ("score_min=25&score_max=80", lambda x: x.score is not None and 25 <= x.score <= 80),
    ("created_from=2024-03-05&created_to=2024-03-13", lambda x: 5 <= x.created_at.day <= 13),
    (
        urlencode({"created_after": _at(5).isoformat(), "created_before": _at(13).isoformat()}),
        lambda x: 5 <= x.created_at.day < 13,
    ),
    ("q=acme", lambda x: "acme" in f"{x.email} {x.first_name} {x.last_name} {x.company}".lower()),
    ("q=ada+lovelace", lambda x: x.first_name == "Ada"),
    ("q=E@Delta.test", lambda x: x.email == "e@delta.test"),
    ("feedback=bad", lambda x: x.email == "b@beta.test"),
    ("feedback=good&reason=", lambda x: x.email == "d@acme.test"),
    ("rule=demo+request", lambda x: x.email[0] in "adgj"),
    ("band=MQL&persona=Executive&open=true", lambda x: x.email == "d@acme.test"),
    ("q=acme&ordering=score", lambda x: "acme" in f"{x.email} {x.last_name} {x.company}".lower()),
]


def _page_ids(client, query: str) -> list[int]:
    """Every lead the page lists, following its next links three leads at a time."""
    ids: list[int] = []
    url = "/leads/?" + "&".join(p for p in (query, "page_size=3") if p)
    while url:
        response = client.get(url)
        assert response.status_code == 200
        assert not response.context["filter_errors"]
        ids += [row["id"] for row in response.context["page"].rows]
        next_url = response.context["next_url"]
        url = "/leads/" + next_url if next_url else None
    return ids


def _api_ids(user: Any, query: str) -> list[int]:
    client = APIClient()
    client.force_authenticate(user)
    ids: list[int] = []
    url: str | None = "/api/v1/leads/?" + "&".join(p for p in (query, "page_size=3") if p)
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        ids += [row["id"] for row in body["results"]]
        url = body["next"]
    return ids


def _export_ids(client, query: str) -> list[int]:
    response = client.get("/leads/export.csv?" + query)
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()
    return [int(row["id"]) for row in csv.DictReader(io.StringIO(body))]


@pytest.mark.parametrize("username", ["manager", "sales1"])
@pytest.mark.parametrize(("query", "predicate"), CASES, ids=[q or "(none)" for q, _ in CASES])
def test_the_page_the_api_and_the_export_list_the_same_leads_for_the_same_query(
    client_as, role_users, listed, username, query, predicate
):
    user = role_users[username]
    visible = [x for x in listed.values() if username == "manager" or x.owner_id == user.pk]
    descending = "ordering=score" not in query
    # The page and the export are the work queue: open leads unless a stage is asked for,
    # the new MQLs first unless an order is. The API asks for both explicitly.
    api_query = query
    if not any(name in query for name in ("stage=", "open=")):
        visible = [x for x in visible if x.lifecycle_stage not in CLOSED]
        api_query += "&open=true"
    queue = "ordering=" not in query
    if queue:
        api_query += "&ordering=queue"
    kept = [x for x in visible if predicate(x)]
    expected = [x.pk for x in _sorted(kept, descending, queue)]
    client = client_as(username)
    assert _page_ids(client, query) == expected
    assert _api_ids(user, api_query.lstrip("&")) == expected
    assert _export_ids(client, query) == expected


def test_the_cases_are_not_trivial(listed):
    # Each filter keeps some leads and drops others, so agreeing on it means something.
    everyone = list(listed.values())
    open_leads = [x for x in everyone if x.lifecycle_stage not in CLOSED]
    for query, predicate in CASES[1:]:
        kept = [x for x in everyone if predicate(x)]
        if query == "stage=all":
            # It keeps everything, and so lists more than the page's default (open leads).
            assert len(kept) > len(open_leads) > 0
            continue
        assert 0 < len(kept) < len(everyone), query


def test_the_api_refuses_what_the_page_reports_and_ignores(client_as, role_users, listed):
    query = "created_from=yesterday&stage=sold&band=Hot&after=garbage&stage=all"
    page = client_as("manager").get("/leads/?" + query)
    assert set(page.context["filter_errors"]) == {"created_from", "stage", "after"}
    # The broken stage is left out, so the default (open leads) applies: not "c", a customer.
    assert [row["email"] for row in page.context["page"].rows] == ["a@acme.test", "b@beta.test"]
    client = APIClient()
    client.force_authenticate(role_users["manager"])
    response = client.get("/api/v1/leads/?" + query)
    assert response.status_code == 400
    assert set(response.json()) == {"created_from", "stage", "after"}


def test_a_range_that_ends_before_it_starts_is_an_error_on_its_end(client_as, listed):
    page = client_as("manager").get("/leads/?created_from=2024-03-10&created_to=2024-03-01")
    assert set(page.context["filter_errors"]) == {"created_to"}
    # The start still applies.
    assert {row["id"] for row in page.context["page"].rows} <= {
        x.pk for x in listed.values() if x.created_at.day >= 10
    }
