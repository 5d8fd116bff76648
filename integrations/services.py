"""Vendor syncs, score write-back, connection tests and webhook intake.

Sync contract (:func:`sync_run`):

- A run first takes the connection with a conditional ``UPDATE ... SET current_run = run
  WHERE current_run IS NULL``: two workers never sync one connection at once (the loser gets
  :class:`SyncBusy`). A run whose heartbeat is older than ``SYNC_STALE_AFTER_SECONDS`` (its
  worker was killed) is marked ``abandoned`` and its claim released before that, so no run
  stays "running" forever and the next one resumes from the last committed cursor.
- Batches are fetched from the vendor OUTSIDE any transaction. Each batch is then written in
  ONE short transaction together with the new cursor and the run's counters, so after a crash
  the stored cursor covers exactly the records that were committed.
- Records are written through the ingestion services (``leads_bulk_upsert``, keyed by
  ``(source, external_id)`` then normalised email, so the same person from two sources is one
  lead with two identities; ``events_ingest``, conflict-ignoring on ``(source, external_id)``).
  Running the same sync twice therefore changes nothing the second time.
- Deleted records: the lead's identity for that source is removed; the lead itself, its
  events, history and other identities stay (a lead deleted in the CRM is still a person who
  behaved and converted, and KPIs must not lose them). No scores are pushed to a removed
  identity; if the record comes back it is linked again by id or email.
- Counts: ``fetched = created + updated + unchanged + deleted + failed``. A malformed record
  (reported by the connector, rejected by ingestion, or an event whose lead is unknown) is
  counted failed with its id and reason and never stops the run.
- Errors: a daily :class:`RateLimited` pauses the connection until ``paused_until`` (no run
  starts before, so there is no tight loop); a burst one ends the run ``rate_limited`` with
  ``retry_after`` for the task to retry; :class:`AuthFailed`, :class:`PermanentError` and
  exhausted :class:`TransientError` end it ``failed`` with a clear message. None of these is
  raised out of :func:`sync_run`: the run records them (the task reads ``error_kind``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from integrations import config as integration_config
from integrations import outcomes as crm_outcomes
from integrations.connectors.base import (
    AuthFailed,
    Batch,
    Connector,
    ConnectorError,
    DeletedRecord,
    EventRecord,
    FailedRecord,
    LeadRecord,
    PermanentError,
    RateLimited,
    RetryPolicy,
    ScoreUpdate,
    TransientError,
    related_id_attribute,
)
from integrations.connectors.hubspot import HubSpotConnector
from integrations.connectors.mixpanel import MixpanelConnector
from integrations.connectors.salesforce import SalesforceConnector
from integrations.models import CRM_VENDORS, Connection, SyncRun, Vendor, WebhookDelivery
from scoring.jobs import (
    UNREACHABLE_KEEP,
    Dispatch,
    JobStatus,
    dispatch,
    job_claim,
    job_fail,
    job_finish,
    job_heartbeat,
)
from scoring.models import Identity
from scoring.services.events import EventInput, events_ingest
from scoring.services.leads import LeadUpsert, leads_bulk_upsert

logger = logging.getLogger(__name__)

VENDORS: tuple[str, ...] = tuple(Vendor.values)
#: How many failed records a run keeps (the count is always complete).
MAX_FAILURES_KEPT = 200
_STAGE_FIELDS = ("mql_at", "sql_at", "opportunity_at", "converted_at")


class SyncNotStarted(Exception):
    """A sync could not start; the message says why (no run row was written)."""


class SyncBusy(SyncNotStarted):
    """Another run holds the connection."""


class SyncPaused(SyncNotStarted):
    """The connection is paused (spent daily API quota) until ``paused_until``."""

    def __init__(self, message: str, paused_until: datetime):
        super().__init__(message)
        self.paused_until = paused_until


class _RunLost(Exception):
    """Our run was marked abandoned by another worker while we were fetching."""


# Injectable edges: tests replace these so connectors never really wait and see a fixed day.
def connector_sleep(seconds: float) -> None:
    time.sleep(seconds)


def connector_clock() -> datetime:
    return timezone.now()


def _log(event: str, **fields: Any) -> None:
    text = " ".join(f"{key}={value}" for key, value in fields.items())
    logger.info("%s %s", event, text, extra={"event": event, "event_fields": fields})


# --------------------------------------------------------------------------------------------
# Connections and connectors
# --------------------------------------------------------------------------------------------


def _check_vendor(vendor: str) -> str:
    if vendor not in VENDORS:
        raise ValueError(f"unknown vendor {vendor!r}: use one of {', '.join(VENDORS)}")
    return vendor


def connection_get(vendor: str) -> Connection:
    """The connection row of ``vendor``, created on first use (configured from the env)."""
    connection, _ = Connection.objects.get_or_create(vendor=_check_vendor(vendor))
    return connection


def _store_refreshed_token(connection_id: int, token: str) -> None:
    """Keep a refreshed access token (encrypted) so the next run does not refresh again.

    The row lock serialises tasks that refreshed at the same moment. Without encryption keys
    the token is not stored: every run then refreshes once, which still works."""
    try:
        with transaction.atomic():
            connection = Connection.objects.select_for_update().get(pk=connection_id)
            secrets = integration_config.decrypt_secrets(connection.secrets)
            secrets["access_token"] = token
            connection.secrets = integration_config.encrypt_secrets(secrets)
            connection.save(update_fields=["secrets", "updated_at"])
    except integration_config.SecretsUnavailable:
        logger.warning(
            "sync.token.not_stored connection=%s reason=no_encryption_key", connection_id
        )
        return
    _log("sync.token.stored", connection=connection_id)


def build_connector(
    vendor: str, connection: Connection | None = None, *, retry: RetryPolicy | None = None
) -> Connector:
    """A connector for ``vendor`` configured from the page and the environment.

    Raises ``integrations.config.NotConfigured`` naming what is missing."""
    connection = connection or connection_get(vendor)
    config = integration_config.build_config(vendor, connection)
    common: dict[str, Any] = {
        "retry": retry or integration_config.retry_policy(),
        "sleep": lambda seconds: connector_sleep(seconds),
        "clock": lambda: connector_clock(),
    }
    if vendor == Vendor.SALESFORCE:
        return SalesforceConnector(
            config,
            on_token_refresh=lambda token: _store_refreshed_token(connection.pk, token),
            **common,
        )
    if vendor == Vendor.HUBSPOT:
        return HubSpotConnector(
            config,
            on_token_refresh=lambda token: _store_refreshed_token(connection.pk, token),
            **common,
        )
    return MixpanelConnector(config, **common)


def _close(connector: Connector) -> None:
    close = getattr(connector, "close", None)
    if callable(close):
        close()


# --------------------------------------------------------------------------------------------
# Adapters: connector dataclasses -> the ingestion services' inputs
# --------------------------------------------------------------------------------------------


def lead_upsert_from_record(record: LeadRecord) -> LeadUpsert:
    """A :class:`LeadRecord` as the lead upsert takes it (``None`` keeps what is stored)."""
    values: dict[str, Any] = {
        "email": record.email,
        "first_name": record.first_name,
        "last_name": record.last_name,
        "title": record.title,
        "company": record.company,
        "employees": record.employees,
        "industry": record.industry,
        "country": record.country,
        "source": record.lead_source,
        "lifecycle_stage": record.lifecycle_stage,
        "created_at": record.created_at,
        "revenue": record.revenue,
    }
    for name in _STAGE_FIELDS:
        values[name] = record.stage_times.get(name)
    attributes = dict(record.attributes)
    # Ids of related records (owner, converted contact, ...) kept per source: outcome
    # linking and the unmatched-owner list read them.
    for key, value in record.related_ids.items():
        attributes[related_id_attribute(record.source, key)] = value
    return LeadUpsert(
        source=record.source,
        external_id=record.external_id,
        values={k: v for k, v in values.items() if v is not None},
        attributes=attributes,
    )


def event_input_from_record(record: EventRecord) -> EventInput | str:
    """An :class:`EventRecord` as the event ingest takes it, or the reason it cannot be."""
    if len(record.event_type) > 80:
        return "event_type: at most 80 characters"
    if len(record.external_id) > 255 or len(record.lead_external_id or "") > 255:
        return "external_id: at most 255 characters"
    if not record.email and not record.lead_external_id:
        return "lead: the event names neither an email nor a user id"
    return EventInput(
        external_id=record.external_id,
        event_type=record.event_type,
        occurred_at=record.occurred_at,
        source=record.source,
        properties=dict(record.properties),
        email=record.email,
        lead_source=record.source if record.lead_external_id else None,
        lead_external_id=record.lead_external_id,
    )


# --------------------------------------------------------------------------------------------
# Writing one batch
# --------------------------------------------------------------------------------------------


@dataclass
class BatchCounts:
    fetched: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)


def _failure(external_id: str | None, reason: str, line: int | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": external_id, "reason": reason[:500]}
    if line is not None:
        item["line"] = line
    return item


def _follow_crm(written: Sequence[tuple[LeadRecord, int]]) -> set[int]:
    """Owners and outcomes after a lead upsert: each lead gets its CRM owner's user, and the
    outcomes its record links to are re-resolved. Returns the leads whose outcome to refresh."""
    affected: set[int] = set()
    by_source: dict[str, list[tuple[LeadRecord, int]]] = {}
    for record, lead_id in written:
        by_source.setdefault(record.source, []).append((record, lead_id))
    for source, pairs in by_source.items():
        crm_outcomes.leads_owner_follow(
            source,
            {
                lead_id: record.related_ids["owner_id"]
                for record, lead_id in pairs
                if record.related_ids.get("owner_id")
            },
        )
        affected |= crm_outcomes.outcomes_relink_for_leads(
            source,
            [(lead_id, record.external_id, dict(record.related_ids)) for record, lead_id in pairs],
        )
    return affected


def identities_remove(source: str, external_ids: Iterable[str]) -> int:
    """Detach deleted source records from their leads (see the module docstring)."""
    ids = sorted(set(external_ids))
    removed = 0
    for start in range(0, len(ids), 1000):
        count, _ = Identity.objects.filter(
            source=source, external_id__in=ids[start : start + 1000]
        ).delete()
        removed += count
    return removed


def write_batch(batch: Batch) -> BatchCounts:
    """Write one batch's owners, leads, events, outcomes and deletions (the caller holds the
    transaction). Owners are reference data and not counted; outcomes (opportunities,
    deals) count like leads."""
    counts = BatchCounts()
    counts.failures.extend(
        _failure(f.external_id, f.reason, f.line)
        for f in batch.failed
        if isinstance(f, FailedRecord)
    )
    counts.fetched = (
        len(batch.leads)
        + len(batch.events)
        + len(batch.deleted)
        + len(batch.failed)
        + len(batch.outcomes)
    )
    crm_outcomes.owners_store(batch.owners)
    outcome_leads: set[int] = set()
    if batch.leads:
        result = leads_bulk_upsert([lead_upsert_from_record(r) for r in batch.leads])
        written: list[tuple[LeadRecord, int]] = []
        for record, outcome in zip(batch.leads, result.outcomes, strict=True):
            if outcome.status == "rejected":
                counts.failures.append(_failure(record.external_id, outcome.reason))
            else:
                setattr(counts, outcome.status, getattr(counts, outcome.status) + 1)
                if outcome.lead_id is not None:
                    written.append((record, outcome.lead_id))
        outcome_leads |= _follow_crm(written)
    if batch.outcomes:
        stored, linked = crm_outcomes.outcomes_store(batch.outcomes)
        counts.created += stored.created
        counts.updated += stored.updated
        counts.unchanged += stored.unchanged
        outcome_leads |= linked
    crm_outcomes.leads_outcome_refresh(outcome_leads)
    if batch.events:
        inputs: list[EventInput] = []
        kept: list[EventRecord] = []
        for record in batch.events:
            converted = event_input_from_record(record)
            if isinstance(converted, str):
                counts.failures.append(_failure(record.external_id, converted))
            else:
                inputs.append(converted)
                kept.append(record)
        if inputs:
            ingested = events_ingest(inputs)
            for index, reasons in ingested.rejected:
                counts.failures.append(_failure(kept[index].external_id, "; ".join(reasons)))
            counts.created += ingested.accepted
            counts.unchanged += ingested.duplicate
    if batch.deleted:
        by_source: dict[str, list[str]] = {}
        for record in batch.deleted:
            if isinstance(record, DeletedRecord):
                by_source.setdefault(record.source, []).append(record.external_id)
        removed = sum(identities_remove(source, ids) for source, ids in by_source.items())
        counts.deleted += removed
        counts.unchanged += len(batch.deleted) - removed
    return counts


# --------------------------------------------------------------------------------------------
# Claiming, reaping, running
# --------------------------------------------------------------------------------------------


def runs_reap_abandoned(connection: Connection | None = None) -> int:
    """Mark runs without a heartbeat for ``SYNC_STALE_AFTER_SECONDS`` abandoned and release
    the connections they held; returns how many were reaped."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=integration_config.stale_run_seconds())
    runs = SyncRun.objects.filter(status=SyncRun.Status.RUNNING, heartbeat_at__lt=cutoff)
    connections = Connection.objects.exclude(current_run__isnull=True).exclude(
        current_run__status=SyncRun.Status.RUNNING
    )
    if connection is not None:
        runs = runs.filter(connection=connection)
        connections = connections.filter(pk=connection.pk)
    reaped = job_fail(
        runs,
        "No heartbeat since the worker stopped (killed or lost); the next run resumes "
        "from the last committed cursor.",
        status=SyncRun.Status.ABANDONED,
        error_kind="abandoned",
    )
    connections.update(current_run=None)
    if reaped:
        _log("sync.run.abandoned", runs=reaped)
    return reaped


