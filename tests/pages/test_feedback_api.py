"""POST /api/v1/leads/<id>/feedback/."""

import pytest
from django.test import Client

from scoring.models import Feedback
from tests.factories import api_token
from tests.pages.factories import ScoredLeadFactory


@pytest.fixture
def lead(role_users):
    return ScoredLeadFactory(owner=role_users["sales1"], score=55, band="MQL")


def post(client, lead_id, body, **extra):
    return client.post(
        f"/api/v1/leads/{lead_id}/feedback/", body, content_type="application/json", **extra
    )


def test_it_creates_the_verdict_then_edits_it(client_as, lead):
    client = client_as("sales1")
    created = post(client, lead.pk, {"verdict": "bad", "reason": "spam_or_fake", "note": "bot"})
    assert created.status_code == 201
    body = created.json()
    assert body["verdict"] == "bad" and body["reason"] == "spam_or_fake" and body["note"] == "bot"
    assert body["author"] == "sales1" and body["lead"] == lead.pk
    assert (body["band"], body["score"]) == ("MQL", 55)
    edited = post(client, lead.pk, {"verdict": "good"})
    assert edited.status_code == 200
    assert edited.json()["id"] == body["id"]
    assert Feedback.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"verdict": "bad"}, "reason"),
        ({"verdict": "bad", "reason": ""}, "reason"),
        ({"verdict": "bad", "reason": "pricey"}, "reason"),
        ({"verdict": "maybe"}, "verdict"),
        ({}, "verdict"),
        ({"verdict": "good", "note": "x" * 2001}, "note"),
    ],
)
def test_bad_bodies_get_400_with_the_field_named(client_as, lead, body, field):
    response = post(client_as("sales1"), lead.pk, body)
    assert response.status_code == 400
    assert field in response.json()
    assert not Feedback.objects.exists()


def test_a_lead_the_caller_cannot_see_is_404(client_as, lead):
    assert post(client_as("sales2"), lead.pk, {"verdict": "good"}).status_code == 404
    assert post(client_as("sales1"), 999999, {"verdict": "good"}).status_code == 404


def test_it_takes_an_api_token(role_users, lead):
    token = api_token(role_users["sales1"])
    response = post(Client(), lead.pk, {"verdict": "good"}, HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 201


def test_anonymous_callers_are_refused_without_a_redirect(db, lead):
    response = post(Client(), lead.pk, {"verdict": "good"})
    assert response.status_code in (401, 403)


def test_a_session_post_without_csrf_is_refused(role_users, lead):
    client = Client(enforce_csrf_checks=True)
    client.force_login(role_users["sales1"])
    assert post(client, lead.pk, {"verdict": "good"}).status_code == 403
    assert not Feedback.objects.exists()
