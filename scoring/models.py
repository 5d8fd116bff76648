"""The scoring domain's tables: leads and where they come from, their events, the versioned
rule sets that score them, and what scoring leaves behind (history, transitions, runs).

Models hold fields, constraints and cheap properties; the work lives in services."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from scoring.jobs import Job


class LifecycleStage(models.TextChoices):
    LEAD = "lead", "Lead"
    MQL = "mql", "MQL"
    SQL = "sql", "SQL"
    OPPORTUNITY = "opportunity", "Opportunity"
    CUSTOMER = "customer", "Customer"
    # The CRM closed the lead's deal without a sale: a closed non-conversion, never a customer.
    LOST = "lost", "Lost"
    DISQUALIFIED = "disqualified", "Disqualified"


# The order of the funnel; `lost` and `disqualified` are off the funnel.
FUNNEL_STAGES = ("lead", "mql", "sql", "opportunity", "customer")
# Lifecycle stage -> the lead column holding the time the lead reached it.
STAGE_TIME_FIELDS = {
    "mql": "mql_at",
    "sql": "sql_at",
    "opportunity": "opportunity_at",
    "customer": "converted_at",
    "lost": "lost_at",
    "disqualified": "disqualified_at",
}


def normalise_email(email: str | None) -> str | None:
    """The merge key across sources: trimmed and lower-cased; empty means no email."""
    if email is None:
        return None
    cleaned = email.strip().lower()
    return cleaned or None


class Lead(models.Model):
    email = models.CharField(max_length=254, null=True, blank=True, unique=True)
    first_name = models.CharField(max_length=120, blank=True, default="")
    last_name = models.CharField(max_length=120, blank=True, default="")
    title = models.CharField(max_length=200, blank=True, default="")
    company = models.CharField(max_length=200, blank=True, default="")
    employees = models.IntegerField(null=True, blank=True)
    industry = models.CharField(max_length=120, blank=True, default="")
    country = models.CharField(max_length=120, blank=True, default="")
    source = models.CharField(max_length=120, blank=True, default="")
    attributes = models.JSONField(default=dict, blank=True)
    # Indexed by lead_owner_score_idx (owner first), not on its own.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_leads",
        db_index=False,
    )
    lifecycle_stage = models.CharField(
        max_length=20, choices=LifecycleStage.choices, default=LifecycleStage.LEAD
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    mql_at = models.DateTimeField(null=True, blank=True)
    sql_at = models.DateTimeField(null=True, blank=True)
    opportunity_at = models.DateTimeField(null=True, blank=True)
    converted_at = models.DateTimeField(null=True, blank=True)
    disqualified_at = models.DateTimeField(null=True, blank=True)
    # When the CRM closed the lead's deal as lost (integrations.outcomes); never a conversion.
    lost_at = models.DateTimeField(null=True, blank=True)
    revenue = models.FloatField(null=True, blank=True)

    # Written by scoring only.
    persona = models.CharField(max_length=100, blank=True, default="")
    score = models.IntegerField(null=True, blank=True)
    band = models.CharField(max_length=60, blank=True, default="")
    breakdown = models.JSONField(default=list, blank=True)
    rule_set_version = models.IntegerField(null=True, blank=True)
    scored_at = models.DateTimeField(null=True, blank=True)
    # Whether the lead is currently over the qualifying threshold, with hysteresis applied.
    qualified = models.BooleanField(default=False)
    # Rule groups (fit x engagement): {group: score}, {group: band or ""}, and the grid's
    # grade ("A1"; "" without a grid). Filterable: the queue and the API filter and sort on them.
    group_scores = models.JSONField(default=dict, blank=True)
    group_bands = models.JSONField(default=dict, blank=True)
    grade = models.CharField(max_length=130, blank=True, default="")
    # The company the lead belongs to (CRM account, else business email domain); set by
    # scoring.services.accounts on every rescore.
    account = models.ForeignKey(
        "Account", null=True, blank=True, on_delete=models.SET_NULL, related_name="contacts"
    )
    # KPI rollup: the band and score the lead had just before it converted (the last history
    # row before converted_at), valid while conversion_band_at equals converted_at. Kept by
    # scoring.kpis.rollup so the dashboard need not search the history of every converter.
    conversion_band = models.CharField(max_length=60, blank=True, default="")
    conversion_score = models.IntegerField(null=True, blank=True)
    conversion_band_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # Every index here is rewritten by each bulk rescore that changes a score, so only the
        # lead queue's orderings are indexed: low-cardinality filters (persona, stage, source)
        # ride on the score order instead of an index of their own.
        indexes = [
            models.Index(fields=["-score", "-id"], name="lead_score_idx"),
            models.Index(fields=["owner", "-score", "-id"], name="lead_owner_score_idx"),
            models.Index(fields=["band", "-score", "-id"], name="lead_band_score_idx"),
            models.Index(fields=["grade", "-score", "-id"], name="lead_grade_score_idx"),
            # The work queue's leading part (selectors.leads.new_mql_q): a small partial
            # index, so finding a rep's few new MQLs does not walk all their leads.
            models.Index(
                fields=["-score", "-id"],
                condition=models.Q(qualified=True, lifecycle_stage__in=["lead", "mql"]),
                name="lead_new_mql_idx",
            ),
            # A rep's qualified leads with what the queue's counts test (`queue_counts`).
            models.Index(
                fields=["owner", "lifecycle_stage", "mql_at", "qualified"],
                condition=models.Q(mql_at__isnull=False),
                name="lead_owner_mql_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.email or f"lead {self.pk}"

    @property
    def display_name(self) -> str:
        name = f"{self.first_name} {self.last_name}".strip()
        return name or self.email or f"Lead {self.pk}"

    @property
    def model_probability(self) -> float | None:
        """The active model's probability (LeadProbability), None when there is none. A query
        unless the lead was read with select_related("probability_row")."""
        try:
            return self.probability_row.probability
        except LeadProbability.DoesNotExist:
            return None


class LeadProbability(models.Model):
    """The active model's probability for a lead (absent = none). A table of its own so the
    bulk scoring writes narrow rows (a new table by COPY, swapped in), not 1M wide lead rows
    with their indexes."""

    # No database constraint: a foreign-key check per COPY'd row would cost seconds at 1M
    # rows. The ORM still cascades a lead's deletion, and every reader joins from the lead
    # side, so an orphan (a lead deleted by raw SQL) is never seen and the next bulk write of
    # its id range removes it.
    lead = models.OneToOneField(
        Lead,
        primary_key=True,
        on_delete=models.CASCADE,
        db_constraint=False,
        related_name="probability_row",
    )
    probability = models.FloatField()
    # When it was computed: a full scoring run builds a new table and, when it swaps it in,
    # keeps the rows the real-time path wrote while it ran (computed after it started).
    computed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"lead {self.lead_id}: {self.probability:.4f}"


class Identity(models.Model):
    """A lead's id in one source system; upserts from that source are keyed by it."""

    source = models.CharField(max_length=40)
    external_id = models.CharField(max_length=255)
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="identities")
    created_at = models.DateTimeField(default=timezone.now)
    # What the CRM last received from us, so a push sends only what changed.
    pushed_score = models.IntegerField(null=True, blank=True)
    pushed_band = models.CharField(max_length=60, blank=True, default="")
    pushed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "external_id"], name="identity_source_uniq")
        ]
        verbose_name_plural = "identities"

    def __str__(self) -> str:
        return f"{self.source}:{self.external_id}"


