"""The one connector interface: its dataclasses, its errors and the retry helper.

Every vendor connector (Salesforce, HubSpot, Mixpanel, ...) implements :class:`Connector` and
speaks only in the frozen dataclasses defined here, so the sync services never see a vendor
SDK object, an HTTP response or an ORM model. Connectors are pure: they import no Django, read
no settings and no environment; their configuration is passed in as a dataclass.

Error contract (the only exceptions a connector's public methods raise):

- :class:`TransientError`: worth retrying with backoff (5xx, timeouts, dropped connections).
- :class:`RateLimited` (a ``TransientError``): the vendor asked us to slow down. ``scope`` is
  ``"burst"`` (retry after ``retry_after`` seconds) or ``"daily"`` (pause the sync until
  ``reset_at`` / ``retry_after``; never retry in a tight loop).
- :class:`PermanentError`: retrying will not help (credentials rejected after one refresh,
  malformed query, missing object, missing permission). :class:`AuthFailed` is the
  credentials case, so callers can tell "reconnect the integration" apart from the rest.

:class:`AuthExpired` is internal: a connector raises it to itself to trigger one token refresh
and never lets it escape.
"""

from __future__ import annotations

import abc
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, TypeVar

__all__ = [
    "LIFECYCLE_STAGES",
    "OUTCOME_STATUSES",
    "STAGE_TIME_KEYS",
    "AuthExpired",
    "AuthFailed",
    "Batch",
    "Connector",
    "ConnectorError",
    "DeletedRecord",
    "EventRecord",
    "FailedRecord",
    "LeadRecord",
    "OutcomeRecord",
    "OwnerRecord",
    "PermanentError",
    "PushResult",
    "RateLimited",
    "RetryPolicy",
    "ScoreUpdate",
    "TransientError",
    "backoff_delay",
    "call_with_retry",
    "related_id_attribute",
]

logger = logging.getLogger(__name__)

#: Lifecycle stages a lead can be in, in funnel order (DESIGN.md section 3).
LIFECYCLE_STAGES: tuple[str, ...] = (
    "lead",
    "mql",
    "sql",
    "opportunity",
    "customer",
    "lost",
    "disqualified",
)
#: Keys allowed in ``LeadRecord.stage_times``.
STAGE_TIME_KEYS: tuple[str, ...] = (
    "mql_at",
    "sql_at",
    "opportunity_at",
    "converted_at",
    "lost_at",
)
#: What an opportunity or deal can say about a sale (``OutcomeRecord.status``).
OUTCOME_STATUSES: tuple[str, ...] = ("open", "won", "lost")


def related_id_attribute(source: str, key: str) -> str:
    """The lead attribute a ``LeadRecord.related_ids`` entry is stored under
    (``salesforce_owner_id``): one naming for the sync that writes it, the outcome linking
    that reads it and the training that must not learn from it."""
    return f"{source}_{key}"


RateLimitScope = Literal["burst", "daily"]


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class ConnectorError(Exception):
    """Base of every error a connector raises.

    ``status`` is the HTTP status when there was one and ``code`` the vendor's error code
    (e.g. ``INVALID_SESSION_ID``, ``RATE_LIMIT``); both are for diagnostics and metrics. The
    message never contains personal data, so it can be stored on the sync run and shown to
    admins.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class TransientError(ConnectorError):
    """A failure that may go away on its own: retry with exponential backoff."""


class PermanentError(ConnectorError):
    """A failure that retrying will not fix; the sync run should stop and report it."""


class AuthFailed(PermanentError):
    """The vendor rejected our credentials even after one token refresh: reconnect needed."""


class RateLimited(TransientError):
    """The vendor throttled us.

    ``retry_after`` is how many seconds to wait before the next call (the vendor's hint when it
    gave one). ``scope`` is ``"burst"`` for short windows (seconds) and ``"daily"`` for a quota
    that only resets later; ``reset_at`` is when that quota resets, if known.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        scope: RateLimitScope = "burst",
        reset_at: datetime | None = None,
        status: int | None = 429,
        code: str | None = None,
    ):
        super().__init__(message, status=status, code=code)
        if scope not in ("burst", "daily"):
            raise ValueError(f"unknown rate-limit scope {scope!r}")
        self.retry_after = max(0.0, float(retry_after))
        self.scope: RateLimitScope = scope
        self.reset_at = reset_at


class AuthExpired(ConnectorError):
    """Internal: the access token was rejected; the connector refreshes it once and retries.

    Never raised out of a connector's public methods.
    """


# --------------------------------------------------------------------------------------------
# Dataclasses crossing the boundary
# --------------------------------------------------------------------------------------------


def _require_aware(name: str, value: datetime | None) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} must be timezone-aware")


