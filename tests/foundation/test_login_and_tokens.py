"""Password guessing is locked out, API tokens are hashed at rest and bad ones throttled, the
pages carry a Content-Security-Policy, and the cache every process shares is configurable."""

from __future__ import annotations

import importlib
import re
from io import StringIO
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.test import Client
from knox.models import AuthToken

from leadscoring.env import env_cache
from tests.conftest import TEST_PASSWORD
from tests.factories import api_token

LOGIN = "/accounts/login/"


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def login(password: str, address: str = "10.0.0.1", username: str = "manager"):
    return Client(REMOTE_ADDR=address).post(LOGIN, {"username": username, "password": password})


def test_repeated_wrong_passwords_lock_the_user_out_even_with_the_right_one(role_users, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login("wrong").status_code == 200
    assert login("wrong").status_code == 429

    locked = login(TEST_PASSWORD)

    assert locked.status_code == 429
    assert b"Too many failed sign-ins" in locked.content
    assert "_auth_user_id" not in locked.wsgi_request.session


def test_the_lockout_is_per_user_and_address(role_users, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login("wrong")

    assert login(TEST_PASSWORD, address="10.0.0.2").status_code == 302
    assert login(TEST_PASSWORD, username="ops").status_code == 302


def test_an_admin_unlocks_a_locked_user(role_users, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login("wrong")

    call_command("axes_reset_username", "manager", stdout=StringIO())

    assert login(TEST_PASSWORD).status_code == 302


def test_a_success_before_the_limit_resets_the_count(role_users, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login("wrong")
    assert login(TEST_PASSWORD).status_code == 302
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login("wrong")

    assert login(TEST_PASSWORD).status_code == 302


def test_api_tokens_are_stored_hashed_and_listed_by_prefix(role_users):
    out = StringIO()
    call_command("create_api_token", "ops", stdout=out, stderr=StringIO())
    token = out.getvalue().strip().splitlines()[-1]

    stored = AuthToken.objects.get(user=role_users["ops"])
    assert token not in (stored.digest, stored.token_key)
    assert token.startswith(stored.token_key) and len(stored.token_key) < len(token) / 2
    listing = StringIO()
    call_command("api_tokens", "list", "ops", stdout=listing)
    assert stored.token_key in listing.getvalue() and token not in listing.getvalue()


def test_a_revoked_token_stops_working(role_users):
    token = api_token(role_users["ops"])
    client = Client(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/me/").status_code == 200

    call_command("api_tokens", "revoke", token[:10], stdout=StringIO())

    assert client.get("/api/v1/me/").status_code in (401, 403)


def test_a_token_made_with_an_expiry_stops_working_after_it(role_users):
    out = StringIO()
    call_command("create_api_token", "ops", "--expires-days", "1", stdout=out, stderr=StringIO())
    token = out.getvalue().strip().splitlines()[-1]
    client = Client(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/me/").status_code == 200

    AuthToken.objects.filter(user=role_users["ops"]).update(expiry="2000-01-01T00:00:00Z")

    assert client.get("/api/v1/me/").status_code in (401, 403)


def test_keep_existing_adds_a_token_beside_the_others(role_users):
    first = api_token(role_users["ops"])
    call_command("create_api_token", "ops", "--keep-existing", stdout=StringIO())

    assert AuthToken.objects.filter(user=role_users["ops"]).count() == 2
    assert Client(HTTP_AUTHORIZATION=f"Token {first}").get("/api/v1/me/").status_code == 200


def test_repeated_bad_tokens_from_one_address_are_throttled(role_users, settings):
    settings.API_AUTH_FAILURE_LIMIT = 3
    good = api_token(role_users["ops"])
    guesser = Client(REMOTE_ADDR="10.0.0.9")
    for _ in range(3):
        bad = guesser.get("/api/v1/me/", HTTP_AUTHORIZATION="Token " + "0" * 64)
        assert bad.status_code in (401, 403)

    throttled = guesser.get("/api/v1/me/", HTTP_AUTHORIZATION=f"Token {good}")

    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0
    other = Client(REMOTE_ADDR="10.0.0.10", HTTP_AUTHORIZATION=f"Token {good}")
    assert other.get("/api/v1/me/").status_code == 200


def test_plaintext_tokens_of_an_earlier_install_are_hashed_and_keep_working(role_users):
    migration = importlib.import_module(
        "scoring.migrations.0012_shared_cache_and_hashed_api_tokens"
    )
    old_key = "a" * 8 + "0123456789abcdef0123456789abcdef"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamp "
            "with time zone NOT NULL, user_id integer NOT NULL)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token VALUES (%s, CURRENT_TIMESTAMP, %s)",
            [old_key, role_users["sales1"].pk],
        )
    from django.apps import apps

    # What a migration's schema editor offers the function (SQLite refuses a real one inside
    # the test's transaction).
    editor = SimpleNamespace(
        connection=connection,
        execute=lambda sql: connection.cursor().execute(sql),
        quote_name=connection.ops.quote_name,
    )
    migration.hash_plaintext_tokens(apps, editor)

    assert "authtoken_token" not in connection.introspection.table_names()
    assert not AuthToken.objects.filter(digest=old_key).exists()
    response = Client(HTTP_AUTHORIZATION=f"Token {old_key}").get("/api/v1/me/")
    assert response.json()["username"] == "sales1"


def test_pages_carry_a_content_security_policy_without_inline_script(role_users):
    client = Client()
    client.force_login(role_users["manager"])

    policy = client.get("/kpis/")["Content-Security-Policy"]

    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["script-src"] == "'self'"
    assert directives["default-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"


def test_no_template_has_an_inline_script_or_event_handler():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "templates"
    offenders = []
    for template in root.rglob("*.html"):
        text = template.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            if "src=" not in tag and "application/json" not in tag:
                offenders.append(f"{template.name}: {tag}")
        if re.search(r"\son[a-z]+\s*=", text) or "hx-on" in text:
            offenders.append(f"{template.name}: inline event handler")
    assert offenders == []


def test_the_api_docs_load_their_script_from_our_origin(role_users):
    client = Client()
    client.force_login(role_users["ops"])

    page = client.get("/api/docs/").content.decode()

    assert "<script src=" in page
    assert not re.search(r"<script>(?!\s*</script>)", page)


@pytest.mark.parametrize(
    ("url", "backend"),
    [
        ("redis://127.0.0.1:6379/3", "django.core.cache.backends.redis.RedisCache"),
        ("dbcache://leadscoring_cache", "django.core.cache.backends.db.DatabaseCache"),
    ],
)
def test_the_shared_cache_is_chosen_by_its_url(monkeypatch, url, backend):
    monkeypatch.setenv("CACHE_URL", url)
    assert env_cache("CACHE_URL", "dbcache://x")["BACKEND"] == backend


def test_the_default_cache_table_exists_for_processes_without_redis(db):
    assert "leadscoring_cache" in connection.introspection.table_names()
