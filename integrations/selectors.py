"""Reads for the integrations page: plain dicts, no secrets."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.models import Count
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone

from integrations import config as integration_config
from integrations.connectors.base import related_id_attribute
from integrations.models import CRM_VENDORS, Connection, CrmOwner, SyncRun, Vendor
from scoring.models import Lead

RECENT_RUNS = 8


def _schedule(vendor: str) -> dict[str, Any]:
    from django_celery_beat.models import PeriodicTask

    task = (
        PeriodicTask.objects.select_related("interval")
        .filter(name=f"integrations.sync.{vendor}")
        .first()
    )
    if task is None or task.interval is None:
        return {"exists": False, "every_minutes": 60, "enabled": False, "last_run_at": None}
    every = task.interval.every
    minutes = {"days": 1440, "hours": 60, "minutes": 1, "seconds": 1 / 60}.get(
        task.interval.period, 1
    )
    return {
        "exists": True,
        "every_minutes": max(1, round(every * minutes)),
        "enabled": task.enabled,
        "last_run_at": task.last_run_at,
    }


def _run_row(run: SyncRun) -> dict[str, Any]:
    return {
        "id": run.pk,
        "status": run.status,
        "status_label": run.get_status_display(),
        "full": run.full,
        "trigger": run.trigger,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration": run.duration_seconds,
        "batches": run.batches,
        "fetched": run.fetched,
        "created": run.created,
        "updated": run.updated,
        "unchanged": run.unchanged,
        "deleted": run.deleted,
        "failed": run.failed,
        "failures": run.failures[:10],
        "error": run.error,
        "requests": (run.api_usage or {}).get("requests"),
        "running": run.is_running,
    }


def connection_overview(vendor: str) -> dict[str, Any]:
    """Everything the page shows about one connection (no secret values)."""
    connection = Connection.objects.filter(vendor=vendor).first() or Connection(vendor=vendor)
    try:
        fields = integration_config.field_status(vendor, connection)
        secrets_error = ""
    except ImproperlyConfigured as exc:
        fields, secrets_error = [], str(exc)
    try:
        integration_config.build_config(vendor, connection)
        config_error = ""
    except ImproperlyConfigured as exc:
        config_error = str(exc)
    recent = SyncRun.objects.filter(connection__vendor=vendor).order_by("-started_at", "-id")
    runs = [_run_row(run) for run in recent[:RECENT_RUNS]]
    current = next((row for row in runs if row["running"]), None)
    usage = connection.api_usage or {}
    used, limit = usage.get("api_used"), usage.get("api_limit")
    now = timezone.now()
    paused = bool(connection.paused_until and connection.paused_until > now)
    if current:
        status = "running"
    elif paused:
        status = "paused"
    elif config_error or secrets_error:
        status = "not configured"
    elif runs and runs[0]["status"] == "queued":
        # Requested (sync now, webhook) and waiting for a worker; the run's row says why.
        status = "queued"
    elif runs and runs[0]["status"] in ("failed", "abandoned"):
        status = "error"
    else:
        status = "ok" if runs else "never synced"
    return {
        "vendor": vendor,
        "label": Vendor(vendor).label,
        "status": status,
        "enabled": connection.enabled,
        "configured": not (config_error or secrets_error),
        "config_error": config_error or secrets_error,
        "fields": fields,
        "cursor": connection.cursor,
        "current": current,
        "runs": runs,
        "paused_until": connection.paused_until if paused else None,
        "pause_reason": connection.pause_reason if paused else "",
        "api_used": used,
        "api_limit": limit,
        "api_percent": round(100 * used / limit) if used is not None and limit else None,
        "throttled": bool(usage.get("throttle")),
        "last_test_at": connection.last_test_at,
        "last_test_ok": connection.last_test_ok,
        "last_test_message": connection.last_test_message,
        "can_push": vendor in CRM_VENDORS,
        "last_push": connection.last_push or {},
        "schedule": _schedule(vendor),
    }


def connections_overview() -> list[dict[str, Any]]:
    return [connection_overview(vendor) for vendor in Vendor.values]


def owners_unmatched() -> list[dict[str, Any]]:
    """CRM owners no user's email matches, with how many leads they own in the CRM:
    ``[{"source", "external_id", "email", "leads"}]``, most leads first."""
    owners = list(
        CrmOwner.objects.filter(user__isnull=True)
        .order_by("source", "external_id")
        .values("source", "external_id", "email")
    )
    by_source: dict[str, list[str]] = {}
    for owner in owners:
        by_source.setdefault(owner["source"], []).append(owner["external_id"])
    counts: dict[tuple[str, str], int] = {}
    for source, ids in by_source.items():
        attribute = related_id_attribute(source, "owner_id")
        rows = (
            Lead.objects.filter(**{f"attributes__{attribute}__in": ids})
            .annotate(crm_owner=KeyTextTransform(attribute, "attributes"))
            .values("crm_owner")
            .annotate(leads=Count("id"))
            .values_list("crm_owner", "leads")
        )
        for owner_id, leads in rows:
            counts[(source, owner_id)] = leads
    for owner in owners:
        owner["leads"] = counts.get((owner["source"], owner["external_id"]), 0)
    owners.sort(key=lambda o: (-o["leads"], o["source"], o["external_id"]))
    return owners
