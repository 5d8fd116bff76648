"""Source keys: made by the command or on the integrations page, shown once, stored hashed,
revoked on the page; the page shows each key's last call and counts."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from integrations.models import SourceKey
from integrations.segment.services import source_key_find


def test_create_source_key_prints_the_key_as_its_last_line(db):
    out = io.StringIO()
    call_command("create_source_key", "website", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    row = SourceKey.objects.get(name="website")
    assert key.startswith(row.prefix)
    assert key not in (row.digest, row.prefix)
    assert source_key_find(key) == row


def test_create_source_key_refuses_a_taken_name(db):
    call_command("create_source_key", "website", stdout=io.StringIO())
    with pytest.raises(CommandError, match="exists"):
        call_command("create_source_key", "website", stdout=io.StringIO())


def test_the_page_makes_a_key_and_shows_it_once(client_as):
    ops = client_as("ops")
    response = ops.post("/integrations/source-keys/", {"name": "app"})
    assert response.status_code == 200
    key = response.context["new_source_key"]
    assert key and key in response.content.decode()
    assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    assert SourceKey.objects.get().created_by.username == "ops"
    page = ops.get("/integrations/").content.decode()
    assert key not in page
    assert SourceKey.objects.get().prefix in page


def test_the_page_refuses_an_empty_or_taken_name(client_as):
    ops = client_as("ops")
    assert ops.post("/integrations/source-keys/", {"name": "app"}).status_code == 200
    taken = ops.post("/integrations/source-keys/", {"name": "app"})
    assert taken.status_code == 400
    assert "exists" in taken.context["key_error"]
    assert ops.post("/integrations/source-keys/", {"name": "  "}).status_code == 400
    assert SourceKey.objects.count() == 1


def test_the_page_shows_each_keys_last_call_and_counts(client_as, segment):
    segment(
        "batch",
        {
            "batch": [
                {"type": "track", "userId": "u", "event": "e", "messageId": "a"},
                {"type": "track", "event": "e"},
            ]
        },
    )
    response = client_as("admin").get("/integrations/")
    row = response.context["source_keys"][0]
    assert (row["requests"], row["accepted"], row["rejected"]) == (1, 1, 1)
    assert row["last_call_at"] is not None
    assert "userId or anonymousId: one is required" in response.content.decode()


def test_a_revoked_key_stops_working_and_is_marked(client_as, segment):
    key_id = SourceKey.objects.get().pk
    response = client_as("ops").post(f"/integrations/source-keys/{key_id}/revoke")
    assert response.status_code == 302
    assert segment("track", {"userId": "u", "event": "e"}).status_code == 401
    assert "(revoked)" in client_as("ops").get("/integrations/").content.decode()


@pytest.mark.parametrize("username", ["sales1", "manager"])
def test_only_roles_that_manage_integrations_may_make_or_revoke_keys(
    client_as, source_key, username
):
    client = client_as(username)
    assert client.post("/integrations/source-keys/", {"name": "x"}).status_code == 403
    key_id = SourceKey.objects.get().pk
    assert client.post(f"/integrations/source-keys/{key_id}/revoke").status_code == 403
    assert SourceKey.objects.get().revoked_at is None
