"""Tables of the integrations app."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from scoring.jobs import Job, JobStatus


class ImportJob(Job):
    """One file uploaded on the import page: what it is, how far its import has got (rows,
    `progress_done` of `progress_total`), and what came of it (the same summary the import
    commands print). An atomic import that rejected rows ends `rolled_back`."""

    class Kind(models.TextChoices):
        LEADS = "leads", "Leads"
        EVENTS = "events", "Events"

    file_name = models.CharField(max_length=255)
    # Where the upload is stored, relative to MEDIA_ROOT; removed once the import finishes.
    stored_path = models.CharField(max_length=500, blank=True, default="")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    source = models.CharField(max_length=40, blank=True, default="")
    mapping = models.CharField(max_length=100, blank=True, default="")
    atomic = models.BooleanField(default=False)
    created = models.IntegerField(default=0)
    updated = models.IntegerField(default=0)
    unchanged = models.IntegerField(default=0)
    rejected = models.IntegerField(default=0)
    # The first rejected lines, [{"line", "reasons"}], and a file-level failure.
    errors = models.JSONField(default=list, blank=True)
    # What the mapping told training to leave out, {"leakage": [...], "doubtful": [...]}
    # (file and stored column names), kept whatever path the mapping file had.
    feature_exclusions = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} import {self.file_name} ({self.status})"

    @property
    def percent(self) -> int:
        return 100 if self.finished else int(100 * self.progress)


# --------------------------------------------------------------------------------------------
# Vendor connections and their sync runs (Salesforce, HubSpot, Mixpanel)
# --------------------------------------------------------------------------------------------


class Vendor(models.TextChoices):
    SALESFORCE = "salesforce", "Salesforce"
    HUBSPOT = "hubspot", "HubSpot"
    MIXPANEL = "mixpanel", "Mixpanel"


#: Vendors that scores can be written back to.
CRM_VENDORS = (Vendor.SALESFORCE, Vendor.HUBSPOT)


class Connection(models.Model):
    """One vendor connection: its page-configured settings, its encrypted secrets, where its
    sync stands (the cursor) and whether a run holds it.

    ``options`` holds non-secret settings entered on the page (they override the
    environment); ``secrets`` is a MultiFernet token of a JSON object (never clear text).
    ``current_run`` is the claim: set by a conditional UPDATE only while it is NULL, so two
    workers never sync the same connection at once."""

    vendor = models.CharField(max_length=20, choices=Vendor.choices, unique=True)
    enabled = models.BooleanField(default=True)
    options = models.JSONField(default=dict, blank=True)
    secrets = models.TextField(blank=True, default="")
    cursor = models.TextField(null=True, blank=True)
    current_run = models.ForeignKey(
        "SyncRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A spent daily API quota: no run starts before this time.
    paused_until = models.DateTimeField(null=True, blank=True)
    pause_reason = models.CharField(max_length=300, blank=True, default="")
    # The latest usage the vendor reported ({"api_used", "api_limit", "throttle", ...}).
    api_usage = models.JSONField(default=dict, blank=True)
    last_test_at = models.DateTimeField(null=True, blank=True)
    last_test_ok = models.BooleanField(null=True, blank=True)
    last_test_message = models.CharField(max_length=500, blank=True, default="")
    # Summary of the latest score push ({"pushed", "failed", "errors", "finished_at"}).
    last_push = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.get_vendor_display()


class SyncRun(Job):
    """One sync of one connection: its counts, cursors, API usage and outcome. A run is
    created running, by the claim of its connection (it never waits queued); the statuses
    past running are `done`, `partial`, `failed`, `rate_limited`, `paused`, `abandoned`.

    ``fetched = created + updated + unchanged + deleted + failed`` once the run is over.
    ``failures`` keeps the first failed records as ``{"id", "reason", "line"}``."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="runs")
    full = models.BooleanField(default=False)
    trigger = models.CharField(max_length=20, blank=True, default="")
    # A sync run exists only once it holds its connection: it is born running.
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    heartbeat_at = models.DateTimeField(default=timezone.now)
    batches = models.IntegerField(default=0)
    fetched = models.IntegerField(default=0)
    created = models.IntegerField(default=0)
    updated = models.IntegerField(default=0)
    unchanged = models.IntegerField(default=0)
    deleted = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    failures = models.JSONField(default=list, blank=True)
    cursor_before = models.TextField(null=True, blank=True)
    cursor_after = models.TextField(null=True, blank=True)
    api_usage = models.JSONField(default=dict, blank=True)
    # "transient", "rate_limited", "daily_limit", "auth", "permanent", "abandoned", "internal"
    error_kind = models.CharField(max_length=20, blank=True, default="")
    retry_after = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["connection", "-started_at"], name="syncrun_conn_started_idx"),
            models.Index(fields=["status", "heartbeat_at"], name="syncrun_status_beat_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.connection.vendor} sync {self.pk} ({self.status})"

    @property
    def is_running(self) -> bool:
        return self.status == self.Status.RUNNING

    @property
    def duration_seconds(self) -> float | None:
        end = self.finished_at or (timezone.now() if self.is_running else None)
        return (end - self.started_at).total_seconds() if end and self.started_at else None


class WebhookDelivery(models.Model):
    """A webhook event id already received, so a replayed delivery is ignored."""

    source = models.CharField(max_length=20)
    event_id = models.CharField(max_length=100)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "event_id"], name="webhook_event_uniq")
        ]
        indexes = [models.Index(fields=["received_at"], name="webhook_received_idx")]


