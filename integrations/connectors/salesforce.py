"""Salesforce Lead connector, through simple-salesforce over the REST API.

What it reads (``fetch``):

- Leads by SOQL, ordered by ``(SystemModstamp, Id)`` and paged with ``nextRecordsUrl``; one
  :class:`~.base.Batch` per page whose cursor is the last ``(SystemModstamp, Id)`` of the page.
  Resuming uses a keyset condition, ``SystemModstamp > t OR (SystemModstamp = t AND Id > id)``,
  so a page boundary inside a mass update (hundreds of leads with the same SystemModstamp) loses
  nothing. A bare ISO timestamp is accepted as a cursor too (``SystemModstamp > t``).
- Deletions through getDeleted (``/sobjects/Lead/deleted/``), from the previous run's
  ``latestDateCovered`` (at most the 15 days Salesforce keeps), in the first batch.
- The users who own leads (``SELECT Id, Email FROM User``), in the first batch as
  :class:`~.base.OwnerRecord` s, so the caller can match ``OwnerId`` to its users by email.
- After the last Lead page, Opportunities on their own keyset cursor (``SystemModstamp``,
  ``Id``), one batch per page, as :class:`~.base.OutcomeRecord` s: ``IsWon`` is won,
  ``IsClosed`` and not won is lost, anything else open (the flags, never ``StageName``);
  ``Amount``, ``CreatedDate``, ``CloseDate`` (when closed). An opportunity names its lead by
  the lead's ``ConvertedOpportunityId``, else (an opportunity created after the conversion)
  by the lead's ``ConvertedContactId`` (the opportunity's ``ContactId``), else its
  ``ConvertedAccountId``. A changed opportunity (lost, then won; a new amount) comes again on
  the next incremental sync.

Lifecycle mapping: a converted lead gets ``opportunity_at = ConvertedDate``; its stage is left
to its opportunities (the caller derives customer, lost or opportunity from them), or ``sql``
when it was converted without an opportunity. Conversion in Salesforce is not a sale: only a
won opportunity sets ``converted_at``. An unconverted lead's ``Status`` goes through
``SalesforceConfig.status_map`` (case-insensitive; default: lead, or disqualified for the
"Closed - Not Converted" family).

Errors: 401 ``INVALID_SESSION_ID`` refreshes the token once with the OAuth refresh_token grant
against ``<instance_url>/services/oauth2/token``; a second 401 raises
:class:`~.base.AuthFailed`. 403 ``REQUEST_LIMIT_EXCEEDED`` is a daily
:class:`~.base.RateLimited` (or a burst one for the concurrent-request limit). 5xx, timeouts
and dropped connections are :class:`~.base.TransientError` and retried here with backoff.
``Sforce-Limit-Info`` feeds ``Batch.usage``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError

from ._common import (
    chunked,
    clean_str,
    dedupe_updates,
    log_event,
    normalise_email,
    parse_datetime,
    translate_requests_error,
    utc_now,
)
from .base import (
    AuthExpired,
    AuthFailed,
    Batch,
    Connector,
    ConnectorError,
    DeletedRecord,
    FailedRecord,
    LeadRecord,
    OutcomeRecord,
    OwnerRecord,
    PermanentError,
    PushResult,
    RateLimited,
    RetryPolicy,
    ScoreUpdate,
    TransientError,
    call_with_retry,
)

__all__ = [
    "DEFAULT_STATUS_MAP",
    "LEAD_FIELDS",
    "OPPORTUNITY_FIELDS",
    "SalesforceConfig",
    "SalesforceConnector",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

SOURCE = "salesforce"

#: Lead fields always selected; ``SalesforceConfig.custom_fields`` are added after them.
LEAD_FIELDS: tuple[str, ...] = (
    "Id",
    "Email",
    "FirstName",
    "LastName",
    "Title",
    "Company",
    "NumberOfEmployees",
    "Industry",
    "Country",
    "LeadSource",
    "Status",
    "IsConverted",
    "ConvertedDate",
    "ConvertedOpportunityId",
    "ConvertedContactId",
    "ConvertedAccountId",
    "OwnerId",
    "CreatedDate",
    "SystemModstamp",
)

#: Opportunity fields read for outcomes.
OPPORTUNITY_FIELDS: tuple[str, ...] = (
    "Id",
    "AccountId",
    "ContactId",
    "Amount",
    "IsWon",
    "IsClosed",
    "CloseDate",
    "StageName",
    "CreatedDate",
    "SystemModstamp",
)

#: Default Lead ``Status`` -> lifecycle stage (the standard picklist plus common variants).
DEFAULT_STATUS_MAP: Mapping[str, str] = {
    "open - not contacted": "lead",
    "working - contacted": "lead",
    "open": "lead",
    "working": "lead",
    "nurturing": "lead",
    "qualified": "sql",
    "closed - not converted": "disqualified",
    "unqualified": "disqualified",
    "disqualified": "disqualified",
}

# Salesforce keeps deleted-record ids for 15 days; asking for older windows is an error
# (INVALID_REPLICATION_DATE). The margin absorbs clock skew between us and Salesforce.
_DELETED_RETENTION = timedelta(days=15) - timedelta(minutes=5)
# getDeleted works to the minute; a shorter window returns nothing useful.
_MIN_DELETED_WINDOW = timedelta(minutes=1)
# The daily quota is a rolling 24-hour window with no fixed reset: check back hourly.
_DAILY_LIMIT_RETRY_AFTER = 3600.0
# The concurrent long-request limit clears within seconds.
_CONCURRENT_LIMIT_RETRY_AFTER = 10.0

_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_SALESFORCE_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")


@dataclass(frozen=True)
class SalesforceConfig:
    """How to reach one Salesforce org. Secrets are excluded from ``repr``.

    ``access_token`` may be ``None``: the connector then refreshes before its first call.
    ``custom_fields`` are extra Lead fields (API names) copied into ``LeadRecord.attributes``.
    ``verify`` is passed to requests (``False``, ``True`` or a CA bundle path).
    ``throttle_threshold`` is the share of the daily API quota above which
    ``Batch.usage["throttle"]`` is true.
    """

    instance_url: str
    access_token: str | None = field(repr=False)
    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)
    api_version: str = "59.0"
    custom_fields: tuple[str, ...] = ()
    score_field: str = "Lead_Score__c"
    band_field: str = "Lead_Band__c"
    timeout: float = 30
    verify: str | bool = True
    throttle_threshold: float = 0.8
    status_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_STATUS_MAP))
    fetch_opportunities: bool = True
    fetch_owners: bool = True
    push_batch_size: int = 200

    def __post_init__(self) -> None:
        # Field names are interpolated into SOQL and JSON keys: only API names get through.
        for name in (*self.custom_fields, self.score_field, self.band_field):
            if not _FIELD_NAME.match(name):
                raise ValueError(f"not a Salesforce field API name: {name!r}")
        if not 1 <= self.push_batch_size <= 200:
            raise ValueError("push_batch_size must be between 1 and 200 (sObject Collections)")
        if not self.instance_url.startswith("https://"):
            raise ValueError("instance_url must be an https:// URL")


@dataclass(frozen=True)
class _Cursor:
    """Where a Salesforce sync stands; serialised as compact JSON in ``Batch.cursor_after``."""

    modstamp: datetime | None = None
    last_id: str | None = None
    deleted_until: datetime | None = None
    opp_modstamp: datetime | None = None
    opp_last_id: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> _Cursor:
        if not text or not text.strip():
            return cls()
        text = text.strip()
        try:
            if not text.startswith("{"):
                return cls(modstamp=parse_datetime(text, "cursor"))
            data = json.loads(text)
            return cls(
                modstamp=parse_datetime(data.get("modstamp"), "cursor.modstamp"),
                last_id=_cursor_id(data.get("id")),
                deleted_until=parse_datetime(data.get("deleted_until"), "cursor.deleted_until"),
                opp_modstamp=parse_datetime(data.get("opp_modstamp"), "cursor.opp_modstamp"),
                opp_last_id=_cursor_id(data.get("opp_id")),
            )
        except (ValueError, AttributeError) as exc:
            raise PermanentError(
                f"unreadable Salesforce cursor ({exc}); run a full sync to reset it"
            ) from None

    def dump(self) -> str | None:
        if self.modstamp is None and self.deleted_until is None and self.opp_modstamp is None:
            return None
        data = {
            "modstamp": _soql_datetime(self.modstamp) if self.modstamp else None,
            "id": self.last_id,
            "deleted_until": _soql_datetime(self.deleted_until) if self.deleted_until else None,
        }
        if self.opp_modstamp is not None:
            data["opp_modstamp"] = _soql_datetime(self.opp_modstamp)
            data["opp_id"] = self.opp_last_id
        return json.dumps(data, separators=(",", ":"), sort_keys=True)


def _cursor_id(value: Any) -> str | None:
    # It is quoted into SOQL: anything but a Salesforce id is dropped.
    return value if isinstance(value, str) and _SALESFORCE_ID.match(value) else None


def _keyset_where(modstamp: datetime | None, last_id: str | None) -> str:
    """`` WHERE`` clause resuming after ``(modstamp, last_id)`` in (SystemModstamp, Id) order."""
    if modstamp is None:
        return ""
    stamp = _soql_datetime(modstamp)
    where = f" WHERE SystemModstamp > {stamp}"
    if last_id:
        # last_id was checked against the Salesforce id pattern: safe to quote.
        where += f" OR (SystemModstamp = {stamp} AND Id > '{last_id}')"
    return where


def _soql_datetime(value: datetime) -> str:
    # SOQL date-time literals take whole seconds. Salesforce stores date-times to the second,
    # and if it ever did not, truncating makes ">" re-read a record rather than skip one.
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _first_error(content: Any) -> tuple[str | None, str]:
    """``(errorCode, message)`` of a Salesforce error body (a JSON array of errors)."""
    if isinstance(content, list) and content and isinstance(content[0], dict):
        first = content[0]
        return clean_str(first.get("errorCode")), str(first.get("message") or "")[:300]
    if isinstance(content, dict):
        return clean_str(content.get("errorCode") or content.get("error")), str(
            content.get("message") or content.get("error_description") or ""
        )[:300]
    return None, str(content or "")[:300]


class SalesforceConnector(Connector):
    """Reads Leads from and writes scores to one Salesforce org.

    ``sleep`` and ``clock`` are injectable for tests; ``on_token_refresh`` is called with the
    new access token after a refresh so the caller can store it (encrypted) and skip the
    refresh next run. Call :meth:`close` (or use ``with``) to release the HTTP session.
    """

    source = SOURCE
    # Status is set by sales after contact ("Qualified", "Closed - Not Converted"); the
    # opportunity_* keys are what earlier versions copied from the converted opportunity.
    outcome_attribute_keys = (
        "status",
        "opportunity_stage",
        "opportunity_is_closed",
        "opportunity_is_won",
        "opportunity_close_date",
    )
    outcome_related_id_keys = (
        "owner_id",
        "converted_contact_id",
        "converted_account_id",
        "converted_opportunity_id",
    )

    def __init__(
        self,
        config: SalesforceConfig,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = utc_now,
        on_token_refresh: Callable[[str], None] | None = None,
        session: requests.Session | None = None,
    ):
        self._config = config
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._on_token_refresh = on_token_refresh
        self._http = session or requests.Session()
        self._token = config.access_token
        self._instance_url = config.instance_url.rstrip("/")
        self._sf: Salesforce | None = None
        self._requests = 0
        self._api_usage: tuple[int, int] | None = None
        # Per-request options: passing verify per call (not on the session) keeps it in force
        # even when REQUESTS_CA_BUNDLE is set, which requests would otherwise let win.
        self._http_options: dict[str, Any] = {"timeout": config.timeout, "verify": config.verify}

    # -- public API -------------------------------------------------------------------------

    def fetch(self, cursor: str | None, full: bool = False) -> Iterator[Batch]:
        """Yield one batch per page of Leads modified after ``cursor`` (all Leads if ``full``).

        The first batch also carries the deletions since the previous run. See the module
        docstring for the cursor, the lifecycle mapping and the errors raised.
        """
        state = _Cursor() if full else _Cursor.parse(cursor)
        self._requests = 0
        deleted, failed, deleted_until = self._fetch_deleted(state.deleted_until)
        state = replace(state, deleted_until=deleted_until or state.deleted_until)
        owners = self._fetch_owners()

        page = self._query_leads(state)
        pages = 0
        while True:
            records = page.get("records")
            if not isinstance(records, list):
                raise PermanentError("Salesforce query response has no records list")
            leads, page_failed, (modstamp, last_id) = _map_records(
                records, self._to_lead, (state.modstamp, state.last_id)
            )
            state = replace(state, modstamp=modstamp, last_id=last_id)
            failed.extend(page_failed)
            next_url = None if page.get("done", True) else clean_str(page.get("nextRecordsUrl"))
            pages += 1
            log_event(
                logger,
                logging.INFO,
                "connector.salesforce.page",
                page=pages,
                fetched=len(leads),
                failed=len(failed),
                deleted=len(deleted),
            )
            yield Batch(
                leads=leads,
                deleted=deleted,
                failed=failed,
                owners=owners,
                cursor_after=state.dump(),
                done=next_url is None and not self._config.fetch_opportunities,
                usage=self._usage(),
            )
            deleted, failed, owners = [], [], []
            self._requests = 0
            if next_url is None:
                break
            page = self._query_more(next_url, lambda at=state: self._query_leads(at))
        if self._config.fetch_opportunities:
            yield from self._fetch_opportunities(state)

    def push_scores(self, updates: Sequence[ScoreUpdate]) -> PushResult:
        """Write score and band to ``score_field``/``band_field`` of each Lead.

        Uses sObject Collections (PATCH ``/composite/sobjects``, up to 200 records a call,
        ``allOrNone`` false) so one bad record does not fail its neighbours; per-record errors
        come back in ``PushResult.failed``. A chunk Salesforce refuses as a whole (400) is
        reported record by record too; credential and rate-limit errors raise.
        """
        config = self._config
        pushed = 0
        failed: list[FailedRecord] = []
        for chunk in chunked(dedupe_updates(updates), config.push_batch_size):
            body = {
                "allOrNone": False,
                "records": [
                    {
                        "attributes": {"type": "Lead"},
                        "id": update.external_id,
                        config.score_field: int(update.score),
                        config.band_field: update.band,
                    }
                    for update in chunk
                ],
            }
            try:
                results = self._call(
                    lambda sf, body=body: sf.restful(
                        "composite/sobjects", method="PATCH", json=body, **self._http_options
                    ),
                    "push_scores",
                )
            except AuthFailed:
                raise
            except PermanentError as exc:
                failed.extend(FailedRecord(SOURCE, u.external_id, str(exc)) for u in chunk)
                continue
            if not isinstance(results, list) or len(results) != len(chunk):
                raise PermanentError("Salesforce composite response does not match the request")
            # Results come back in request order; a failed one may carry no id.
            for update, result in zip(chunk, results, strict=True):
                if isinstance(result, dict) and result.get("success") is True:
                    pushed += 1
                else:
                    failed.append(FailedRecord(SOURCE, update.external_id, _record_errors(result)))
            log_event(
                logger,
                logging.INFO,
                "connector.salesforce.push",
                records=len(chunk),
                pushed=pushed,
                failed=len(failed),
            )
        return PushResult(pushed=pushed, failed=failed)

    def campaign_member_add(self, campaign_id: str, lead_id: str) -> str | None:
        """Make a Lead a member of a Campaign (``POST /sobjects/CampaignMember``); returns the
        new member's id, or None when the lead already is one (``DUPLICATE_VALUE``)."""
        body = {"CampaignId": campaign_id, "LeadId": lead_id}
        try:
            result = self._call(
                lambda sf: sf.restful(
                    "sobjects/CampaignMember", method="POST", json=body, **self._http_options
                ),
                "campaign_member_add",
            )
        except PermanentError as exc:
            if exc.code == "DUPLICATE_VALUE":
                return None
            raise
        return result.get("id") if isinstance(result, dict) else None

    def owner_set(self, lead_id: str, owner_id: str) -> None:
        """Give a Lead to a Salesforce user (``PATCH /sobjects/Lead/{id}`` with ``OwnerId``)."""
        self._call(
            lambda sf: sf.restful(
                f"sobjects/Lead/{lead_id}",
                method="PATCH",
                json={"OwnerId": owner_id},
                **self._http_options,
            ),
            "owner_set",
        )

    def test_connection(self) -> dict[str, Any]:
        """Read the org's ``/limits/`` and return the daily API quota and our usage."""
        self._requests = 0
        limits = self._call(lambda sf: sf.limits(**self._http_options), "limits")
        daily = limits.get("DailyApiRequests", {}) if isinstance(limits, dict) else {}
        result: dict[str, Any] = {
            "ok": True,
            "api_version": self._config.api_version,
            "daily_api_requests": {"max": daily.get("Max"), "remaining": daily.get("Remaining")},
        }
        result.update(self._usage())
        return result

    def close(self) -> None:
        """Release the HTTP session's connections."""
        self._http.close()

    def __enter__(self) -> SalesforceConnector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------

    def _lead_soql(self, state: _Cursor) -> str:
        fields = ", ".join(dict.fromkeys((*LEAD_FIELDS, *self._config.custom_fields)))
        where = _keyset_where(state.modstamp, state.last_id)
        return f"SELECT {fields} FROM Lead{where} ORDER BY SystemModstamp, Id"

    def _query(self, soql: str) -> dict[str, Any]:
        return self._call(lambda sf: sf.query(soql, **self._http_options), "query")

    def _query_leads(self, state: _Cursor) -> dict[str, Any]:
        return self._query(self._lead_soql(state))

    def _query_opportunities(self, state: _Cursor) -> dict[str, Any]:
        where = _keyset_where(state.opp_modstamp, state.opp_last_id)
        fields = ", ".join(OPPORTUNITY_FIELDS)
        return self._query(f"SELECT {fields} FROM Opportunity{where} ORDER BY SystemModstamp, Id")

    def _query_more(
        self, next_url: str, requery: Callable[[], dict[str, Any]] | None
    ) -> dict[str, Any]:
        try:
            return self._call(
                lambda sf: sf.query_more(next_url, identifier_is_url=True, **self._http_options),
                "query_more",
            )
        except PermanentError as exc:
            if exc.code != "INVALID_QUERY_LOCATOR" or requery is None:
                raise
            # The server-side cursor expired (15 minutes idle, e.g. a slow commit upstream).
            # The keyset cursor says exactly where we are, so start a fresh query from it.
            log_event(logger, logging.WARNING, "connector.salesforce.requery", reason=exc.code)
            return requery()

    def _fetch_owners(self) -> list[OwnerRecord]:
        """Every user (active or not: an inactive user may still own leads) with its email."""
        if not self._config.fetch_owners:
            return []
        owners: list[OwnerRecord] = []
        page = self._query("SELECT Id, Email FROM User ORDER BY Id")
        while True:
            for user in page.get("records") or []:
                user_id = clean_str(user.get("Id")) if isinstance(user, dict) else None
                if user_id:
                    owners.append(OwnerRecord(SOURCE, user_id, normalise_email(user.get("Email"))))
            next_url = None if page.get("done", True) else clean_str(page.get("nextRecordsUrl"))
            if next_url is None:
                return owners
            page = self._query_more(next_url, None)

    def _fetch_opportunities(self, state: _Cursor) -> Iterator[Batch]:
        """One batch per page of Opportunities modified after the opportunity cursor."""
        page = self._query_opportunities(state)
        while True:
            records = page.get("records")
            if not isinstance(records, list):
                raise PermanentError("Salesforce query response has no records list")
            outcomes, failed, (modstamp, last_id) = _map_records(
                records, _to_outcome, (state.opp_modstamp, state.opp_last_id), "opportunity: "
            )
            state = replace(state, opp_modstamp=modstamp, opp_last_id=last_id)
            next_url = None if page.get("done", True) else clean_str(page.get("nextRecordsUrl"))
            log_event(
                logger,
                logging.INFO,
                "connector.salesforce.opportunities",
                fetched=len(outcomes),
                failed=len(failed),
            )
            yield Batch(
                outcomes=outcomes,
                failed=failed,
                cursor_after=state.dump(),
                done=next_url is None,
                usage=self._usage(),
            )
            if next_url is None:
                return
            self._requests = 0
            page = self._query_more(next_url, lambda at=state: self._query_opportunities(at))

    def _fetch_deleted(
        self, since: datetime | None
    ) -> tuple[list[DeletedRecord], list[FailedRecord], datetime | None]:
        now = self._clock()
        start = now - _DELETED_RETENTION
        if since is not None and since > start:
            start = since
        elif since is not None:
            # Deletions older than Salesforce keeps are gone; a full sync reconciles them.
            log_event(logger, logging.WARNING, "connector.salesforce.deleted_window_clamped")
        if now - start < _MIN_DELETED_WINDOW:
            return [], [], since
        params = {
            "start": start.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
            "end": now.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        }
        body = self._call(
            lambda sf: sf.restful("sobjects/Lead/deleted/", params=params, **self._http_options),
            "deleted",
        )
        body = body if isinstance(body, dict) else {}
        deleted: list[DeletedRecord] = []
        failed: list[FailedRecord] = []
        for item in body.get("deletedRecords") or []:
            record_id = clean_str(item.get("id")) if isinstance(item, dict) else None
            try:
                if not record_id:
                    raise ValueError("id: missing")
                deleted_at = parse_datetime(item.get("deletedDate"), "deletedDate")
            except ValueError as exc:
                failed.append(FailedRecord(SOURCE, record_id, f"deleted record: {exc}"))
                continue
            deleted.append(DeletedRecord(SOURCE, record_id, deleted_at))
        try:
            covered = parse_datetime(body.get("latestDateCovered"), "latestDateCovered")
        except ValueError:
            covered = None
        # latestDateCovered is Salesforce's own watermark; fall back to our clock.
        return deleted, failed, covered or now

    def _to_lead(self, record: dict[str, Any]) -> LeadRecord:
        record_id, modified_at = _record_key(record)
        created_at = parse_datetime(record.get("CreatedDate"), "CreatedDate")
        converted_at = parse_datetime(record.get("ConvertedDate"), "ConvertedDate")

        employees_raw = record.get("NumberOfEmployees")
        if employees_raw is None or (
            isinstance(employees_raw, int) and not isinstance(employees_raw, bool)
        ):
            employees = employees_raw
        elif isinstance(employees_raw, float) and employees_raw.is_integer():
            employees = int(employees_raw)
        else:
            raise ValueError("NumberOfEmployees: not an integer")

        status = clean_str(record.get("Status"))
        attributes: dict[str, Any] = {"status": status}
        for name in self._config.custom_fields:
            attributes[name] = record.get(name)

        stage_times: dict[str, datetime] = {}
        opportunity_id = clean_str(record.get("ConvertedOpportunityId"))
        stage: str | None
        if record.get("IsConverted") is True:
            if opportunity_id:
                # Conversion creates the opportunity: that is when the lead became one. What
                # came of it (won, lost, open) is the opportunity's to say, not the lead's.
                if converted_at is not None:
                    stage_times["opportunity_at"] = converted_at
                stage = None if self._config.fetch_opportunities else "opportunity"
            else:
                stage = "sql"
        else:
            stage = self._status_stage(status)

        related_ids = {
            key: value
            for key, value in (
                ("owner_id", clean_str(record.get("OwnerId"))),
                ("converted_contact_id", clean_str(record.get("ConvertedContactId"))),
                ("converted_account_id", clean_str(record.get("ConvertedAccountId"))),
                ("converted_opportunity_id", opportunity_id),
            )
            if value
        }
        return LeadRecord(
            source=SOURCE,
            external_id=record_id,
            email=normalise_email(record.get("Email")),
            first_name=clean_str(record.get("FirstName")),
            last_name=clean_str(record.get("LastName")),
            title=clean_str(record.get("Title")),
            company=clean_str(record.get("Company")),
            employees=employees,
            industry=clean_str(record.get("Industry")),
            country=clean_str(record.get("Country")),
            lead_source=clean_str(record.get("LeadSource")),
            lifecycle_stage=stage,
            stage_times=stage_times,
            attributes=attributes,
            modified_at=modified_at,
            created_at=created_at,
            related_ids=related_ids,
        )

    def _status_stage(self, status: str | None) -> str:
        if status is None:
            return "lead"
        mapping = {key.lower(): value for key, value in self._config.status_map.items()}
        return mapping.get(status.lower(), "lead")

    def _usage(self) -> dict[str, Any]:
        usage: dict[str, Any] = {"requests": self._requests}
        if self._api_usage is not None:
            used, limit = self._api_usage
            usage["api_used"] = used
            usage["api_limit"] = limit
            usage["throttle"] = limit > 0 and used / limit >= self._config.throttle_threshold
        else:
            usage["throttle"] = False
        return usage

    # -- the I/O edge -----------------------------------------------------------------------

    def _call(self, operation: Callable[[Salesforce], T], name: str) -> T:
        """Run one Salesforce call with one token refresh on 401 and retries on transients."""
        policy = self._retry
        return call_with_retry(
            lambda: self._with_auth(operation),
            attempts=policy.attempts,
            base_delay=policy.base_delay,
            max_delay=policy.max_delay,
            sleep=self._sleep,
            operation=f"salesforce.{name}",
        )

    def _with_auth(self, operation: Callable[[Salesforce], T]) -> T:
        if self._token is None:
            self._refresh_token()
        try:
            return self._invoke(operation)
        except AuthExpired:
            log_event(logger, logging.INFO, "connector.salesforce.token_expired")
        self._refresh_token()
        try:
            return self._invoke(operation)
        except AuthExpired as exc:
            raise AuthFailed(
                "Salesforce rejected the access token again right after refreshing it "
                f"(401 {exc.code or 'INVALID_SESSION_ID'}): the connected app or user has lost "
                "API access; reconnect the Salesforce integration",
                status=401,
                code=exc.code,
            ) from None

    def _client(self) -> Salesforce:
        if self._sf is None:
            self._sf = Salesforce(
                instance_url=self._instance_url,
                session_id=self._token,
                version=self._config.api_version,
                session=self._http,
            )
        return self._sf

    def _invoke(self, operation: Callable[[Salesforce], T]) -> T:
        client = self._client()
        self._requests += 1
        try:
            result = operation(client)
        except SalesforceError as exc:
            raise self._translate(exc) from None
        except (requests.exceptions.JSONDecodeError, ValueError):
            # A 2xx whose body is not JSON: a proxy or maintenance page, usually short-lived.
            raise TransientError("Salesforce returned an unreadable response") from None
        except requests.RequestException as exc:
            raise translate_requests_error(exc, "Salesforce") from None
        usage = client.api_usage.get("api-usage")
        if usage is not None:
            self._api_usage = (usage.used, usage.total)
        return result

    def _translate(self, exc: SalesforceError) -> ConnectorError:
        status = exc.status
        code, message = _first_error(exc.content)
        if status == 401:
            return AuthExpired("Salesforce session expired", status=401, code=code)
        if status == 403 and code == "REQUEST_LIMIT_EXCEEDED":
            if "concurrent" in message.lower():
                return RateLimited(
                    "Salesforce concurrent request limit reached",
                    retry_after=_CONCURRENT_LIMIT_RETRY_AFTER,
                    scope="burst",
                    status=403,
                    code=code,
                )
            log_event(logger, logging.WARNING, "connector.salesforce.daily_limit", code=code)
            return RateLimited(
                f"Salesforce API request limit exceeded: {message}",
                retry_after=_DAILY_LIMIT_RETRY_AFTER,
                scope="daily",
                status=403,
                code=code,
            )
        if status >= 500:
            return TransientError(
                f"Salesforce {status} {code or ''}".strip(), status=status, code=code
            )
        return PermanentError(
            f"Salesforce {status} {code or 'error'}: {message}".strip(), status=status, code=code
        )

    def _refresh_token(self) -> None:
        """Exchange the refresh token for a new access token (OAuth refresh_token grant)."""
        config = self._config
        url = f"{self._instance_url}/services/oauth2/token"
        self._requests += 1
        try:
            response = self._http.post(
                url,
                data={
                    "grant_type": "refresh_token",
                    "client_id": config.client_id,
                    "client_secret": config.client_secret,
                    "refresh_token": config.refresh_token,
                },
                headers={"Accept": "application/json"},
                **self._http_options,
            )
        except requests.RequestException as exc:
            raise translate_requests_error(exc, "Salesforce") from None
        if response.status_code >= 500:
            raise TransientError(
                f"Salesforce token endpoint returned {response.status_code}",
                status=response.status_code,
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if (
            response.status_code != 200
            or not isinstance(body, dict)
            or not body.get("access_token")
        ):
            code, description = _first_error(body)
            raise AuthFailed(
                f"Salesforce refused the refresh token ({response.status_code} "
                f"{code or 'no access_token'}: {description}); reconnect the Salesforce "
                "integration",
                status=response.status_code,
                code=code,
            )
        self._token = str(body["access_token"])
        instance_url = clean_str(body.get("instance_url"))
        if instance_url and instance_url.startswith("https://"):
            # The token response names the org's current instance (after a My Domain change).
            self._instance_url = instance_url.rstrip("/")
        self._sf = None
        log_event(logger, logging.INFO, "connector.salesforce.token_refreshed")
        if self._on_token_refresh is not None:
            self._on_token_refresh(self._token)


def _map_records(
    records: list[Any],
    to_record: Callable[[dict[str, Any]], Any],
    last: tuple[datetime | None, str | None],
    what: str = "",
) -> tuple[list[Any], list[FailedRecord], tuple[datetime | None, str | None]]:
    """Map one query page's records (leads or opportunities) and move the keyset position
    ``last`` (SystemModstamp, Id) past them. A record that does not map is failed alone."""
    mapped: list[Any] = []
    failed: list[FailedRecord] = []
    for record in records:
        record_id = clean_str(record.get("Id")) if isinstance(record, dict) else None
        try:
            if not isinstance(record, dict):
                raise ValueError("record is not an object")
            item = to_record(record)
        except (ValueError, TypeError) as exc:
            failed.append(FailedRecord(SOURCE, record_id, f"{what}{exc}"))
            continue
        mapped.append(item)
        # Records arrive ordered by (SystemModstamp, Id), so this is the last good one; the
        # comparison only guards the cursor against ever moving backwards.
        assert item.modified_at is not None  # the mappers guarantee it
        if last[0] is None or (item.modified_at, item.external_id) > (last[0], last[1] or ""):
            last = (item.modified_at, item.external_id)
    return mapped, failed, last


def _record_key(record: dict[str, Any]) -> tuple[str, datetime]:
    """A record's Id and SystemModstamp, both required (what the cursors key on)."""
    record_id = clean_str(record.get("Id"))
    if not record_id:
        raise ValueError("Id: missing")
    modified_at = parse_datetime(record.get("SystemModstamp"), "SystemModstamp")
    if modified_at is None:
        raise ValueError("SystemModstamp: missing")
    return record_id, modified_at


def _to_outcome(record: dict[str, Any]) -> OutcomeRecord:
    """An Opportunity as an :class:`OutcomeRecord` (see the module docstring)."""
    record_id, modified_at = _record_key(record)
    if record.get("IsWon") is True:
        status = "won"
    elif record.get("IsClosed") is True:
        status = "lost"
    else:
        status = "open"
    amount = record.get("Amount")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int | float)):
        raise ValueError("Amount: not a number")
    links = tuple(
        (key, value)
        for key, value in (
            ("converted_opportunity_id", record_id),
            ("converted_contact_id", clean_str(record.get("ContactId"))),
            ("converted_account_id", clean_str(record.get("AccountId"))),
        )
        if value
    )
    return OutcomeRecord(
        source=SOURCE,
        external_id=record_id,
        status=status,
        amount=None if amount is None else float(amount),
        opened_at=parse_datetime(record.get("CreatedDate"), "CreatedDate"),
        closed_at=(
            parse_datetime(record.get("CloseDate"), "CloseDate") if status != "open" else None
        ),
        modified_at=modified_at,
        stage=clean_str(record.get("StageName")),
        links=links,
    )


def _record_errors(result: Any) -> str:
    errors = result.get("errors") if isinstance(result, dict) else None
    if not errors:
        return "rejected without an error message"
    return "; ".join(
        f"{error.get('statusCode', 'ERROR')}: {error.get('message', '')}".strip()
        for error in errors
        if isinstance(error, dict)
    )[:500]