class Event(models.Model):
    source = models.CharField(max_length=40)
    external_id = models.CharField(max_length=255)
    # No single-column index: the (lead, event_type, occurred_at) index serves lookups by lead.
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="events", db_index=False)
    event_type = models.CharField(max_length=80)
    occurred_at = models.DateTimeField()
    properties = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "external_id"], name="event_source_uniq")
        ]
        indexes = [
            # Behaviour aggregation reads one lead range's events of the rule set's types.
            models.Index(fields=["lead", "event_type", "occurred_at"], name="event_lead_type_idx"),
            models.Index(fields=["event_type", "occurred_at"], name="event_type_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} @ {self.occurred_at:%Y-%m-%d %H:%M}"


class LeadMerge(models.Model):
    """A record of one lead folded into another because they share a normalised email."""

    survivor = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="merges")
    merged_lead_id = models.BigIntegerField()
    email = models.CharField(max_length=254)
    identities_moved = models.IntegerField(default=0)
    events_moved = models.IntegerField(default=0)
    merged_at = models.DateTimeField(default=timezone.now)
    details = models.JSONField(default=dict, blank=True)


class RuleSet(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        PUBLISHED = "published", "Published (live)"
        ARCHIVED = "archived", "Archived"
        # A frozen challenger of an experiment: versioned and immutable, never live.
        CHALLENGER = "challenger", "Experiment challenger"

    name = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    version = models.IntegerField(null=True, blank=True, unique=True)
    # Why this version was published (required by the publish form; a rollback writes its own).
    change_note = models.TextField(blank=True, default="")
    floor = models.FloatField(default=0)
    ceiling = models.FloatField(default=100)
    model_weight = models.FloatField(default=0)
    # The document's `groups`, `grid` and `account` (DESIGN.md §4 extension), as written there.
    groups = models.JSONField(default=list, blank=True)
    grid = models.JSONField(null=True, blank=True)
    account = models.JSONField(null=True, blank=True)
    based_on = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    published_at = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        constraints = [
            # Exactly one champion at a time.
            models.UniqueConstraint(
                fields=["status"], condition=Q(status="published"), name="one_live_ruleset"
            )
        ]

    def __str__(self) -> str:
        label = f"v{self.version}" if self.version else "draft"
        return f"{self.name} ({label})"

    @property
    def is_editable(self) -> bool:
        return self.status == self.Status.DRAFT


class Persona(models.Model):
    rule_set = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="personas")
    name = models.CharField(max_length=100)
    priority = models.IntegerField(default=1)
    match = models.JSONField(default=list, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["priority", "id"]
        constraints = [
            models.UniqueConstraint(fields=["rule_set", "name"], name="persona_name_uniq")
        ]

    def __str__(self) -> str:
        return self.name


class Band(models.Model):
    rule_set = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="bands")
    name = models.CharField(max_length=60)
    min_score = models.FloatField()
    qualifies = models.BooleanField(default=False)
    persona = models.CharField(max_length=100, blank=True, default="")
    history = HistoricalRecords()

    class Meta:
        ordering = ["persona", "min_score", "id"]

    def __str__(self) -> str:
        return f"{self.name} ≥ {self.min_score:g}"


class Rule(models.Model):
    class Kind(models.TextChoices):
        ATTRIBUTE = "attribute", "Attribute"
        EVENT = "event", "Behaviour (event)"
        INACTIVITY = "inactivity", "Inactivity"

    rule_set = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="rules")
    position = models.IntegerField(default=0)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    name = models.CharField(max_length=200, blank=True, default="")
    persona = models.CharField(max_length=100, blank=True, default="")
    group = models.CharField(max_length=100, blank=True, default="")
    points = models.FloatField()
    # attribute rules
    field = models.CharField(max_length=120, blank=True, default="")
    op = models.CharField(max_length=20, blank=True, default="")
    value = models.JSONField(null=True, blank=True)
    # event rules
    event_type = models.CharField(max_length=80, blank=True, default="")
    where = models.JSONField(default=dict, blank=True)
    window_days = models.FloatField(null=True, blank=True)
    half_life_days = models.FloatField(null=True, blank=True)
    cap = models.FloatField(null=True, blank=True)
    # inactivity rules
    days = models.FloatField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.name or f"{self.kind} rule {self.position}"


