"""Fixtures for the integration tests: the environment pointing at local fake vendor servers
(real HTTP on loopback; TLS for Salesforce), no other network, no real waiting."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from integrations import config as integration_config
from integrations import services

# The connector tests' loopback guard and fake servers, reused as they are.
from tests.connectors.conftest import (  # noqa: F401
    SleepRecorder,
    _loopback_only,
    _plain_server,
    _tls_server,
    ca_bundle,
    http_server,
    https_server,
    load_bytes,
    load_json,
    tls_ca,
)
from tests.connectors.test_hubspot import FakeHubSpotCrm

NOW = datetime(2024, 3, 20, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _integration_env(monkeypatch: pytest.MonkeyPatch, settings) -> None:
    """No vendor variable leaks in from the machine; connectors never sleep for real and
    see a fixed day; secrets are encrypted with a throwaway key."""
    for name in (
        *integration_config.ENV_VARIABLES,
        "SYNC_TASK_TIME_BUDGET_SECONDS",
        "SYNC_STALE_AFTER_SECONDS",
        "SYNC_RETRY_ATTEMPTS",
        "SYNC_RETRY_MAX_DELAY",
        "INTEGRATIONS_PUSH_VENDORS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SYNC_RETRY_ATTEMPTS", "3")
    monkeypatch.setenv("SYNC_RETRY_MAX_DELAY", "30")
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> SleepRecorder:
    recorder = SleepRecorder()
    monkeypatch.setattr(services, "connector_sleep", recorder)
    monkeypatch.setattr(services, "connector_clock", lambda: NOW)
    return recorder


@pytest.fixture
def salesforce_env(monkeypatch, https_server, ca_bundle, sleeps) -> Any:  # noqa: F811
    monkeypatch.setenv("SALESFORCE_INSTANCE_URL", https_server.url_for("/").rstrip("/"))
    monkeypatch.setenv("SALESFORCE_ACCESS_TOKEN", "old-token")
    monkeypatch.setenv("SALESFORCE_CLIENT_ID", "client-id")
    monkeypatch.setenv("SALESFORCE_CLIENT_SECRET", "client-secret")
    monkeypatch.setenv("SALESFORCE_REFRESH_TOKEN", "refresh-token")
    # simple-salesforce speaks HTTPS only: trust the fake's throwaway CA the standard way.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_bundle)
    return https_server


@pytest.fixture
def hubspot_crm(http_server) -> FakeHubSpotCrm:  # noqa: F811
    """HubSpot's owners, deal pipelines, deal search and associations: none by default; a
    test sets ``hubspot_crm.deals.contacts`` (the deals) and ``serve_owners``."""
    return FakeHubSpotCrm(http_server, [], owners=False)


@pytest.fixture
def hubspot_env(monkeypatch, http_server, sleeps, hubspot_crm) -> Any:  # noqa: F811
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "hs-token")
    monkeypatch.setenv("HUBSPOT_BASE_URL", http_server.url_for("/").rstrip("/"))
    return http_server


@pytest.fixture
def mixpanel_env(monkeypatch, http_server, sleeps) -> Any:  # noqa: F811
    monkeypatch.setenv("MIXPANEL_PROJECT_ID", "2526451")
    monkeypatch.setenv("MIXPANEL_SERVICE_ACCOUNT_USERNAME", "leadscore.svc")
    monkeypatch.setenv("MIXPANEL_SERVICE_ACCOUNT_SECRET", "svc-secret")
    monkeypatch.setenv("MIXPANEL_API_BASE", http_server.url_for("/").rstrip("/"))
    monkeypatch.setenv("MIXPANEL_FROM_DATE", "2024-03-18")
    return http_server


@pytest.fixture
def run_command(capsys) -> Callable[..., tuple[dict[str, Any], int]]:
    """run_command("sync", "hubspot") -> (the printed JSON summary, exit status)."""

    def run(*args: str) -> tuple[dict[str, Any], int]:
        status = 0
        try:
            call_command(*args)
        except SystemExit as exc:  # pragma: no cover - call_command raises CommandError
            status = int(exc.code or 0)
        except Exception as exc:
            from django.core.management import CommandError

            if not isinstance(exc, CommandError):
                raise
            status = 1
        lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
        assert len(lines) == 1, lines
        return json.loads(lines[0]), status

    return run