def _claim(
    connection: Connection, *, full: bool, trigger: str, run_id: int | None = None
) -> SyncRun:
    now = timezone.now()
    with transaction.atomic():
        if run_id is None:
            # Created running: the claim of the connection is the job's claim.
            run = SyncRun.objects.create(
                connection=connection,
                full=full,
                trigger=trigger,
                status=SyncRun.Status.RUNNING,
                started_at=now,
                heartbeat_at=now,
            )
        else:
            # A requested run (sync now, webhook) waits queued until its task claims it; a
            # second delivery of the task finds it taken.
            requested = SyncRun.objects.filter(pk=run_id, connection=connection)
            if not job_claim(requested):
                raise SyncNotStarted(f"sync run {run_id} was already started")
            run = requested.get()
        claimed = Connection.objects.filter(pk=connection.pk, current_run__isnull=True).update(
            current_run=run
        )
        if not claimed:
            # Raising rolls the run row back: a refused start leaves nothing behind.
            raise SyncBusy(f"a {connection.vendor} sync is already running")
        cursor = Connection.objects.values_list("cursor", flat=True).get(pk=connection.pk)
        run.cursor_before = run.cursor_after = cursor
        run.save(update_fields=["cursor_before", "cursor_after"])
    return run


def _commit_batch(run: SyncRun, batch: Batch, usage: dict[str, Any]) -> BatchCounts:
    """Write one batch, the new cursor and the run's counters in one transaction."""
    with transaction.atomic():
        counts = write_batch(batch)
        run.batches += 1
        run.fetched += counts.fetched
        run.created += counts.created
        run.updated += counts.updated
        run.unchanged += counts.unchanged
        run.deleted += counts.deleted
        run.failed += len(counts.failures)
        room = MAX_FAILURES_KEPT - len(run.failures)
        if room > 0:
            run.failures = [*run.failures, *counts.failures[:room]]
        run.cursor_after = batch.cursor_after
        run.api_usage = usage
        fields = (
            "batches",
            "fetched",
            "created",
            "updated",
            "unchanged",
            "deleted",
            "failed",
            "failures",
            "cursor_after",
            "api_usage",
        )
        # Conditional on still running: if another worker reaped this run, roll back.
        still_ours = job_heartbeat(
            SyncRun.objects.filter(pk=run.pk), **{name: getattr(run, name) for name in fields}
        )
        if not still_ours:
            raise _RunLost
        Connection.objects.filter(pk=run.connection_id).update(
            cursor=batch.cursor_after, api_usage=usage
        )
    return counts