@dataclass(frozen=True, slots=True)
class LeadRecord:
    """One person as a source system knows them.

    ``(source, external_id)`` is the identity the caller upserts on. ``email`` is trimmed and
    lower-cased (the cross-source merge key) or ``None``. ``lifecycle_stage`` is one of
    :data:`LIFECYCLE_STAGES` or ``None`` when the source does not say. ``stage_times`` maps the
    keys of :data:`STAGE_TIME_KEYS` to timezone-aware datetimes. ``attributes`` holds custom
    fields and raw values that did not fit a typed field (JSON-serialisable values only).
    ``related_ids`` holds other identifiers of the same source (owner, converted contact, ...).
    Invalid stages, stage keys or naive datetimes raise ``ValueError`` at construction, which
    connectors turn into a :class:`FailedRecord`.
    """

    source: str
    external_id: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    company: str | None = None
    employees: int | None = None
    industry: str | None = None
    country: str | None = None
    lead_source: str | None = None
    lifecycle_stage: str | None = None
    stage_times: dict[str, datetime] = field(default_factory=dict)
    revenue: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    modified_at: datetime | None = None
    created_at: datetime | None = None
    related_ids: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.external_id:
            raise ValueError("external_id is required")
        if self.lifecycle_stage is not None and self.lifecycle_stage not in LIFECYCLE_STAGES:
            raise ValueError(f"unknown lifecycle_stage {self.lifecycle_stage!r}")
        for key, value in self.stage_times.items():
            if key not in STAGE_TIME_KEYS:
                raise ValueError(f"unknown stage_times key {key!r}")
            _require_aware(f"stage_times[{key}]", value)
        _require_aware("modified_at", self.modified_at)
        _require_aware("created_at", self.created_at)


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One behavioural event.

    ``(source, external_id)`` is unique and stable: re-exporting the same event yields the same
    ``external_id`` so the caller's upsert ignores it. ``occurred_at`` is timezone-aware UTC.
    ``lead_external_id`` is an identity of the same source (e.g. a Mixpanel distinct_id) and
    ``email`` a normalised e-mail, either of which the caller uses to find the lead.
    """

    source: str
    external_id: str
    event_type: str
    occurred_at: datetime
    properties: dict[str, Any] = field(default_factory=dict)
    email: str | None = None
    lead_external_id: str | None = None

    def __post_init__(self) -> None:
        if not self.external_id:
            raise ValueError("external_id is required")
        if not self.event_type:
            raise ValueError("event_type is required")
        _require_aware("occurred_at", self.occurred_at)


@dataclass(frozen=True, slots=True)
class OutcomeRecord:
    """An opportunity (Salesforce) or deal (HubSpot): what the CRM says about a sale.

    ``status`` is one of :data:`OUTCOME_STATUSES` (``won`` and ``lost`` from the vendor's own
    closed/won flags, never from stage names). ``closed_at`` is when a closed one closed,
    ``opened_at`` when it was created. The leads it belongs to are named two ways, either or
    both: ``lead_external_ids`` are records of the same source that are leads (HubSpot
    contacts), and ``links`` are ``(related_ids key, value)`` pairs, in order of preference,
    matched against the leads' ``related_ids`` (a Salesforce lead's converted opportunity,
    contact or account): the first pair that matches a lead decides.
    """

    source: str
    external_id: str
    status: str
    amount: float | None = None
    opened_at: datetime | None = None
    closed_at: datetime | None = None
    modified_at: datetime | None = None
    stage: str | None = None
    lead_external_ids: tuple[str, ...] = ()
    links: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.external_id:
            raise ValueError("external_id is required")
        if self.status not in OUTCOME_STATUSES:
            raise ValueError(f"unknown outcome status {self.status!r}")
        _require_aware("opened_at", self.opened_at)
        _require_aware("closed_at", self.closed_at)
        _require_aware("modified_at", self.modified_at)


@dataclass(frozen=True, slots=True)
class OwnerRecord:
    """A CRM user who can own records (``related_ids["owner_id"]`` names one); ``email`` is
    normalised or ``None``."""

    source: str
    external_id: str
    email: str | None = None


@dataclass(frozen=True, slots=True)
class DeletedRecord:
    """A record the source deleted; ``deleted_at`` is ``None`` when the source does not say."""

    source: str
    external_id: str
    deleted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class FailedRecord:
    """A record that could not be read or written; it never stops the rest of the batch.

    ``external_id`` is ``None`` when the record was too broken to have one; ``line`` is the
    1-based line number for line-oriented sources (Mixpanel export). ``reason`` names the field
    and problem, never personal data.
    """

    source: str
    external_id: str | None
    reason: str
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """One page of work from :meth:`Connector.fetch`.

    The caller writes ``owners`` first (so the batch's leads can be matched to them), then
    ``leads``, ``events``, ``outcomes`` and ``deleted``, and stores ``cursor_after`` in the
    same transaction, then resumes from that cursor after a crash. ``cursor_after`` is an opaque
    string only the connector that produced it understands (``None``: nothing to resume from
    yet). ``done`` is true on the last batch of the run. ``usage`` reports API consumption
    (``requests`` made for this batch, and where the vendor tells us: ``api_used``,
    ``api_limit``, ``throttle`` - true once usage passes the configured threshold).
    """

    leads: list[LeadRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    deleted: list[DeletedRecord] = field(default_factory=list)
    failed: list[FailedRecord] = field(default_factory=list)
    outcomes: list[OutcomeRecord] = field(default_factory=list)
    owners: list[OwnerRecord] = field(default_factory=list)
    cursor_after: str | None = None
    done: bool = False
    usage: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScoreUpdate:
    """A score to write back to the CRM record ``external_id``."""

    external_id: str
    score: int
    band: str


@dataclass(frozen=True, slots=True)
class PushResult:
    """Outcome of :meth:`Connector.push_scores`: how many records were written, which failed."""

    pushed: int
    failed: list[FailedRecord] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------------


class Connector(abc.ABC):
    """A vendor connection. Instances are cheap, not thread-safe, and hold no database state."""

    source: ClassVar[str]
    #: Keys of ``LeadRecord.attributes`` this connector derives from the outcome (a status a
    #: sales rep sets after contact, the deal's stage, ...) and ``related_ids`` keys that only
    #: exist once sales worked the lead. Never features: see :meth:`outcome_attributes`.
    outcome_attribute_keys: ClassVar[tuple[str, ...]] = ()
    outcome_related_id_keys: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def outcome_attributes(cls) -> frozenset[str]:
        """Every lead attribute, as stored, that this connector derives from the outcome."""
        return frozenset(cls.outcome_attribute_keys) | {
            related_id_attribute(cls.source, key) for key in cls.outcome_related_id_keys
        }

    @abc.abstractmethod
    def fetch(self, cursor: str | None, full: bool = False) -> Iterator[Batch]:
        """Yield batches of records changed since ``cursor`` (all records when ``full``).

        Each batch carries the cursor to resume from once it is committed; the last one has
        ``done=True``. Malformed records are reported in ``Batch.failed`` and never stop the
        run. Raises :class:`TransientError` (after the connector's own retries),
        :class:`RateLimited` (a daily quota, or a burst wait too long to sleep through) or
        :class:`PermanentError`.
        """

    @abc.abstractmethod
    def push_scores(self, updates: Sequence[ScoreUpdate]) -> PushResult:
        """Write scores and bands back to the source, in the vendor's batch size.

        Records the vendor rejects are returned in ``PushResult.failed``; whole-request
        failures raise as in :meth:`fetch`. Vendors without write-back raise
        :class:`PermanentError`. Pushing the same updates twice is harmless.
        """

    @abc.abstractmethod
    def test_connection(self) -> dict[str, Any]:
        """Make one cheap authenticated call and return what it tells (e.g. API usage).

        Raises like :meth:`fetch` when the connection does not work.
        """


# --------------------------------------------------------------------------------------------
# Retry at the I/O edge
# --------------------------------------------------------------------------------------------

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard a connector retries transient failures of one call (see :func:`call_with_retry`)."""

    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0


def backoff_delay(
    attempt: int,
    *,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    rng: Callable[[], float] = random.random,
) -> float:
    """Full-jitter exponential backoff before retry number ``attempt`` (1-based).

    ``uniform(0, min(max_delay, base_delay * 2**(attempt-1)))``: the jitter spreads out many
    workers that failed at the same moment, so they do not retry in lock-step.
    """
    return rng() * min(max_delay, base_delay * 2 ** (attempt - 1))


def call_with_retry(
    fn: Callable[[], T],
    *,
    attempts: int = 5,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
    operation: str = "call",
) -> T:
    """Call ``fn`` and retry it on :class:`TransientError`, at most ``attempts`` times in all.

    - A burst :class:`RateLimited` waits the vendor's ``retry_after`` before the next attempt;
      if that is longer than ``max_delay`` it is re-raised so the caller can reschedule instead
      of holding a worker asleep.
    - A daily :class:`RateLimited` is re-raised at once: the quota will not come back within
      any sensible backoff, and retrying would only burn more of the next day's quota.
    - Any other :class:`TransientError` waits :func:`backoff_delay` (exponential, full
      jitter).
    - :class:`PermanentError` and every other exception propagate unchanged at once.

    The last error is re-raised when the attempts run out. ``sleep`` and ``rng`` are injectable
    so tests never actually wait.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    attempt = 1
    while True:
        try:
            return fn()
        except RateLimited as exc:
            if exc.scope == "daily" or attempt >= attempts or exc.retry_after > max_delay:
                raise
            delay = exc.retry_after
            reason = "rate_limited"
        except TransientError:
            if attempt >= attempts:
                raise
            delay = backoff_delay(attempt, base_delay=base_delay, max_delay=max_delay, rng=rng)
            reason = "transient"
        logger.warning(
            "connector.retry operation=%s attempt=%d reason=%s delay=%.2f",
            operation,
            attempt,
            reason,
            delay,
            extra={
                "event": "connector.retry",
                "operation": operation,
                "attempt": attempt,
                "reason": reason,
                "delay": delay,
            },
        )
        sleep(delay)
        attempt += 1
