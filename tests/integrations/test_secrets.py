"""Connection secrets saved on the page are encrypted at rest, and keys rotate."""

from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection as db_connection

from integrations import config as integration_config
from integrations.models import Connection

pytestmark = pytest.mark.django_db

TOKEN = "pat-na1-very-secret-token-1234"


def raw_secrets(vendor: str) -> str:
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT secrets FROM integrations_connection WHERE vendor = %s", [vendor])
        return cursor.fetchone()[0]


def test_a_token_saved_on_the_page_is_encrypted_in_the_database(client_as):
    response = client_as("admin").post(
        "/integrations/hubspot/settings",
        {"access_token": TOKEN, "base_url": "http://127.0.0.1:9"},
    )

    assert response.status_code == 302
    assert TOKEN not in raw_secrets("hubspot")
    config = integration_config.build_config("hubspot", Connection.objects.get(vendor="hubspot"))
    assert config.access_token == TOKEN
    assert config.base_url == "http://127.0.0.1:9"
    assert TOKEN not in repr(config)
    page = client_as("admin").get("/integrations/").content.decode()
    assert TOKEN not in page


def test_page_settings_override_the_environment_and_blank_keeps_the_secret(client_as, monkeypatch):
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "from-env")
    client = client_as("ops")
    client.post("/integrations/hubspot/settings", {"access_token": TOKEN})
    client.post("/integrations/hubspot/settings", {"access_token": "", "score_property": "x_s"})

    config = integration_config.build_config("hubspot", Connection.objects.get(vendor="hubspot"))
    assert (config.access_token, config.score_property) == (TOKEN, "x_s")


def test_rotate_secrets_re_encrypts_with_the_first_key(client_as, settings, capsys):
    client_as("admin").post("/integrations/hubspot/settings", {"access_token": TOKEN})
    before = raw_secrets("hubspot")
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]

    call_command("rotate_secrets")

    assert json.loads(capsys.readouterr().out) == {"rotated": 1}
    after = raw_secrets("hubspot")
    assert after != before and TOKEN not in after
    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # the old key can now be retired
    assert integration_config.decrypt_secrets(after)["access_token"] == TOKEN


def test_a_missing_key_is_a_clear_error_not_clear_text(settings):
    settings.FIELD_ENCRYPTION_KEYS = []
    with pytest.raises(integration_config.SecretsUnavailable, match="FIELD_ENCRYPTION_KEYS"):
        integration_config.encrypt_secrets({"access_token": TOKEN})


def test_a_missing_variable_is_named(run_command):
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="HUBSPOT_ACCESS_TOKEN"):
        call_command("sync", "hubspot")