def _merge_usage(total: dict[str, Any], batch_usage: dict[str, Any]) -> dict[str, Any]:
    # Counters add up over the run; levels (api_used, api_limit) keep the latest report.
    summed = ("requests", "duplicates")
    merged = {**total, **{k: v for k, v in batch_usage.items() if k not in summed}}
    for key in summed:
        if key in batch_usage or key in total:
            merged[key] = int(total.get(key, 0) or 0) + int(batch_usage.get(key, 0) or 0)
    if batch_usage.get("throttle"):
        merged["throttled"] = True
    return merged


def _finish(run: SyncRun, status: str, *, error: str = "", kind: str = "", **extra: Any) -> None:
    run.status = status
    run.error = error[:2000]
    run.error_kind = kind
    run.finished_at = timezone.now()
    for name, value in extra.items():
        setattr(run, name, value)
    with transaction.atomic():
        job_finish(
            SyncRun.objects.filter(pk=run.pk),
            status=run.status,
            statuses=(SyncRun.Status.RUNNING,),
            error=run.error,
            error_kind=run.error_kind,
            finished_at=run.finished_at,
            retry_after=run.retry_after,
        )
        Connection.objects.filter(pk=run.connection_id, current_run=run).update(current_run=None)
    _log(
        "sync.run.finished",
        run=run.pk,
        vendor=run.connection.vendor,
        status=run.status,
        fetched=run.fetched,
        created=run.created,
        updated=run.updated,
        unchanged=run.unchanged,
        deleted=run.deleted,
        failed=run.failed,
        error_kind=kind or "-",
    )