class CrmOutcome(models.Model):
    """An opportunity or deal as the CRM last described it, and the leads it belongs to.

    Kept so that a lead's outcome can be recomputed from all of its deals when one of them
    changes (an incremental sync sees only the changed one). ``links`` say how it names its
    leads; see integrations.outcomes."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        WON = "won", "Won"
        LOST = "lost", "Lost"

    source = models.CharField(max_length=20)
    external_id = models.CharField(max_length=255)
    status = models.CharField(max_length=10, choices=Status.choices)
    stage = models.CharField(max_length=120, blank=True, default="")
    amount = models.FloatField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    modified_at = models.DateTimeField(null=True, blank=True)
    leads = models.ManyToManyField("scoring.Lead", related_name="crm_outcomes", blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "external_id"], name="crm_outcome_unique")
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.external_id} ({self.status})"


class CrmOutcomeLink(models.Model):
    """One way an outcome names its leads: ``key`` is a ``LeadRecord.related_ids`` key (a
    Salesforce lead's ``converted_contact_id``, ...) or ``@identity`` for a record of the same
    source that is a lead (a HubSpot contact); ``rank`` is its preference. Indexed by
    (key, value) so a lead that arrives after its deal finds it."""

    outcome = models.ForeignKey(CrmOutcome, on_delete=models.CASCADE, related_name="links")
    rank = models.PositiveSmallIntegerField(default=0)
    key = models.CharField(max_length=60)
    value = models.CharField(max_length=255)

    class Meta:
        indexes = [models.Index(fields=["key", "value"], name="crm_outcome_link_idx")]


class CrmOwner(models.Model):
    """A CRM user who owns records, matched to one of our users by email (case-insensitive)
    on every sync; ``user`` is empty while no user has that email."""

    source = models.CharField(max_length=20)
    external_id = models.CharField(max_length=255)
    email = models.CharField(max_length=254, blank=True, default="")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "external_id"], name="crm_owner_unique")
        ]

    def __str__(self) -> str:
        return f"{self.source} owner {self.external_id}"


# --------------------------------------------------------------------------------------------
# Segment-compatible event source (integrations.segment)
# --------------------------------------------------------------------------------------------


class SourceKey(models.Model):
    """A write key for the Segment-compatible endpoints (/segment/v1/), made on the
    integrations page or with ``manage.py create_source_key NAME``. Only the SHA-256 digest of
    the key is stored (the key is 256 random bits, so a fast hash is enough) and a short
    prefix to tell keys apart; the key itself is shown once. The counters and the last call
    are what the integrations page shows."""

    name = models.CharField(max_length=100, unique=True)
    prefix = models.CharField(max_length=12)
    digest = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_call_at = models.DateTimeField(null=True, blank=True)
    requests = models.BigIntegerField(default=0)
    accepted = models.BigIntegerField(default=0)
    duplicate = models.BigIntegerField(default=0)
    rejected = models.BigIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"source key {self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class SegmentGroup(models.Model):
    """A Segment ``group`` (an account) and its latest traits, kept here until accounts are a
    model of their own; leads name their group in ``attributes.segment_group_id``."""

    group_id = models.CharField(max_length=255, unique=True)
    name = models.CharField(max_length=200, blank=True, default="")
    employees = models.IntegerField(null=True, blank=True)
    industry = models.CharField(max_length=120, blank=True, default="")
    website = models.CharField(max_length=500, blank=True, default="")
    traits = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"segment group {self.group_id}"


# --------------------------------------------------------------------------------------------
# Outbound: the outbox relay's subscribers and deliveries (integrations.outbound)
# --------------------------------------------------------------------------------------------


class WebhookSubscription(models.Model):
    """An outgoing webhook: transitions of the chosen kinds are POSTed, signed with the secret
    (stored encrypted with FIELD_ENCRYPTION_KEYS, like connection secrets)."""

    url = models.URLField(max_length=500)
    secret = models.TextField()  # a Fernet token (integrations.config.encrypt_secrets)
    events = models.JSONField(default=list)  # ["lead.qualified", ...]
    paused = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.url


class OutboxDelivery(models.Model):
    """One transition handed to one subscriber. `key` is the idempotency key (the webhook's
    `id`), stable across retries; a worker claims a row with a conditional UPDATE from
    pending (or from a running claim whose lease ran out) before it delivers."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Delivering"
        DONE = "done", "Delivered"
        DEAD = "dead", "Dead-lettered"
        SKIPPED = "skipped", "Nothing to do"

    transition = models.ForeignKey(
        "scoring.LeadTransition", on_delete=models.CASCADE, related_name="deliveries"
    )
    subscriber = models.CharField(max_length=80)  # "webhook:3", "routing", "email", ...
    webhook = models.ForeignKey(
        WebhookSubscription,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="deliveries",
    )
    key = models.CharField(max_length=64, unique=True)
    # The body, frozen at the first attempt so every retry sends the same document.
    payload = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.IntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.IntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["transition", "subscriber"], name="delivery_once_per_subscriber"
            )
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at", "id"],
                condition=Q(status__in=["pending", "running"]),
                name="delivery_due_idx",
            ),
            models.Index(fields=["webhook", "-id"], name="delivery_webhook_idx"),
        ]


class AlertPreference(models.Model):
    """How a rep hears of a lead assigned to them: an email each time (the default), one
    daily digest, or no email."""

    class Email(models.TextChoices):
        INSTANT = "instant", "An email for each lead"
        DIGEST = "digest", "One daily digest"
        OFF = "off", "No email"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alert_preference"
    )
    email = models.CharField(max_length=10, choices=Email.choices, default=Email.INSTANT)
    digest_sent_at = models.DateTimeField(null=True, blank=True)