class ScoreHistory(models.Model):
    """A lead's band timeline: a row whenever its band changes (or its score moves by at least
    SCORE_HISTORY_DELTA), stamped with the time the score is *as of*."""

    lead = models.ForeignKey(
        Lead, on_delete=models.CASCADE, related_name="score_history", db_index=False
    )
    as_of = models.DateTimeField()
    score = models.IntegerField()
    band = models.CharField(max_length=60, blank=True, default="")
    previous_band = models.CharField(max_length=60, blank=True, default="")
    rule_set_version = models.IntegerField(null=True, blank=True)
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["lead", "as_of"], name="history_lead_asof_idx"),
            # "Did any band change after this time?" (the KPIs' honest band of open leads).
            models.Index(fields=["as_of"], name="history_asof_idx"),
        ]
        verbose_name_plural = "score history"


class LeadTransition(models.Model):
    """Outbox: a lead crossed the qualifying threshold (or fell back below it, with
    hysteresis). Written in the same transaction as the score; automations consume it."""

    class Kind(models.TextChoices):
        QUALIFIED = "qualified", "Qualified"
        UNQUALIFIED = "unqualified", "Fell below threshold"
        BAND_CHANGED = "band_changed", "Band changed"
        ASSIGNED = "assigned", "Assigned"
        SLA_BREACHED = "sla_breached", "SLA breached"

    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="transitions")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    from_band = models.CharField(max_length=60, blank=True, default="")
    to_band = models.CharField(max_length=60, blank=True, default="")
    score = models.IntegerField()
    rule_set_version = models.IntegerField(null=True, blank=True)
    occurred_at = models.DateTimeField()
    processed_at = models.DateTimeField(null=True, blank=True)
    # What the kind needs besides the band move: an assignment's rule, team, method and user.
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["id"], condition=Q(processed_at__isnull=True), name="transition_pending_idx"
            )
        ]