def sync_run(
    vendor: str,
    *,
    full: bool = False,
    trigger: str = "command",
    time_budget: float | None = None,
    connector: Connector | None = None,
    run_id: int | None = None,
) -> SyncRun:
    """Sync ``vendor`` from its stored cursor (from scratch when ``full``); see the module
    docstring for the contract. ``run_id`` names a queued run that a request recorded
    (`sync_enqueue`, the webhook): it becomes this run, and a run already started raises
    :class:`SyncNotStarted` (a second delivery of its task).

    ``time_budget`` (seconds) stops after the batch that exhausts it with status
    ``partial``: the cursor is committed and a follow-up run continues (the Celery task
    enqueues it). Raises ``integrations.config.NotConfigured`` when the vendor is not set up,
    :class:`SyncPaused` while a daily quota is spent and :class:`SyncBusy` when another run
    holds the connection; vendor errors are recorded on the returned run, not raised."""
    connection = connection_get(vendor)
    runs_reap_abandoned(connection)
    connection.refresh_from_db()
    try:
        if connection.paused_until and connection.paused_until > timezone.now():
            raise SyncPaused(
                f"{vendor} is paused until {connection.paused_until.isoformat()} "
                f"({connection.pause_reason or 'daily API limit'})",
                connection.paused_until,
            )
        connector = connector or build_connector(vendor, connection)
    except (SyncPaused, ImproperlyConfigured) as exc:
        if run_id is not None:
            # The requested run will not start by waiting: say why on its row.
            job_fail(SyncRun.objects.filter(pk=run_id), str(exc), error_kind="not_started")
        raise
    run = _claim(connection, full=full, trigger=trigger, run_id=run_id)
    _log("sync.run.started", run=run.pk, vendor=vendor, full=full, trigger=trigger)
    started = time.monotonic()
    usage: dict[str, Any] = {}
    try:
        status = SyncRun.Status.DONE
        for batch in connector.fetch(run.cursor_before, full):
            usage = _merge_usage(usage, batch.usage)
            _commit_batch(run, batch, usage)
            if batch.done:
                break
            if time_budget and time.monotonic() - started >= time_budget:
                status = SyncRun.Status.PARTIAL
                break
            if batch.usage.get("throttle"):
                # Usage is past the threshold: spread the rest of the run out.
                connector_sleep(integration_config.throttle_delay_seconds())
        _finish(run, status)
        Connection.objects.filter(pk=connection.pk).update(paused_until=None, pause_reason="")
    except _RunLost:
        logger.warning("sync.run.lost run=%s vendor=%s", run.pk, vendor)
    except RateLimited as exc:
        if exc.scope == "daily":
            until = exc.reset_at or timezone.now() + timedelta(seconds=exc.retry_after or 3600)
            Connection.objects.filter(pk=connection.pk).update(
                paused_until=until, pause_reason=str(exc)[:300]
            )
            _finish(run, SyncRun.Status.PAUSED, error=str(exc), kind="daily_limit")
        else:
            _finish(
                run,
                SyncRun.Status.RATE_LIMITED,
                error=str(exc),
                kind="rate_limited",
                retry_after=exc.retry_after,
            )
    except AuthFailed as exc:
        _finish(run, SyncRun.Status.FAILED, error=str(exc), kind="auth")
    except PermanentError as exc:
        _finish(run, SyncRun.Status.FAILED, error=str(exc), kind="permanent")
    except TransientError as exc:
        _finish(run, SyncRun.Status.FAILED, error=str(exc), kind="transient")
    except ConnectorError as exc:
        _finish(run, SyncRun.Status.FAILED, error=str(exc), kind="permanent")
    except Exception as exc:
        # A bug or a time limit: record it for the page, then let it surface.
        _finish(run, SyncRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}", kind="internal")
        raise
    finally:
        _close(connector)
    run.refresh_from_db()
    return run


