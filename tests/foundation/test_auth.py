"""Login everywhere but the login page and /healthz; each role lands on its own home."""

import pytest
from django.test import Client


def test_anonymous_users_are_sent_to_the_login_page(db):
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/")


def test_the_login_page_is_public(db):
    response = Client().get("/accounts/login/")
    assert response.status_code == 200
    assert b'name="password"' in response.content


def test_a_user_logs_in_with_a_password_and_lands_on_home(role_users):
    from tests.conftest import TEST_PASSWORD

    client = Client()
    response = client.post(
        "/accounts/login/", {"username": "manager", "password": TEST_PASSWORD}, follow=True
    )
    assert response.status_code == 200
    assert b"Headline numbers" in response.content


def test_a_wrong_password_is_refused(role_users):
    response = Client().post("/accounts/login/", {"username": "manager", "password": "nope"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


@pytest.mark.parametrize(
    ("username", "expected"),
    [
        ("ops", b"Scoring rules"),
        ("sales1", b"My top open leads"),
        ("manager", b"Headline numbers"),
        ("admin", b"Connections and syncs"),
    ],
)
def test_each_role_gets_a_home_page_fitting_it(client_as, username, expected):
    response = client_as(username).get("/")
    assert response.status_code == 200
    assert expected in response.content


def test_a_post_without_csrf_token_is_refused(role_users):
    client = Client(enforce_csrf_checks=True)
    client.force_login(role_users["ops"])
    response = client.post("/accounts/logout/")
    assert response.status_code == 403


def test_the_api_answers_401_to_anonymous_callers_instead_of_redirecting(db):
    response = Client().get("/api/v1/me/")
    assert response.status_code in (401, 403)
    assert response["Content-Type"].startswith("application/json")


def test_the_api_takes_a_token(role_users):
    from tests.factories import api_token

    token = api_token(role_users["sales1"])
    response = Client().get("/api/v1/me/", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 200
    assert response.json() == {"username": "sales1", "roles": ["sales"]}


def test_idle_sessions_expire(settings):
    assert settings.SESSION_SAVE_EVERY_REQUEST is True
    assert settings.SESSION_COOKIE_AGE <= 24 * 3600
