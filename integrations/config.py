"""Connection settings: the environment, overridden by what admins enter on the page.

Every vendor connection can be set up from environment variables alone (read here, through
``leadscoring.env``, at the moment a connector is built, so the same code runs against the
vendor, a sandbox or a local fake). Settings saved on the integrations page override them;
their secrets are stored encrypted with ``settings.FIELD_ENCRYPTION_KEYS`` (MultiFernet: the
first key encrypts, every key decrypts, :func:`rotate_connection_secrets` re-encrypts).

Nothing in this module logs or returns a secret in clear text except the connector configs,
whose ``repr`` hides them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from integrations.connectors.hubspot import HubSpotConfig
from integrations.connectors.mixpanel import MixpanelConfig
from integrations.connectors.salesforce import SalesforceConfig
from leadscoring.env import env_float, env_int, env_list, env_str

__all__ = [
    "ENV_VARIABLES",
    "SECRET_FIELDS",
    "NotConfigured",
    "SecretsUnavailable",
    "build_config",
    "decrypt_secrets",
    "encrypt_secrets",
    "field_status",
    "is_configured",
    "rotate_connection_secrets",
]

VendorConfig = SalesforceConfig | HubSpotConfig | MixpanelConfig


class NotConfigured(ImproperlyConfigured):
    """A connection lacks a required setting; the message names the variables."""


class SecretsUnavailable(ImproperlyConfigured):
    """Secrets cannot be encrypted or decrypted (no key configured, or none of the keys fits)."""


@dataclass(frozen=True)
class Setting:
    """One connection setting: its environment variable and whether it is a secret."""

    key: str
    env: str
    label: str
    secret: bool = False
    default: str | None = None


#: Per vendor, the settings an admin may give, in the page's order.
SETTINGS: dict[str, tuple[Setting, ...]] = {
    "salesforce": (
        Setting("instance_url", "SALESFORCE_INSTANCE_URL", "Instance URL (https://…)"),
        Setting("access_token", "SALESFORCE_ACCESS_TOKEN", "Access token", secret=True),
        Setting("client_id", "SALESFORCE_CLIENT_ID", "Connected app client id"),
        Setting("client_secret", "SALESFORCE_CLIENT_SECRET", "Client secret", secret=True),
        Setting("refresh_token", "SALESFORCE_REFRESH_TOKEN", "Refresh token", secret=True),
        Setting("api_version", "SALESFORCE_API_VERSION", "API version", default="59.0"),
        Setting("score_field", "SALESFORCE_SCORE_FIELD", "Score field", default="Lead_Score__c"),
        Setting("band_field", "SALESFORCE_BAND_FIELD", "Band field", default="Lead_Band__c"),
        Setting(
            "custom_fields", "SALESFORCE_CUSTOM_FIELDS", "Custom Lead fields (comma-separated)"
        ),
    ),
    "hubspot": (
        Setting("access_token", "HUBSPOT_ACCESS_TOKEN", "Private app token", secret=True),
        Setting("base_url", "HUBSPOT_BASE_URL", "API base URL", default="https://api.hubapi.com"),
        Setting("app_secret", "HUBSPOT_APP_SECRET", "App secret (webhooks)", secret=True),
        Setting("client_id", "HUBSPOT_CLIENT_ID", "OAuth client id"),
        Setting("client_secret", "HUBSPOT_CLIENT_SECRET", "OAuth client secret", secret=True),
        Setting("refresh_token", "HUBSPOT_REFRESH_TOKEN", "OAuth refresh token", secret=True),
        Setting("score_property", "HUBSPOT_SCORE_PROPERTY", "Score property", default="lead_score"),
        Setting("band_property", "HUBSPOT_BAND_PROPERTY", "Band property", default="lead_band"),
        Setting("properties", "HUBSPOT_PROPERTIES", "Extra contact properties (comma-separated)"),
    ),
    "mixpanel": (
        Setting("project_id", "MIXPANEL_PROJECT_ID", "Project id"),
        Setting("username", "MIXPANEL_SERVICE_ACCOUNT_USERNAME", "Service account username"),
        Setting("secret", "MIXPANEL_SERVICE_ACCOUNT_SECRET", "Service account secret", secret=True),
        Setting(
            "api_base", "MIXPANEL_API_BASE", "Export API base", default="https://data.mixpanel.com"
        ),
        Setting("query_base", "MIXPANEL_QUERY_BASE", "Query API base (engage)"),
        Setting("from_date", "MIXPANEL_FROM_DATE", "First day to export (YYYY-MM-DD)"),
        Setting(
            "project_timezone", "MIXPANEL_PROJECT_TIMEZONE", "Project time zone", default="UTC"
        ),
    ),
}

#: Every environment variable the integrations read, for the README and the page.
ENV_VARIABLES: tuple[str, ...] = tuple(s.env for group in SETTINGS.values() for s in group)
SECRET_FIELDS: dict[str, frozenset[str]] = {
    vendor: frozenset(s.key for s in group if s.secret) for vendor, group in SETTINGS.items()
}


# --------------------------------------------------------------------------------------------
# Encryption at rest
# --------------------------------------------------------------------------------------------


def _fernet() -> MultiFernet:
    keys = [key for key in settings.FIELD_ENCRYPTION_KEYS if key]
    if not keys:
        raise SecretsUnavailable(
            "FIELD_ENCRYPTION_KEYS is not set: generate a key with "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key()"
            ".decode())'` before saving connection secrets."
        )
    try:
        return MultiFernet([Fernet(key.encode() if isinstance(key, str) else key) for key in keys])
    except (ValueError, TypeError):
        raise SecretsUnavailable(
            "FIELD_ENCRYPTION_KEYS holds a value that is not a Fernet key (32 url-safe "
            "base64-encoded bytes)."
        ) from None


def encrypt_secrets(values: dict[str, str]) -> str:
    """A Fernet token of ``values`` (JSON) under the first key; ``""`` for no secrets."""
    cleaned = {key: value for key, value in values.items() if value}
    if not cleaned:
        return ""
    return _fernet().encrypt(json.dumps(cleaned, sort_keys=True).encode()).decode()


def decrypt_secrets(token: str) -> dict[str, str]:
    """The secrets stored in ``token``; raises :class:`SecretsUnavailable` when no key fits."""
    if not token:
        return {}
    try:
        data = json.loads(_fernet().decrypt(token.encode()))
    except InvalidToken:
        raise SecretsUnavailable(
            "stored connection secrets cannot be decrypted with FIELD_ENCRYPTION_KEYS "
            "(was a key removed before `manage.py rotate_secrets` ran?)"
        ) from None
    return {str(key): str(value) for key, value in data.items()}


def rotate_connection_secrets() -> int:
    """Re-encrypt every connection's secrets with the first key; returns how many changed."""
    from integrations.models import Connection

    fernet = _fernet()
    rotated = 0
    # All or nothing: a row no key can read stops the rotation before anything is written.
    with transaction.atomic():
        rotated = _rotate_all(Connection, fernet)
    return rotated