class PendingRescore(models.Model):
    """A lead waiting for its real-time rescore. A burst of events upserts one row, and the
    task that claims it (by deleting it) rescores once; rows left behind while the broker was
    down are picked up by the periodic sweep, so nothing is lost."""

    lead = models.OneToOneField(Lead, on_delete=models.CASCADE, primary_key=True)
    requested_at = models.DateTimeField(default=timezone.now)


class LeadDue(models.Model):
    """When a lead's stored score, band or persona can next change with time alone (a window,
    an inactivity threshold, decay), as its last scoring computed it; NULL: never. The time
    rescore (`rescore --due`) finds due leads through the index on `due_at`.

    A narrow table of its own rather than a column of the lead: the due time moves with almost
    every rescore, and an index on a lead column that changes makes the lead's UPDATE non-HOT,
    writing a new entry into every index of the lead table (0014 sized the pages for HOT)."""

    lead = models.OneToOneField(Lead, on_delete=models.CASCADE, primary_key=True)
    due_at = models.DateTimeField(null=True, blank=True, db_index=True)


class RescoreRun(Job):
    """A bulk rescore: its progress counts chunks (`progress_done` of `progress_total`)."""

    rule_set = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="rescore_runs")
    as_of = models.DateTimeField(null=True, blank=True)
    leads_scored = models.IntegerField(default=0)
    leads_changed = models.IntegerField(default=0)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            # One active bulk run per rule set: two callers at once get one run.
            models.UniqueConstraint(
                fields=["rule_set"],
                condition=Q(status__in=["queued", "running"]),
                name="one_active_run_per_rule_set",
            )
        ]


class RescoreChunk(Job):
    """One id range of a rescore run; failed chunks go back to queued until their last try."""

    run = models.ForeignKey(RescoreRun, on_delete=models.CASCADE, related_name="chunks")
    first_lead_id = models.BigIntegerField()
    last_lead_id = models.BigIntegerField()
    attempts = models.IntegerField(default=0)
    leads_scored = models.IntegerField(default=0)
    leads_changed = models.IntegerField(default=0)

    # Lost chunks are sent again by the runs sweep (scoring.services.rescore), with its bounds.
    resend_by_jobs_sweep = False


class Feedback(models.Model):
    class Verdict(models.TextChoices):
        GOOD = "good", "Good lead"
        BAD = "bad", "Bad lead"

    class Reason(models.TextChoices):
        NOT_DECISION_MAKER = "not_decision_maker", "Not a decision maker"
        NO_BUDGET = "no_budget", "No budget"
        STUDENT_OR_PERSONAL = "student_or_personal", "Student or personal"
        COMPETITOR = "competitor", "Competitor"
        SPAM_OR_FAKE = "spam_or_fake", "Spam or fake"
        WRONG_PERSONA = "wrong_persona", "Wrong persona"
        ALREADY_CUSTOMER = "already_customer", "Already a customer"
        OTHER = "other", "Other"

    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="feedback")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="lead_feedback"
    )
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    reason = models.CharField(max_length=40, choices=Reason.choices, blank=True, default="")
    note = models.TextField(blank=True, default="")
    # The band and score when the verdict was given, for the feedback review.
    band = models.CharField(max_length=60, blank=True, default="")
    score = models.IntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["lead", "author"], name="feedback_one_per_author")
        ]
        indexes = [models.Index(fields=["created_at"], name="feedback_created_idx")]


class PreviewRun(Job):
    """One impact preview: a draft scored over every lead beside the live rule set (the
    baseline, none when nothing is live). The task records its progress here (a fraction, in
    thousandths), and the finished comparison as JSON (see `scoring.services.preview` for its
    shape)."""

    rule_set = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="previews")
    baseline = models.ForeignKey(
        RuleSet, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    result = models.JSONField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )


class MLModel(Job):
    """One trained model of the predictive score (DESIGN.md §4): the training run's progress
    while it trains (a job; the rows of one run share its `run_key` and move together), then
    the artifact's metadata. The artifact itself (the whole
    scikit-learn estimator, saved with joblib) lives under VAR_DIR/models; `artifact_sha256`
    and the library versions guard loading it. At most one model is active."""

    run_key = models.CharField(max_length=36, db_index=True)
    algorithm = models.CharField(max_length=40)
    message = models.CharField(max_length=200, blank=True, default="")
    label_stage = models.CharField(max_length=20, default="customer")
    label = models.CharField(max_length=200, blank=True, default="")
    horizon_days = models.IntegerField(null=True, blank=True)
    cutoff = models.DateTimeField(null=True, blank=True)
    train_start = models.DateTimeField(null=True, blank=True)
    train_end = models.DateTimeField(null=True, blank=True)
    split = models.CharField(max_length=40, blank=True, default="")
    n_train = models.IntegerField(default=0)
    n_test = models.IntegerField(default=0)
    features = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    details = models.JSONField(default=dict, blank=True)
    sklearn_version = models.CharField(max_length=40, blank=True, default="")
    numpy_version = models.CharField(max_length=40, blank=True, default="")
    artifact_path = models.CharField(max_length=300, blank=True, default="")
    artifact_sha256 = models.CharField(max_length=64, blank=True, default="")
    is_active = models.BooleanField(default=False)
    activated_at = models.DateTimeField(null=True, blank=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="one_active_ml_model"
            )
        ]

    def __str__(self) -> str:
        return f"{self.algorithm} #{self.pk}"


