"""The API-token service and the profile page: a user makes, sees by prefix and revokes only
their own tokens; the plain token is shown once, in the response that made it."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from knox.models import AuthToken

from scoring.selectors.api_tokens import api_tokens_of
from scoring.services.api_tokens import TokenInvalid, token_create, token_revoke

pytestmark = pytest.mark.django_db


def test_a_created_token_works_and_only_its_digest_and_prefix_are_stored(role_users):
    instance, token = token_create(role_users["sales1"], expires_days=7)

    stored = AuthToken.objects.get(pk=instance.pk)
    assert token not in (stored.digest, stored.token_key) and token.startswith(stored.token_key)
    assert stored.expiry - timezone.now() > dt.timedelta(days=6, hours=23)
    response = Client(HTTP_AUTHORIZATION=f"Token {token}").get("/api/v1/me/")
    assert response.status_code == 200


def test_token_create_refuses_an_inactive_user_and_an_expiry_out_of_range(role_users):
    user = role_users["sales1"]
    for days in (0, -1, 100_000):
        with pytest.raises(TokenInvalid):
            token_create(user, days)
    user.is_active = False
    user.save()
    with pytest.raises(TokenInvalid):
        token_create(user)
    assert not AuthToken.objects.filter(user=user).exists()


def test_a_user_revokes_only_their_own_tokens(role_users):
    own, own_token = token_create(role_users["sales1"])
    other, other_token = token_create(role_users["sales2"])

    assert token_revoke(role_users["sales1"], other.token_key) is False
    assert AuthToken.objects.filter(pk=other.pk).exists()
    assert token_revoke(role_users["sales1"], own.token_key) is True
    assert token_revoke(role_users["sales1"], own.token_key) is False

    def me(token: str) -> int:
        return Client(HTTP_AUTHORIZATION=f"Token {token}").get("/api/v1/me/").status_code

    assert me(own_token) in (401, 403)
    assert me(other_token) == 200


def test_the_selector_lists_own_tokens_newest_first_and_marks_expired_ones(role_users):
    older, _ = token_create(role_users["ops"], 1)
    AuthToken.objects.filter(pk=older.pk).update(
        created=timezone.now() - dt.timedelta(days=3),
        expiry=timezone.now() - dt.timedelta(days=2),
    )
    newer, _ = token_create(role_users["ops"])
    token_create(role_users["manager"])

    rows = api_tokens_of(role_users["ops"])

    assert [row["prefix"] for row in rows] == [newer.token_key, older.token_key]
    assert [row["expired"] for row in rows] == [False, True]
    assert rows[0]["expiry"] is None


def test_create_api_token_keeps_its_output_contract_through_the_service(role_users):
    call_command("create_api_token", "ops", stdout=StringIO(), stderr=StringIO())
    out, err = StringIO(), StringIO()
    call_command("create_api_token", "ops", "--expires-days", "3", stdout=out, stderr=err)

    token = out.getvalue().strip().splitlines()[-1]
    assert "no longer works" in err.getvalue()
    assert AuthToken.objects.filter(user=role_users["ops"]).count() == 1
    assert Client(HTTP_AUTHORIZATION=f"Token {token}").get("/api/v1/me/").status_code == 200


def test_the_profile_page_shows_a_new_token_once_and_lists_it_by_prefix(client_as, role_users):
    client = client_as("sales1")
    response = client.post("/profile/tokens/", {"expires_days": "30"})

    assert response.status_code == 200
    stored = AuthToken.objects.get(user=role_users["sales1"])
    page = response.content.decode()
    token = response.context["new_token"]
    assert token.startswith(stored.token_key) and token in page
    assert "not be shown again" in page
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    assert token not in str(dict(client.session))

    again = client.get("/profile/").content.decode()
    assert stored.token_key in again and token not in again


def test_the_profile_page_refuses_a_bad_expiry_without_making_a_token(client_as, role_users):
    response = client_as("ops").post("/profile/tokens/", {"expires_days": "0"})
    assert response.status_code == 400
    assert not AuthToken.objects.filter(user=role_users["ops"]).exists()


def test_the_revoke_button_revokes_own_tokens_and_not_anothers(client_as, role_users):
    own, _ = token_create(role_users["sales1"])
    other, _ = token_create(role_users["sales2"])
    client = client_as("sales1")

    assert client.get(f"/profile/tokens/{own.token_key}/revoke/").status_code == 405
    client.post(f"/profile/tokens/{other.token_key}/revoke/")
    response = client.post(f"/profile/tokens/{own.token_key}/revoke/", follow=True)

    assert response.status_code == 200 and "revoked" in response.content.decode()
    assert not AuthToken.objects.filter(pk=own.pk).exists()
    assert AuthToken.objects.filter(pk=other.pk).exists()


def test_the_revoke_button_needs_the_csrf_token(role_users):
    own, _ = token_create(role_users["sales1"])
    client = Client(enforce_csrf_checks=True)
    client.force_login(role_users["sales1"])
    assert client.post(f"/profile/tokens/{own.token_key}/revoke/").status_code == 403
    assert AuthToken.objects.filter(pk=own.pk).exists()


def test_the_header_links_the_profile_and_the_navigation_the_api_docs(client_as):
    page = client_as("sales1").get("/profile/").content.decode()
    assert 'href="/profile/"' in page and 'href="/api/docs/"' in page
    assert 'href="/users/"' not in page
    assert 'href="/users/"' in client_as("admin").get("/").content.decode()