def _rotate_all(model: Any, fernet: MultiFernet) -> int:
    rotated = 0
    for connection in model.objects.select_for_update().exclude(secrets=""):
        try:
            token = fernet.rotate(connection.secrets.encode()).decode()
        except InvalidToken:
            raise SecretsUnavailable(
                f"the secrets of connection {connection.pk} cannot be decrypted with any key "
                "in FIELD_ENCRYPTION_KEYS"
            ) from None
        model.objects.filter(pk=connection.pk).update(secrets=token)
        rotated += 1
    return rotated


# --------------------------------------------------------------------------------------------
# Resolving a vendor's settings and building its connector config
# --------------------------------------------------------------------------------------------


def _stored(connection: Any) -> tuple[dict[str, Any], dict[str, str]]:
    if connection is None:
        return {}, {}
    return dict(connection.options or {}), decrypt_secrets(connection.secrets)


def resolve(vendor: str, connection: Any = None) -> dict[str, str | None]:
    """The effective value of every setting of ``vendor``: page value, else environment,
    else default. Contains secrets: never log or render the result."""
    if vendor not in SETTINGS:
        raise NotConfigured(f"unknown vendor {vendor!r}: use one of {', '.join(SETTINGS)}")
    options, secrets = _stored(connection)
    values: dict[str, str | None] = {}
    for setting in SETTINGS[vendor]:
        stored = (secrets if setting.secret else options).get(setting.key)
        values[setting.key] = stored or env_str(setting.env) or setting.default
    return values


def field_status(vendor: str, connection: Any = None) -> list[dict[str, Any]]:
    """For the page: each setting, where its value comes from, and (non-secrets only) the
    value. Secrets are reported as set or not, never shown."""
    options, secrets = _stored(connection)
    rows = []
    for setting in SETTINGS[vendor]:
        page_value = (secrets if setting.secret else options).get(setting.key)
        env_value = env_str(setting.env)
        origin = "page" if page_value else "environment" if env_value else ""
        value = page_value or env_value or setting.default
        rows.append(
            {
                "key": setting.key,
                "env": setting.env,
                "label": setting.label,
                "secret": setting.secret,
                "origin": origin or ("default" if setting.default else ""),
                "is_set": bool(value),
                "value": "" if setting.secret else (value or ""),
            }
        )
    return rows


def _require(vendor: str, values: dict[str, str | None], *keys: str) -> None:
    by_key = {s.key: s for s in SETTINGS[vendor]}
    missing = [by_key[key].env for key in keys if not values.get(key)]
    if missing:
        raise NotConfigured(
            f"{vendor} is not configured: set {', '.join(missing)} (environment or the "
            "integrations page)"
        )


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