class UserPreference(models.Model):
    """A user's own settings for the pages, set on the profile page: the time zone their
    times and days are shown in ("" = the site's TIME_ZONE, so a change of the site's zone
    reaches them). How alerts reach a rep is `integrations.AlertPreference`, in the app that
    sends them (scoring does not import integrations)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preference"
    )
    time_zone = models.CharField(max_length=64, blank=True, default="")


class UserAudit(models.Model):
    """One change an admin made to a user on the users page (invite, role, deactivate,
    reactivate). Users are Django's own model, so their changes are recorded here rather than
    by a history table on a model we do not own (its password hash and every login's
    `last_login` would be copied into it)."""

    class Action(models.TextChoices):
        INVITE = "invite", "Invited"
        ROLE = "role", "Role changed"
        DEACTIVATE = "deactivate", "Deactivated"
        REACTIVATE = "reactivate", "Reactivated"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="audit_entries"
    )
    action = models.CharField(max_length=20, choices=Action.choices)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-pk"]


# ---------------------------------------------------------------------------------------------
# Routing (scoring.services.routing): who gets a lead that qualifies.


class RoutingConfig(models.Model):
    """One version of the routing rules document (`scoring.engine.routing`); the newest is in
    force. Versions are never edited, so the list of them is the history."""

    version = models.PositiveIntegerField(unique=True)
    document = models.JSONField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=20, default="page")  # page | import

    class Meta:
        ordering = ["-version"]


class LeadAssignment(models.Model):
    """A lead given to a rep: by which rule, from which team, how, and when. The open one
    (`ended_at` null, at most one per lead) is the lead's current assignment; a reassignment
    ends it and opens the next."""

    class Reason(models.TextChoices):
        QUALIFIED = "qualified", "Qualified"
        SLA_REASSIGN = "sla_reassign", "SLA breach: reassigned"
        SLA_ESCALATE = "sla_escalate", "SLA breach: escalated"

    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="assignments")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="lead_assignments"
    )
    rule = models.CharField(max_length=200)
    team = models.JSONField(default=list)
    method = models.CharField(max_length=20)
    reason = models.CharField(max_length=20, choices=Reason.choices, default=Reason.QUALIFIED)
    routing_version = models.IntegerField(null=True, blank=True)
    assigned_at = models.DateTimeField(default=timezone.now)
    accepted_at = models.DateTimeField(null=True, blank=True)
    sla_breached_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-assigned_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["lead"], condition=Q(ended_at__isnull=True), name="one_open_assignment"
            )
        ]
        indexes = [
            models.Index(fields=["user", "assigned_at"], name="assignment_user_idx"),
            models.Index(fields=["rule", "assigned_at"], name="assignment_rule_idx"),
        ]


# Experiments (champion/challenger tests; logic in scoring.services.experiments)


class Experiment(models.Model):
    """A randomised champion/challenger test. Each lead in its population gets an arm fixed by
    a hash of (`salt`, lead id); both arms score every lead, and the lead's arm decides what
    acts. At most one experiment runs at a time (so a lead's stored score has one owner)."""

    class Kind(models.TextChoices):
        RULESET = "ruleset", "Rule set"
        MODEL = "model", "Model"
        THRESHOLD = "threshold", "Threshold"

    class Metric(models.TextChoices):
        CONVERSION = "conversion", "Conversion within the horizon"
        SQL = "sql", "Sales-accepted (SQL)"
        BAD_LEAD_RATE = "bad_lead_rate", "Bad-lead rate (sales feedback)"

    class Population(models.TextChoices):
        NEW = "new", "Leads created after the start"
        ALL = "all", "All leads"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        STOPPED = "stopped", "Stopped"
        PROMOTED = "promoted", "Promoted"

    name = models.CharField(max_length=100, unique=True)
    hypothesis = models.TextField(blank=True, default="")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    metric = models.CharField(max_length=20, choices=Metric.choices, default=Metric.CONVERSION)
    horizon_days = models.IntegerField(default=90)
    population = models.CharField(max_length=10, choices=Population.choices, default="new")
    # The challenger's share of the population.
    split = models.FloatField(default=0.5)
    min_sample = models.IntegerField(default=1000)
    # The smallest difference in the primary metric's rate worth acting on (absolute).
    relevant_difference = models.FloatField(default=0.02)
    alpha = models.FloatField(default=0.05)
    salt = models.CharField(max_length=64)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    champion_rule_set = models.ForeignKey(
        RuleSet, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # ruleset and threshold kinds: the challenger, frozen as a rule set version of its own.
    challenger_rule_set = models.ForeignKey(
        RuleSet, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    champion_model = models.ForeignKey(
        MLModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    challenger_model = models.ForeignKey(
        MLModel, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    threshold = models.FloatField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    stopped_at = models.DateTimeField(null=True, blank=True)
    stopped_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The report's decision when the experiment ended.
    final_decision = models.CharField(max_length=30, blank=True, default="")
    history = HistoricalRecords()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["status"], condition=Q(status="running"), name="one_running_experiment"
            ),
            models.CheckConstraint(
                condition=Q(split__gt=0) & Q(split__lt=1), name="experiment_split_open_unit"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ExperimentLead(models.Model):
    """A lead's arm in an experiment (fixed by the hash; recorded when first scored in it) and
    the other arm's score of it (the shadow), with that score's breakdown."""

    class Arm(models.TextChoices):
        CHAMPION = "champion", "Champion"
        CHALLENGER = "challenger", "Challenger"

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="leads")
    # No database constraint, as for LeadProbability: the rows are written in bulk per chunk.
    lead = models.ForeignKey(
        Lead, on_delete=models.CASCADE, db_constraint=False, related_name="experiment_rows"
    )
    arm = models.CharField(max_length=10, choices=Arm.choices)
    assigned_at = models.DateTimeField(default=timezone.now)
    shadow_score = models.IntegerField(null=True, blank=True)
    shadow_breakdown = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["experiment", "lead"], name="experiment_lead_uniq")
        ]
        indexes = [models.Index(fields=["lead"], name="experiment_lead_lead_idx")]


class Account(models.Model):
    """A company leads belong to: a CRM account (Salesforce ConvertedAccountId / AccountId,
    HubSpot company) or, failing that, a business email domain (free-mail domains never form
    one). `key` is "salesforce:<id>", "hubspot:<id>" or "domain:<domain>". The score and band
    roll up from the contacts' scores as the live rule set's `account` says (none without)."""

    key = models.CharField(max_length=300, unique=True)
    source = models.CharField(max_length=20)
    external_id = models.CharField(max_length=255, blank=True, default="")
    name = models.CharField(max_length=200, blank=True, default="")
    domain = models.CharField(max_length=255, blank=True, default="")
    score = models.IntegerField(null=True, blank=True)
    band = models.CharField(max_length=60, blank=True, default="")
    contact_count = models.IntegerField(default=0)
    scored_contacts = models.IntegerField(default=0)
    scored_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["-score", "-id"], name="account_score_idx")]

    def __str__(self) -> str:
        return self.name or self.key