def run_summary(run: SyncRun) -> dict[str, Any]:
    """The one-line JSON summary of a run (``manage.py sync`` prints it). A complete run is
    `done` like every job, but the command has always printed "succeeded" for it, and
    scripts read that."""
    return {
        "vendor": run.connection.vendor,
        "run": run.pk,
        "status": "succeeded" if run.status == SyncRun.Status.DONE else run.status,
        "full": run.full,
        "fetched": run.fetched,
        "created": run.created,
        "updated": run.updated,
        "unchanged": run.unchanged,
        "deleted": run.deleted,
        "failed": run.failed,
        "failures": run.failures[:20],
        "cursor_before": run.cursor_before,
        "cursor_after": run.cursor_after,
        "api_usage": run.api_usage,
        "error": run.error,
        "error_kind": run.error_kind,
        "duration_seconds": round(run.duration_seconds or 0.0, 3),
    }


# --------------------------------------------------------------------------------------------
# Score write-back
# --------------------------------------------------------------------------------------------


def _changed_since_push() -> Q:
    return (
        Q(pushed_score__isnull=True)
        | ~Q(pushed_score=F("lead__score"))
        | ~Q(pushed_band=F("lead__band"))
    )


def push_scores(
    vendor: str, *, connector: Connector | None = None, chunk_size: int = 1000
) -> dict[str, Any]:
    """Push score and band of every lead whose values changed since its last push to
    ``vendor`` (a CRM), through the connector's batch endpoint; returns a summary.

    Reads identities in id order, ``chunk_size`` at a time (one query per chunk); calls the
    vendor outside any transaction; then records ``pushed_score/pushed_band/pushed_at`` of
    the identities the vendor accepted with one statement per chunk. Rejected records stay
    unpushed and are retried next time. Vendor errors (credentials, rate limits, outages)
    are raised after recording what was pushed so far."""
    if vendor not in CRM_VENDORS:
        raise ValueError(f"scores can be pushed to {' or '.join(CRM_VENDORS)}, not {vendor!r}")
    connection = connection_get(vendor)
    connector = connector or build_connector(vendor, connection)
    started = time.monotonic()
    summary: dict[str, Any] = {"vendor": vendor, "considered": 0, "pushed": 0, "failed": 0}
    failures: list[dict[str, Any]] = []
    error: ConnectorError | None = None
    last_id = 0
    try:
        while True:
            rows = list(
                Identity.objects.filter(source=vendor, id__gt=last_id, lead__score__isnull=False)
                .filter(_changed_since_push())
                .order_by("id")
                .values_list("id", "external_id", "lead__score", "lead__band")[:chunk_size]
            )
            if not rows:
                break
            last_id = rows[-1][0]
            summary["considered"] += len(rows)
            result = connector.push_scores(
                [
                    ScoreUpdate(external_id, score, band or "")
                    for _, external_id, score, band in rows
                ]
            )
            rejected = {f.external_id for f in result.failed}
            failures.extend(_failure(f.external_id, f.reason) for f in result.failed)
            now = timezone.now()
            accepted = [
                Identity(id=pk, pushed_score=score, pushed_band=band or "", pushed_at=now)
                for pk, external_id, score, band in rows
                if external_id not in rejected
            ]
            Identity.objects.bulk_update(
                accepted, ["pushed_score", "pushed_band", "pushed_at"], batch_size=chunk_size
            )
            summary["pushed"] += len(accepted)
    except ConnectorError as exc:
        error = exc
    finally:
        _close(connector)
    summary["failed"] = len(failures)
    summary["failures"] = failures[:50]
    summary["error"] = str(error) if error else ""
    summary["duration_seconds"] = round(time.monotonic() - started, 3)
    Connection.objects.filter(pk=connection.pk).update(
        last_push={**summary, "finished_at": timezone.now().isoformat()}
    )
    _log(
        "sync.push.finished",
        vendor=vendor,
        considered=summary["considered"],
        pushed=summary["pushed"],
        failed=summary["failed"],
        error=type(error).__name__ if error else "-",
    )
    if error is not None:
        raise error
    return summary