def _mixpanel_query_base(api_base: str) -> str:
    # Mixpanel's export API lives on data(-eu).mixpanel.com, its query API on (eu.)mixpanel.com;
    # any other base (a proxy, a local fake) serves both.
    parts = urlsplit(api_base)
    host = parts.hostname or ""
    for prefix, replacement in (("data-", ""), ("data.", "")):
        if host.startswith(prefix) and host.endswith("mixpanel.com"):
            return urlunsplit(parts._replace(netloc=replacement + host[len(prefix) :]))
    return api_base


def build_config(vendor: str, connection: Any = None) -> VendorConfig:
    """The connector config of ``vendor`` from the page settings and the environment.

    Raises :class:`NotConfigured` naming the missing variables, or when a value is malformed
    (the connector configs validate field names and URLs)."""
    values = resolve(vendor, connection)
    throttle = env_float("INTEGRATIONS_THROTTLE_THRESHOLD", 0.8)
    try:
        if vendor == "salesforce":
            _require(vendor, values, "instance_url")
            if not values["access_token"]:
                _require(vendor, values, "client_id", "client_secret", "refresh_token")
            return SalesforceConfig(
                instance_url=str(values["instance_url"]),
                access_token=values["access_token"],
                client_id=values["client_id"] or "",
                client_secret=values["client_secret"] or "",
                refresh_token=values["refresh_token"] or "",
                api_version=str(values["api_version"]),
                custom_fields=_csv(values["custom_fields"]),
                score_field=str(values["score_field"]),
                band_field=str(values["band_field"]),
                throttle_threshold=throttle,
            )
        if vendor == "hubspot":
            _require(vendor, values, "access_token")
            return HubSpotConfig(
                access_token=str(values["access_token"]),
                base_url=str(values["base_url"]),
                properties=_csv(values["properties"]),
                score_property=str(values["score_property"]),
                band_property=str(values["band_property"]),
                client_id=values["client_id"],
                client_secret=values["client_secret"],
                refresh_token=values["refresh_token"],
                throttle_threshold=throttle,
            )
        _require(vendor, values, "project_id", "username", "secret", "from_date")
        try:
            from_date = date.fromisoformat(str(values["from_date"]))
        except ValueError:
            raise NotConfigured(
                f"MIXPANEL_FROM_DATE={values['from_date']!r} is not a date (YYYY-MM-DD)"
            ) from None
        api_base = str(values["api_base"])
        return MixpanelConfig(
            project_id=str(values["project_id"]),
            username=str(values["username"]),
            secret=str(values["secret"]),
            from_date=from_date,
            api_base=api_base,
            query_base=values["query_base"] or _mixpanel_query_base(api_base),
            project_timezone=str(values["project_timezone"]),
        )
    except ValueError as exc:
        raise NotConfigured(f"{vendor} settings are invalid: {exc}") from None


def is_configured(vendor: str, connection: Any = None) -> bool:
    try:
        build_config(vendor, connection)
    except ImproperlyConfigured:
        return False
    return True


def hubspot_app_secret(connection: Any = None) -> str | None:
    """The HubSpot app secret that signs webhooks (page value, else ``HUBSPOT_APP_SECRET``)."""
    return resolve("hubspot", connection).get("app_secret")


def sync_time_budget() -> float:
    """Seconds a sync task works before handing over to a follow-up task (0: no budget)."""
    return env_float("SYNC_TASK_TIME_BUDGET_SECONDS", 600.0)


def stale_run_seconds() -> float:
    """How long a run may go without a heartbeat before it is taken as abandoned."""
    return env_float("SYNC_STALE_AFTER_SECONDS", float(settings.CELERY_TASK_TIME_LIMIT + 120))


def throttle_delay_seconds() -> float:
    """Pause between batches once the vendor reports usage above the throttle threshold."""
    return env_float("SYNC_THROTTLE_DELAY_SECONDS", 2.0)


def webhook_retention_days() -> int:
    """How long a received webhook event id is kept to recognise a replay (HubSpot retries
    for 3 days); the periodic prune forgets older ones."""
    return env_int("WEBHOOK_DELIVERY_RETENTION_DAYS", 7, minimum=1)


def push_vendors() -> list[str]:
    """CRMs that scores are pushed to after a bulk rescore (default: every configured one)."""
    return env_list("INTEGRATIONS_PUSH_VENDORS", ["salesforce", "hubspot"])


def retry_policy() -> Any:
    """How hard connectors retry one call (``SYNC_RETRY_ATTEMPTS``, ``SYNC_RETRY_MAX_DELAY``)."""
    from integrations.connectors.base import RetryPolicy

    attempts = max(1, int(env_float("SYNC_RETRY_ATTEMPTS", 5)))
    return RetryPolicy(attempts=attempts, max_delay=env_float("SYNC_RETRY_MAX_DELAY", 60.0))