def push_vendors_configured() -> list[str]:
    """The CRMs to push to after a bulk rescore: listed in ``INTEGRATIONS_PUSH_VENDORS``,
    configured, and enabled on the page."""
    disabled = set(Connection.objects.filter(enabled=False).values_list("vendor", flat=True))
    connections = {c.vendor: c for c in Connection.objects.filter(vendor__in=CRM_VENDORS)}
    return [
        vendor
        for vendor in integration_config.push_vendors()
        if vendor in CRM_VENDORS
        and vendor not in disabled
        and integration_config.is_configured(vendor, connections.get(vendor))
    ]


# --------------------------------------------------------------------------------------------
# Connection test, page settings
# --------------------------------------------------------------------------------------------


def connection_test(vendor: str) -> dict[str, Any]:
    """One cheap authenticated call (no retries); records and returns ``{"ok", "message",
    ...usage}``. The message never contains a secret."""
    connection = connection_get(vendor)
    outcome: dict[str, Any]
    try:
        connector = build_connector(vendor, connection, retry=RetryPolicy(attempts=1))
        try:
            details = connector.test_connection()
        finally:
            _close(connector)
        outcome = {**details, "ok": True, "message": "Connection works."}
    except integration_config.NotConfigured as exc:
        outcome = {"ok": False, "message": str(exc)}
    except integration_config.SecretsUnavailable as exc:
        outcome = {"ok": False, "message": str(exc)}
    except ConnectorError as exc:
        outcome = {"ok": False, "message": f"{type(exc).__name__}: {exc}"}
    usage = {k: v for k, v in outcome.items() if k in ("api_used", "api_limit", "throttle")}
    update: dict[str, Any] = {
        "last_test_at": timezone.now(),
        "last_test_ok": outcome["ok"],
        "last_test_message": str(outcome["message"])[:500],
    }
    if usage:
        update["api_usage"] = {**connection.api_usage, **usage}
    Connection.objects.filter(pk=connection.pk).update(**update)
    _log("sync.connection.tested", vendor=vendor, ok=outcome["ok"])
    return outcome


def connection_settings_save(
    vendor: str, values: dict[str, str], *, clear: Sequence[str] = ()
) -> Connection:
    """Save settings entered on the page: non-secrets in ``options``, secrets encrypted.

    An empty value leaves the stored one (a secret field is never shown back, so blank means
    "unchanged"); keys in ``clear`` are removed (the environment applies again)."""
    known = {s.key: s for s in integration_config.SETTINGS[_check_vendor(vendor)]}
    with transaction.atomic():
        connection = Connection.objects.select_for_update().get(pk=connection_get(vendor).pk)
        options = dict(connection.options or {})
        secrets = integration_config.decrypt_secrets(connection.secrets)
        for key, value in values.items():
            if key not in known or not (value or "").strip():
                continue
            (secrets if known[key].secret else options)[key] = value.strip()
        for key in clear:
            options.pop(key, None)
            secrets.pop(key, None)
        connection.options = options
        connection.secrets = integration_config.encrypt_secrets(secrets)
        connection.save(update_fields=["options", "secrets", "updated_at"])
    _log("sync.connection.saved", vendor=vendor, keys=",".join(sorted(values)))
    return connection


# --------------------------------------------------------------------------------------------
# Webhooks
# --------------------------------------------------------------------------------------------


def hubspot_webhook_receive(events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Take a verified HubSpot webhook delivery: ignore event ids seen before, detach deleted
    contacts at once, and enqueue one incremental sync for the contacts named (after the
    commit). Returns ``{"received", "new", "replayed", "contacts", "deleted", "queued"}``."""
    by_id: dict[str, dict[str, Any]] = {}
    for event in events:
        event_id = str(event.get("eventId") or "").strip()
        if event_id:
            by_id.setdefault(event_id[:100], event)
    with transaction.atomic():
        seen = set(
            WebhookDelivery.objects.filter(source="hubspot", event_id__in=list(by_id)).values_list(
                "event_id", flat=True
            )
        )
        new = {event_id: event for event_id, event in by_id.items() if event_id not in seen}
        WebhookDelivery.objects.bulk_create(
            [WebhookDelivery(source="hubspot", event_id=event_id) for event_id in new],
            ignore_conflicts=True,
        )
        deleted: set[str] = set()
        changed: set[str] = set()
        for event in new.values():
            object_id = str(event.get("objectId") or "").strip()
            if not object_id:
                continue
            kind = str(event.get("subscriptionType") or "")
            (deleted if kind.endswith(".deletion") else changed).add(object_id)
        if deleted:
            identities_remove("hubspot", deleted)
        contacts = sorted(changed - deleted)
        handle = None
        if contacts:
            # The sync is recorded as a queued run in the same transaction as the delivery's
            # event ids: with the broker down it waits, and the jobs sweep sends it once the
            # broker is back (HubSpot's retry would only be answered "replayed").
            handle = _sync_request(
                connection_get("hubspot"),
                full=False,
                trigger="webhook",
                task=WEBHOOK_SYNC_TASK_NAME,
                args=[contacts],
            )
    summary = {
        "received": len(events),
        "new": len(new),
        "replayed": len(by_id) - len(new),
        "contacts": len(changed - deleted),
        "deleted": len(deleted),
        # True when the broker could not be reached: the sync waits queued (see above).
        "queued": bool(handle is not None and handle.sent is False),
    }
    _log("sync.webhook.received", source="hubspot", **summary)
    return summary


def webhook_deliveries_prune(older_than: timedelta = timedelta(days=7)) -> int:
    """Forget webhook event ids older than ``older_than`` (beyond HubSpot's 3-day retry
    window, a replay cannot come); returns how many were forgotten."""
    deleted, _ = WebhookDelivery.objects.filter(
        received_at__lt=timezone.now() - older_than
    ).delete()
    return deleted


def summary_json(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, default=str)


# --------------------------------------------------------------------------------------------
# Schedules (django-celery-beat)
# --------------------------------------------------------------------------------------------

SYNC_TASK_NAME = "integrations.tasks.sync_task"
WEBHOOK_SYNC_TASK_NAME = "integrations.tasks.hubspot_webhook_sync_task"


def schedule_name(vendor: str) -> str:
    return f"integrations.sync.{vendor}"


def schedule_set(vendor: str, *, every_minutes: int, enabled: bool) -> Any:
    """Create or change the periodic sync of ``vendor`` (one ``PeriodicTask`` per vendor).

    ``expire_seconds`` equals the interval, so syncs queued while workers were down do not
    pile up. ``enabled`` also gates score pushes after a rescore."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    if not 1 <= every_minutes <= 7 * 24 * 60:
        raise ValueError("the interval must be between 1 minute and 7 days")
    with transaction.atomic():
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=every_minutes, period=IntervalSchedule.MINUTES
        )
        task, _ = PeriodicTask.objects.update_or_create(
            name=schedule_name(_check_vendor(vendor)),
            defaults={
                "task": SYNC_TASK_NAME,
                "interval": interval,
                "args": json.dumps([vendor, False, "schedule"]),
                "enabled": enabled,
                "expire_seconds": every_minutes * 60,
                "description": f"Incremental {vendor} sync",
            },
        )
        Connection.objects.filter(pk=connection_get(vendor).pk).update(enabled=enabled)
    _log("sync.schedule.saved", vendor=vendor, every_minutes=every_minutes, enabled=enabled)
    return task


def sync_enqueue(vendor: str, *, full: bool = False) -> Dispatch:
    """ "Sync now" from the page: record the request as a queued run and send its task after
    the commit. The returned `Dispatch` says whether the broker took it (`sent` is False when
    it was unreachable: the run then waits queued, saying it will start when the worker is
    reachable, and the jobs sweep sends it once the broker is back)."""
    return _sync_request(
        connection_get(vendor),
        full=full,
        trigger="manual",
        task=SYNC_TASK_NAME,
        args=[vendor, full, "manual"],
    )


def _sync_request(
    connection: Connection, *, full: bool, trigger: str, task: str, args: list[Any]
) -> Dispatch:
    """A queued run of `connection` and its task (the run's id appended to `args`), sent
    after the commit of the caller's transaction; kept queued while the broker is down."""
    run = SyncRun.objects.create(
        connection=connection, full=full, trigger=trigger, status=JobStatus.QUEUED
    )
    return dispatch(
        task,
        [*args, run.pk],
        jobs=SyncRun.objects.filter(pk=run.pk),
        unreachable=UNREACHABLE_KEEP,
    )
