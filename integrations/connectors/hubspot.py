"""HubSpot contacts connector, through hubspot-api-client (CRM v3), and the webhook verifier.

What it reads (``fetch``): contacts from the CRM search API, filtered by
``lastmodifieddate >= cursor`` and sorted ascending, paged with ``after``; one
:class:`~.base.Batch` per page. The search API stops at 10,000 results per query
(``HubSpotConfig.search_result_limit``), so before paging past it the connector starts a new
query from the last ``lastmodifieddate`` it has seen. The cursor records that timestamp and the
ids already delivered at exactly that timestamp, so neither a new query nor the next run hands
the same version of a contact over twice, and none is skipped.

After the contacts, deals the same way (search on ``hs_lastmodifieddate``, on their own
cursor), as :class:`~.base.OutcomeRecord` s: won and lost come from the deal pipelines' stage
metadata (``/crm/v3/pipelines/deals``: ``isClosed`` and ``probability``, "1.0" won, "0.0"
lost), never from stage names; a deal in a stage no pipeline lists fails alone. Each page of
deals brings its associated contacts (``/crm/v4/associations/deals/contacts/batch/read``),
which name the deal's leads. The first batch carries the portal's owners
(``/crm/v3/owners/``, paged) as :class:`~.base.OwnerRecord` s, so ``hubspot_owner_id`` can be
matched to a user by email.

Each page of contacts brings its company associations
(``/crm/v4/associations/contacts/companies/batch/read``; the search API cannot return
associations). The contact's primary company (HubSpot-defined association type 1, "Contact with
Primary Company") is its ``related_ids["company_id"]``, kept on the lead as the attribute
``hubspot_company_id``, which makes the account ``hubspot:<id>`` at the next rescore; a contact
with companies but no primary one takes the lowest company id, so the choice is stable from run
to run. ``HubSpotConfig.fetch_companies`` turns the read off.

Mapping: all HubSpot property values are strings or null. ``lifecyclestage`` maps to our
stages (subscriber/lead -> lead, marketingqualifiedlead -> mql, salesqualifiedlead -> sql,
opportunity, customer/evangelist -> customer; ``hs_lead_status = UNQUALIFIED`` on a contact
not yet an opportunity -> disqualified; anything else -> ``None`` with the raw value in
attributes). ``hs_lifecyclestage_{mql,sql,opportunity,customer}_date`` fill ``stage_times``.
A non-numeric ``numberofemployees`` or ``total_revenue`` is kept as ``None`` with the raw value
in ``attributes``; it does not fail the record.

Errors: 429 honours ``Retry-After`` (or the policy's window) for the SECONDLY and
TEN_SECONDLY_ROLLING policies and is a daily :class:`~.base.RateLimited` for the DAILY policy
(or ``X-HubSpot-RateLimit-Daily-Remaining: 0``). 401 refreshes the token once when OAuth
refresh credentials are configured; otherwise, or on a second 401, it is
:class:`~.base.AuthFailed`. 5xx and network errors are retried here with backoff.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

import urllib3
from hubspot import HubSpot
from hubspot.crm.associations.v4.exceptions import ApiException as AssociationsApiException
from hubspot.crm.contacts.exceptions import ApiException
from hubspot.crm.deals.exceptions import ApiException as DealsApiException
from hubspot.crm.lists.exceptions import ApiException as ListsApiException
from hubspot.crm.owners.exceptions import ApiException as OwnersApiException
from hubspot.crm.pipelines.exceptions import ApiException as PipelinesApiException
from hubspot.oauth.exceptions import ApiException as OAuthApiException
from urllib3.util.retry import Retry

from ._common import (
    chunked,
    clean_str,
    dedupe_updates,
    format_iso_ms,
    log_event,
    normalise_email,
    parse_datetime,
    parse_epoch_ms,
    parse_retry_after,
    utc_now,
)
from .base import (
    AuthExpired,
    AuthFailed,
    Batch,
    Connector,
    ConnectorError,
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
    "CONTACT_PROPERTIES",
    "HubSpotConfig",
    "HubSpotConnector",
    "verify_signature_v3",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

SOURCE = "hubspot"

#: Contact properties always requested; ``HubSpotConfig.properties`` are added after them.
CONTACT_PROPERTIES: tuple[str, ...] = (
    "email",
    "firstname",
    "lastname",
    "jobtitle",
    "company",
    "numberofemployees",
    "numemployees",
    "industry",
    "country",
    "hs_analytics_source",
    "lifecyclestage",
    "hs_lead_status",
    "total_revenue",
    "hubspot_owner_id",
    "createdate",
    "lastmodifieddate",
    "hs_lifecyclestage_marketingqualifiedlead_date",
    "hs_lifecyclestage_salesqualifiedlead_date",
    "hs_lifecyclestage_opportunity_date",
    "hs_lifecyclestage_customer_date",
)

#: Deal properties requested for outcomes.
DEAL_PROPERTIES: tuple[str, ...] = (
    "dealname",
    "amount",
    "dealstage",
    "pipeline",
    "closedate",
    "createdate",
    "hs_lastmodifieddate",
)
# Each generated API package raises its own ApiException class (same attributes).
_API_EXCEPTIONS = (
    ApiException,
    DealsApiException,
    OwnersApiException,
    PipelinesApiException,
    AssociationsApiException,
    ListsApiException,
)
# The v4 batch association read takes at most 1,000 ids per call.
_ASSOCIATION_BATCH = 1000
# HubSpot-defined association type of a contact's primary company (labels change; ids do not).
_PRIMARY_COMPANY_TYPE_ID = 1
_OWNERS_PAGE_SIZE = 100

_LIFECYCLE_STAGES: Mapping[str, str] = {
    "subscriber": "lead",
    "lead": "lead",
    "marketingqualifiedlead": "mql",
    "salesqualifiedlead": "sql",
    "opportunity": "opportunity",
    "customer": "customer",
    "evangelist": "customer",
}

_STAGE_DATE_PROPERTIES: Mapping[str, str] = {
    "hs_lifecyclestage_marketingqualifiedlead_date": "mql_at",
    "hs_lifecyclestage_salesqualifiedlead_date": "sql_at",
    "hs_lifecyclestage_opportunity_date": "opportunity_at",
    "hs_lifecyclestage_customer_date": "converted_at",
}

# Default waits when a 429 carries no Retry-After header, by HubSpot policy name.
_BURST_WINDOWS: Mapping[str, float] = {"SECONDLY": 1.0, "TEN_SECONDLY_ROLLING": 10.0}
# HubSpot resets the daily quota at midnight in the portal's time zone, which we do not know:
# check back hourly rather than guess a reset time.
_DAILY_LIMIT_RETRY_AFTER = 3600.0
_SEARCH_MAX_PAGE_SIZE = 200
_PROPERTY_NAME = re.compile(r"^[a-z0-9_]+$")


@dataclass(frozen=True)
class HubSpotConfig:
    """How to reach one HubSpot portal. Secrets are excluded from ``repr``.

    ``access_token`` is a private-app token or an OAuth access token. With ``client_id``,
    ``client_secret`` and ``refresh_token`` set, a 401 triggers one OAuth token refresh.
    ``properties`` are extra contact properties copied into ``LeadRecord.attributes``.
    ``search_result_limit`` is HubSpot's per-query search cap (tests lower it).
    ``ssl_ca_cert`` is a CA bundle path for a TLS-intercepting proxy or a test server.
    """

    access_token: str = field(repr=False)
    base_url: str = "https://api.hubapi.com"
    properties: tuple[str, ...] = ()
    score_property: str = "lead_score"
    band_property: str = "lead_band"
    page_size: int = 100
    timeout: float = 30
    search_result_limit: int = 10_000
    push_batch_size: int = 100
    throttle_threshold: float = 0.8
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    ssl_ca_cert: str | None = None
    fetch_deals: bool = True
    fetch_owners: bool = True
    fetch_companies: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= _SEARCH_MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {_SEARCH_MAX_PAGE_SIZE}")
        if not 1 <= self.push_batch_size <= 100:
            raise ValueError("push_batch_size must be between 1 and 100 (batch update limit)")
        if self.search_result_limit < self.page_size:
            raise ValueError("search_result_limit must be at least page_size")
        for name in (*self.properties, self.score_property, self.band_property):
            if not _PROPERTY_NAME.match(name):
                raise ValueError(f"not a HubSpot property internal name: {name!r}")

    @property
    def can_refresh(self) -> bool:
        return bool(self.client_id and self.client_secret and self.refresh_token)


@dataclass(frozen=True)
class _Cursor:
    """The last ``lastmodifieddate`` delivered and the contact ids delivered at exactly it."""

    since: datetime | None = None
    ids: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str | None) -> tuple[_Cursor, _Cursor]:
        """The contacts' and the deals' cursors stored in one string."""
        if not text or not text.strip():
            return cls(), cls()
        text = text.strip()
        try:
            if not text.startswith("{"):
                return cls(since=parse_datetime(text, "cursor")), cls()
            data = json.loads(text)
            deals = data.get("deals") or {}
            return cls._from(data, "cursor"), cls._from(deals, "cursor.deals")
        except (ValueError, AttributeError) as exc:
            raise PermanentError(
                f"unreadable HubSpot cursor ({exc}); run a full sync to reset it"
            ) from None

    @classmethod
    def _from(cls, data: dict[str, Any], name: str) -> _Cursor:
        ids = data.get("ids") or []
        if not isinstance(ids, list):
            raise ValueError(f"{name}.ids: not a list")
        return cls(
            since=parse_datetime(data.get("since"), f"{name}.since"),
            ids=frozenset(str(item) for item in ids),
        )

    def _data(self) -> dict[str, Any]:
        assert self.since is not None
        return {"since": format_iso_ms(self.since), "ids": sorted(self.ids)}

    def dump(self, deals: _Cursor | None = None) -> str | None:
        """The cursor string; the deals' cursor rides along under ``"deals"``."""
        if self.since is None and (deals is None or deals.since is None):
            return None
        data = self._data() if self.since is not None else {"since": None, "ids": []}
        if deals is not None and deals.since is not None:
            data["deals"] = deals._data()
        return json.dumps(data, separators=(",", ":"))

    def advanced(self, modified_at: datetime, contact_id: str) -> _Cursor:
        if self.since is None or modified_at > self.since:
            return _Cursor(modified_at, frozenset({contact_id}))
        if modified_at == self.since:
            return _Cursor(self.since, self.ids | {contact_id})
        return self

    def delivered(self, modified_at: datetime, contact_id: str) -> bool:
        return modified_at == self.since and contact_id in self.ids


class HubSpotConnector(Connector):
    """Reads contacts from and writes scores to one HubSpot portal.

    ``sleep`` and ``clock`` are injectable for tests; ``on_token_refresh`` receives the new
    access token after an OAuth refresh so the caller can store it.
    """

    source = SOURCE
    # Set by sales or by HubSpot from the contact's deals, i.e. after the outcome is known.
    outcome_attribute_keys = (
        "lifecyclestage",
        "hs_lead_status",
        "total_revenue",
        "num_associated_deals",
        "recent_deal_amount",
        "recent_deal_close_date",
        "first_deal_created_date",
        "hs_lifecyclestage_customer_date",
        "hs_lifecyclestage_opportunity_date",
        "hs_lifecyclestage_salesqualifiedlead_date",
    )
    outcome_related_id_keys = ("owner_id",)

    def __init__(
        self,
        config: HubSpotConfig,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = utc_now,
        on_token_refresh: Callable[[str], None] | None = None,
    ):
        self._config = config
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._on_token_refresh = on_token_refresh
        self._token = config.access_token
        self._client: HubSpot | None = None
        self._apis: dict[str, Any] = {}
        self._requests = 0
        self._daily: tuple[int, int] | None = None

    # -- public API -------------------------------------------------------------------------

    def fetch(self, cursor: str | None, full: bool = False) -> Iterator[Batch]:
        """Yield one batch per search page of contacts modified at or after ``cursor``, then
        one per page of deals modified at or after theirs.

        ``full`` ignores the cursor and reads every contact and deal. The first batch carries
        the owners. See the module docstring for the 10,000-result continuation, the mapping
        and the errors raised.
        """
        contacts, deals = (_Cursor(), _Cursor()) if full else _Cursor.parse(cursor)
        self._requests = 0
        owners = self._fetch_owners()
        fetch_deals = self._config.fetch_deals
        pages = self._search_stream(
            "contacts", "lastmodifieddate", self._contact_properties(), contacts, self._to_lead
        )
        for leads, failed, contacts, done in pages:
            yield Batch(
                leads=self._with_companies(leads),
                failed=failed,
                owners=owners,
                cursor_after=contacts.dump(deals),
                done=done and not fetch_deals,
                usage=self._usage(),
            )
            owners = []
            self._requests = 0
        if not fetch_deals:
            return
        stages = self._deal_stages()
        pages = self._search_stream(
            "deals",
            "hs_lastmodifieddate",
            list(DEAL_PROPERTIES),
            deals,
            lambda item: _to_outcome(item, stages),
        )
        for outcomes, failed, deals, done in pages:
            yield Batch(
                outcomes=self._with_contacts(outcomes),
                failed=failed,
                cursor_after=contacts.dump(deals),
                done=done,
                usage=self._usage(),
            )
            self._requests = 0

    def _search_stream(
        self,
        object_type: str,
        modified_property: str,
        properties: list[str],
        state: _Cursor,
        to_record: Callable[[Any], Any],
    ) -> Iterator[tuple[list[Any], list[FailedRecord], _Cursor, bool]]:
        """Page through the CRM search of ``object_type`` from ``state``: yields (records,
        failed, the cursor after them, whether this was the last page). Records are what
        ``to_record`` makes of each result (it has ``external_id`` and ``modified_at``)."""
        config = self._config
        query_since = state.since
        after = 0
        pages = 0
        while True:
            body = self._search_body(modified_property, properties, query_since, after)
            data = self._call(
                lambda api, body=body: api.do_search(
                    public_object_search_request=body,
                    _preload_content=False,
                    _request_timeout=config.timeout,
                ),
                f"{object_type}.search_api",
                f"{object_type}.search",
            )
            results = data.get("results")
            if not isinstance(results, list):
                raise PermanentError("HubSpot search response has no results list")
            records: list[Any] = []
            failed: list[FailedRecord] = []
            skipped = 0
            for item in results:
                object_id = clean_str(item.get("id")) if isinstance(item, dict) else None
                try:
                    record = to_record(item)
                except (ValueError, TypeError, AttributeError) as exc:
                    failed.append(FailedRecord(SOURCE, object_id, str(exc)))
                    continue
                assert record.modified_at is not None  # to_record guarantees it
                if state.delivered(record.modified_at, record.external_id):
                    skipped += 1
                    continue
                records.append(record)
                state = state.advanced(record.modified_at, record.external_id)

            next_after = _next_after(data)
            restart = next_after is not None and next_after + config.page_size > (
                config.search_result_limit
            )
            done = next_after is None
            pages += 1
            log_event(
                logger,
                logging.INFO,
                "connector.hubspot.page",
                objects=object_type,
                page=pages,
                fetched=len(records),
                failed=len(failed),
                skipped=skipped,
            )
            yield records, failed, state, done
            if done:
                return
            if restart:
                if state.since is None or state.since == query_since:
                    # A whole query's worth of records share one timestamp: a new query from
                    # it would return the same records forever.
                    raise PermanentError(
                        f"more than {config.search_result_limit} HubSpot {object_type} share "
                        f"{modified_property} "
                        f"{format_iso_ms(state.since) if state.since else '(unset)'}; the "
                        "search API cannot page past them"
                    )
                log_event(logger, logging.INFO, "connector.hubspot.search_restart", page=pages)
                query_since, after = state.since, 0
            else:
                assert next_after is not None
                after = next_after

    def _fetch_owners(self) -> list[OwnerRecord]:
        """Every owner of the portal (``/crm/v3/owners/``, paged with ``after``)."""
        if not self._config.fetch_owners:
            return []
        owners: list[OwnerRecord] = []
        after: str | None = None
        while True:
            data = self._call(
                lambda api, after=after: api.get_page(
                    limit=_OWNERS_PAGE_SIZE,
                    after=after,
                    _preload_content=False,
                    _request_timeout=self._config.timeout,
                ),
                "owners.owners_api",
                "owners",
            )
            for item in data.get("results") or []:
                owner_id = clean_str(item.get("id")) if isinstance(item, dict) else None
                if owner_id:
                    owners.append(OwnerRecord(SOURCE, owner_id, normalise_email(item.get("email"))))
            paging = data.get("paging")
            next_page = paging.get("next") if isinstance(paging, dict) else None
            after = clean_str(next_page.get("after")) if isinstance(next_page, dict) else None
            if after is None:
                return owners

    def _deal_stages(self) -> dict[str, str]:
        """Deal stage id -> ``won``, ``lost`` or ``open``, from every deal pipeline's stage
        metadata (closed with probability 1 is won; any other closed stage is lost)."""
        data = self._call(
            lambda api: api.get_all(
                object_type="deals",
                _preload_content=False,
                _request_timeout=self._config.timeout,
            ),
            "pipelines.pipelines_api",
            "pipelines",
        )
        stages: dict[str, str] = {}
        for pipeline in data.get("results") or []:
            for stage in (pipeline.get("stages") or []) if isinstance(pipeline, dict) else []:
                stage_id = clean_str(stage.get("id")) if isinstance(stage, dict) else None
                if not stage_id:
                    continue
                metadata = stage.get("metadata") or {}
                closed = str(metadata.get("isClosed", "")).strip().lower() == "true"
                probability = _parse_float(metadata.get("probability"))
                if not closed:
                    stages[stage_id] = "open"
                else:
                    stages[stage_id] = "won" if probability == 1.0 else "lost"
        return stages

    def _with_contacts(self, outcomes: list[OutcomeRecord]) -> list[OutcomeRecord]:
        """The deals with the ids of their associated contacts (v4 batch association read)."""
        contacts = {
            deal_id: [contact_id for contact_id, _ in targets]
            for deal_id, targets in self._associations(
                "deals", "contacts", [outcome.external_id for outcome in outcomes]
            ).items()
        }
        return [
            replace(outcome, lead_external_ids=tuple(contacts.get(outcome.external_id, ())))
            for outcome in outcomes
        ]

    def _with_companies(self, leads: list[LeadRecord]) -> list[LeadRecord]:
        """The contacts with their primary company's id as ``related_ids["company_id"]``
        (v4 batch association read); a contact without a company is returned as it is."""
        if not leads or not self._config.fetch_companies:
            return leads
        companies = self._associations("contacts", "companies", [r.external_id for r in leads])
        result = []
        for record in leads:
            company_id = _primary_company(companies.get(record.external_id, []))
            if company_id is not None:
                record = replace(
                    record, related_ids={**record.related_ids, "company_id": company_id}
                )
            result.append(record)
        return result

    def _associations(
        self, from_type: str, to_type: str, ids: Sequence[str]
    ) -> dict[str, list[tuple[str, frozenset[int]]]]:
        """``from id -> [(to id, its HubSpot-defined association type ids)]`` from the v4 batch
        association read, in 1,000-id calls; ids without associations are absent."""
        found: dict[str, list[tuple[str, frozenset[int]]]] = {}
        for chunk in chunked(list(ids), _ASSOCIATION_BATCH):
            body = {"inputs": [{"id": object_id} for object_id in chunk]}
            data = self._call(
                lambda api, body=body: api.get_page(
                    from_object_type=from_type,
                    to_object_type=to_type,
                    batch_input_public_fetch_associations_batch_request=body,
                    _preload_content=False,
                    _request_timeout=self._config.timeout,
                ),
                "associations.v4.batch_api",
                f"associations.{from_type}.{to_type}",
            )
            for result in data.get("results") or []:
                source = result.get("from") if isinstance(result, dict) else None
                from_id = clean_str(source.get("id")) if isinstance(source, dict) else None
                if from_id is None:
                    continue
                for target in result.get("to") or []:
                    if not isinstance(target, dict):
                        continue
                    to_id = clean_str(target.get("toObjectId"))
                    if to_id:
                        found.setdefault(from_id, []).append((to_id, _defined_types(target)))
        return found

    def push_scores(self, updates: Sequence[ScoreUpdate]) -> PushResult:
        """Write ``score_property``/``band_property`` through the batch update endpoint.

        Up to 100 contacts a call. Per-contact errors of a 207 response come back in
        ``PushResult.failed``; a batch HubSpot refuses as a whole (400) is reported record by
        record too. Credential and rate-limit errors raise.
        """
        config = self._config
        pushed = 0
        failed: list[FailedRecord] = []
        for chunk in chunked(dedupe_updates(updates), config.push_batch_size):
            body = {
                "inputs": [
                    {
                        "id": update.external_id,
                        # HubSpot property values travel as strings.
                        "properties": {
                            config.score_property: str(int(update.score)),
                            config.band_property: update.band,
                        },
                    }
                    for update in chunk
                ]
            }
            try:
                data = self._call(
                    lambda api, body=body: api.update(
                        batch_input_simple_public_object_batch_input=body,
                        _preload_content=False,
                        _request_timeout=config.timeout,
                    ),
                    "batch_api",
                    "batch_update",
                )
            except AuthFailed:
                raise
            except PermanentError as exc:
                failed.extend(FailedRecord(SOURCE, u.external_id, str(exc)) for u in chunk)
                continue
            chunk_pushed, chunk_failed = _batch_outcome(chunk, data)
            pushed += chunk_pushed
            failed.extend(chunk_failed)
            log_event(
                logger,
                logging.INFO,
                "connector.hubspot.push",
                records=len(chunk),
                pushed=chunk_pushed,
                failed=len(chunk_failed),
            )
        return PushResult(pushed=pushed, failed=failed)

    def list_membership(self, list_id: str, contact_ids: Sequence[str], *, add: bool) -> int:
        """Add contacts to (or remove them from) a static list: ``PUT
        /crm/v3/lists/{listId}/memberships/add|remove``. Adding a member twice or removing a
        non-member is not an error. Returns how many ids HubSpot reported as changed."""
        operation = "add" if add else "remove"
        data = self._call(
            lambda api: getattr(api, operation)(
                list_id=list_id,
                request_body=list(contact_ids),
                _preload_content=False,
                _request_timeout=self._config.timeout,
            ),
            "lists.memberships_api",
            f"list_{operation}",
        )
        changed = data.get("recordIdsAdded" if add else "recordIdsRemoved") or []
        return len(changed)

    def owner_set(self, contact_id: str, owner_id: str) -> None:
        """Give a contact to a HubSpot owner (``PATCH /crm/v3/objects/contacts/{id}`` with
        ``hubspot_owner_id``)."""
        body = {"properties": {"hubspot_owner_id": owner_id}}
        self._call(
            lambda api: api.update(
                contact_id=contact_id,
                simple_public_object_input=body,
                _preload_content=False,
                _request_timeout=self._config.timeout,
            ),
            "basic_api",
            "owner_set",
        )

    def test_connection(self) -> dict[str, Any]:
        """Read one contact and return the daily API quota the response headers report."""
        self._requests = 0
        self._call(
            lambda api: api.get_page(
                limit=1, _preload_content=False, _request_timeout=self._config.timeout
            ),
            "basic_api",
            "get_page",
        )
        return {"ok": True, **self._usage()}

    # -- mapping ----------------------------------------------------------------------------

    def _contact_properties(self) -> list[str]:
        return list(dict.fromkeys((*CONTACT_PROPERTIES, *self._config.properties)))

    def _search_body(
        self, modified_property: str, properties: list[str], since: datetime | None, after: int
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "sorts": [{"propertyName": modified_property, "direction": "ASCENDING"}],
            "properties": properties,
            "limit": self._config.page_size,
            "after": str(after),
        }
        if since is not None:
            millis = int(since.timestamp() * 1000)
            body["filterGroups"] = [
                {
                    "filters": [
                        {
                            "propertyName": modified_property,
                            "operator": "GTE",
                            "value": str(millis),
                        }
                    ]
                }
            ]
        return body

    def _to_lead(self, item: Any) -> LeadRecord:
        contact_id, props, modified_at = _search_result(item, "lastmodifieddate")
        created_at = _hubspot_datetime(
            props.get("createdate") or item.get("createdAt"), "createdate"
        )

        attributes: dict[str, Any] = {}
        employees = _parse_int(props.get("numberofemployees"))
        if employees is None and clean_str(props.get("numberofemployees")):
            attributes["numberofemployees"] = props.get("numberofemployees")
        if clean_str(props.get("numemployees")):
            # A range such as "100-500": not a number, but worth keeping for rules.
            attributes["numemployees"] = props.get("numemployees")
        revenue = _parse_float(props.get("total_revenue"))
        if revenue is None and clean_str(props.get("total_revenue")):
            attributes["total_revenue"] = props.get("total_revenue")
        lead_status = clean_str(props.get("hs_lead_status"))
        if lead_status:
            attributes["hs_lead_status"] = lead_status
        for name in self._config.properties:
            attributes[name] = props.get(name)

        raw_stage = clean_str(props.get("lifecyclestage"))
        stage = _LIFECYCLE_STAGES.get(raw_stage.lower()) if raw_stage else None
        if raw_stage and stage is None:
            attributes["lifecyclestage"] = raw_stage
        if (lead_status or "").upper() == "UNQUALIFIED" and stage in (None, "lead", "mql", "sql"):
            stage = "disqualified"

        stage_times: dict[str, datetime] = {}
        for prop, key in _STAGE_DATE_PROPERTIES.items():
            when = _hubspot_datetime(props.get(prop), prop)
            if when is not None:
                stage_times[key] = when

        owner_id = clean_str(props.get("hubspot_owner_id"))
        return LeadRecord(
            source=SOURCE,
            external_id=contact_id,
            email=normalise_email(props.get("email")),
            first_name=clean_str(props.get("firstname")),
            last_name=clean_str(props.get("lastname")),
            title=clean_str(props.get("jobtitle")),
            company=clean_str(props.get("company")),
            employees=employees,
            industry=clean_str(props.get("industry")),
            country=clean_str(props.get("country")),
            lead_source=clean_str(props.get("hs_analytics_source")),
            lifecycle_stage=stage,
            stage_times=stage_times,
            revenue=revenue,
            attributes=attributes,
            modified_at=modified_at,
            created_at=created_at,
            related_ids={"owner_id": owner_id} if owner_id else {},
        )

    def _usage(self) -> dict[str, Any]:
        usage: dict[str, Any] = {"requests": self._requests, "throttle": False}
        if self._daily is not None:
            limit, remaining = self._daily
            used = max(0, limit - remaining)
            usage.update(
                api_used=used,
                api_limit=limit,
                throttle=limit > 0 and used / limit >= self._config.throttle_threshold,
            )
        return usage

    # -- the I/O edge -----------------------------------------------------------------------

    def _api(self, name: str) -> Any:
        # The discovery properties build a new ApiClient (and connection pool) per access:
        # build each API once per token and reuse it.
        if name not in self._apis:
            if self._client is None:
                self._client = HubSpot(
                    access_token=self._token,
                    host=self._config.base_url.rstrip("/"),
                    # Our own retry loop owns retries; urllib3's would hide them from it.
                    retry=Retry(total=0, redirect=False),
                    ssl_ca_cert=self._config.ssl_ca_cert,
                )
            # "batch_api" is the contacts' API; "deals.search_api" names another object's.
            path = name if "." in name else f"contacts.{name}"
            api: Any = self._client.crm
            for part in path.split("."):
                api = getattr(api, part)
            self._apis[name] = api
        return self._apis[name]

    def _call(self, operation: Callable[[Any], Any], api_name: str, name: str) -> dict[str, Any]:
        policy = self._retry
        return call_with_retry(
            lambda: self._with_auth(operation, api_name),
            attempts=policy.attempts,
            base_delay=policy.base_delay,
            max_delay=policy.max_delay,
            sleep=self._sleep,
            operation=f"hubspot.{name}",
        )

    def _with_auth(self, operation: Callable[[Any], Any], api_name: str) -> dict[str, Any]:
        try:
            return self._invoke(operation, api_name)
        except AuthExpired as exc:
            if not self._config.can_refresh:
                raise AuthFailed(
                    "HubSpot rejected the access token (401): check the private app token or "
                    "reconnect the HubSpot integration",
                    status=401,
                    code=exc.code,
                ) from None
        self._refresh_token()
        try:
            return self._invoke(operation, api_name)
        except AuthExpired as exc:
            raise AuthFailed(
                "HubSpot rejected the access token again right after refreshing it (401): "
                "reconnect the HubSpot integration",
                status=401,
                code=exc.code,
            ) from None

    def _invoke(self, operation: Callable[[Any], Any], api_name: str) -> dict[str, Any]:
        api = self._api(api_name)
        self._requests += 1
        try:
            response = operation(api)
        except _API_EXCEPTIONS as exc:
            raise self._translate(exc) from None
        except urllib3.exceptions.HTTPError as exc:
            raise _translate_urllib3_error(exc) from None
        try:
            raw = response.data
        except urllib3.exceptions.HTTPError as exc:
            raise _translate_urllib3_error(exc) from None
        finally:
            response.release_conn()
        self._note_daily(response.headers)
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            raise TransientError("HubSpot returned an unreadable response") from None
        if not isinstance(data, dict):
            raise PermanentError("HubSpot returned an unexpected response shape")
        return data

    def _note_daily(self, headers: Mapping[str, str] | None) -> None:
        if not headers:
            return
        limit = _parse_int(headers.get("X-HubSpot-RateLimit-Daily"))
        remaining = _parse_int(headers.get("X-HubSpot-RateLimit-Daily-Remaining"))
        if limit is not None and remaining is not None:
            self._daily = (limit, remaining)

    def _translate(self, exc: Any) -> ConnectorError:
        status = int(exc.status or 0)
        headers = exc.headers or {}
        body = _json_or_none(exc.body)
        body = body if isinstance(body, dict) else {}
        category = clean_str(body.get("category") or body.get("errorType"))
        message = str(body.get("message") or exc.reason or "")[:300]
        if status == 429:
            return self._rate_limited(headers, body)
        if status == 401:
            return AuthExpired("HubSpot access token rejected", status=401, code=category)
        if status == 0:
            # The generated client reports TLS failures as status 0.
            if "CERTIFICATE_VERIFY_FAILED" in str(exc.reason):
                return PermanentError("TLS certificate verification failed for HubSpot")
            return TransientError("network error talking to HubSpot")
        if status >= 500 or status == 408:
            return TransientError(f"HubSpot {status} {category or ''}".strip(), status=status)
        return PermanentError(
            f"HubSpot {status} {category or 'error'}: {message}".strip(),
            status=status,
            code=category,
        )

    def _rate_limited(self, headers: Mapping[str, str], body: Mapping[str, Any]) -> RateLimited:
        self._note_daily(headers)
        policy = clean_str(body.get("policyName")) or ""
        retry_after = parse_retry_after(headers.get("Retry-After"), self._clock())
        daily = (
            policy.upper() == "DAILY"
            or clean_str(headers.get("X-HubSpot-RateLimit-Daily-Remaining")) == "0"
        )
        log_event(logger, logging.WARNING, "connector.hubspot.rate_limited", policy=policy or "-")
        if daily:
            return RateLimited(
                "HubSpot daily API limit reached",
                retry_after=retry_after if retry_after is not None else _DAILY_LIMIT_RETRY_AFTER,
                scope="daily",
                code=policy or "DAILY",
            )
        if retry_after is None:
            interval_ms = _parse_int(headers.get("X-HubSpot-RateLimit-Interval-Milliseconds"))
            retry_after = (
                interval_ms / 1000 if interval_ms else _BURST_WINDOWS.get(policy.upper(), 10.0)
            )
        return RateLimited(
            f"HubSpot {policy or 'burst'} rate limit reached",
            retry_after=retry_after,
            scope="burst",
            code=policy or None,
        )

    def _refresh_token(self) -> None:
        config = self._config
        self._requests += 1
        # The OAuth API lives on the same host; a throwaway client keeps it off the data APIs.
        oauth = HubSpot(
            host=config.base_url.rstrip("/"),
            retry=Retry(total=0, redirect=False),
            ssl_ca_cert=config.ssl_ca_cert,
        ).oauth.tokens_api
        try:
            response = oauth.create(
                grant_type="refresh_token",
                client_id=config.client_id,
                client_secret=config.client_secret,
                refresh_token=config.refresh_token,
                _preload_content=False,
                _request_timeout=config.timeout,
            )
        except OAuthApiException as exc:
            status = int(exc.status or 0)
            if status >= 500 or status in (0, 429):
                raise TransientError(
                    f"HubSpot token endpoint returned {status}", status=status
                ) from None
            body = _json_or_none(exc.body)
            code = body.get("status") if isinstance(body, dict) else None
            raise AuthFailed(
                f"HubSpot refused the refresh token ({status} {code or 'error'}); reconnect the "
                "HubSpot integration",
                status=status,
                code=code,
            ) from None
        except urllib3.exceptions.HTTPError as exc:
            raise _translate_urllib3_error(exc) from None
        try:
            data = json.loads(response.data)
        except ValueError:
            raise TransientError("HubSpot token endpoint returned an unreadable response") from None
        finally:
            response.release_conn()
        token = data.get("access_token") if isinstance(data, dict) else None
        if not token:
            raise AuthFailed("HubSpot token endpoint returned no access_token")
        self._token = str(token)
        self._client = None
        self._apis = {}
        log_event(logger, logging.INFO, "connector.hubspot.token_refreshed")
        if self._on_token_refresh is not None:
            self._on_token_refresh(self._token)


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _next_after(data: Mapping[str, Any]) -> int | None:
    paging = data.get("paging")
    next_page = paging.get("next") if isinstance(paging, dict) else None
    after = next_page.get("after") if isinstance(next_page, dict) else None
    if after is None:
        return None
    try:
        return int(after)
    except (TypeError, ValueError):
        raise PermanentError("HubSpot search returned a non-numeric paging cursor") from None


def _batch_outcome(
    chunk: Sequence[ScoreUpdate], data: Mapping[str, Any]
) -> tuple[int, list[FailedRecord]]:
    """Count the contacts a batch update wrote and report the ones it did not."""
    written = {
        str(item.get("id"))
        for item in data.get("results") or []
        if isinstance(item, dict) and item.get("id") is not None
    }
    reasons: dict[str, str] = {}
    unattributed: list[str] = []
    for error in data.get("errors") or []:
        if not isinstance(error, dict):
            continue
        reason = f"{error.get('category', 'ERROR')}: {error.get('message', '')}".strip()[:300]
        context = error.get("context") if isinstance(error.get("context"), dict) else {}
        ids = context.get("ids") if isinstance(context, dict) else None
        if ids:
            for contact_id in ids:
                reasons[str(contact_id)] = reason
        else:
            unattributed.append(reason)
    failed: list[FailedRecord] = []
    pushed = 0
    for update in chunk:
        if update.external_id in reasons:
            failed.append(FailedRecord(SOURCE, update.external_id, reasons[update.external_id]))
        elif update.external_id in written:
            pushed += 1
        else:
            reason = "; ".join(unattributed) or "not in HubSpot's batch response"
            failed.append(FailedRecord(SOURCE, update.external_id, reason))
    return pushed, failed


def _defined_types(target: Mapping[str, Any]) -> frozenset[int]:
    """The HubSpot-defined association type ids of one v4 association target."""
    types: set[int] = set()
    for item in target.get("associationTypes") or []:
        if isinstance(item, dict) and item.get("category") == "HUBSPOT_DEFINED":
            type_id = _parse_int(item.get("typeId"))
            if type_id is not None:
                types.add(type_id)
    return frozenset(types)


def _primary_company(companies: Sequence[tuple[str, frozenset[int]]]) -> str | None:
    """The primary company among a contact's associated companies, else the lowest id (the
    batch read's order is not documented, and a stable pick keeps the account stable)."""
    if not companies:
        return None
    for company_id, types in companies:
        if _PRIMARY_COMPANY_TYPE_ID in types:
            return company_id
    return min((company_id for company_id, _ in companies), key=lambda c: (len(c), c))


def _search_result(item: Any, modified_property: str) -> tuple[str, dict[str, Any], datetime]:
    """``(id, properties, modified_at)`` of one CRM search result; ``ValueError`` naming the
    field when one is missing or malformed."""
    if not isinstance(item, dict):
        raise ValueError("result is not an object")
    object_id = clean_str(item.get("id"))
    if not object_id:
        raise ValueError("id: missing")
    props = item.get("properties")
    if not isinstance(props, dict):
        raise ValueError("properties: not an object")
    modified_at = _hubspot_datetime(
        props.get(modified_property) or item.get("updatedAt"), modified_property
    )
    if modified_at is None:
        raise ValueError(f"{modified_property}: missing")
    return object_id, props, modified_at


def _to_outcome(item: Any, stages: Mapping[str, str]) -> OutcomeRecord:
    """A deal search result as an :class:`OutcomeRecord` (contacts are added per page)."""
    deal_id, props, modified_at = _search_result(item, "hs_lastmodifieddate")
    stage = clean_str(props.get("dealstage"))
    if stage is None or stage not in stages:
        raise ValueError("dealstage: not a stage of any deal pipeline")
    status = stages[stage]
    amount = _parse_float(props.get("amount"))
    if amount is None and clean_str(props.get("amount")):
        raise ValueError("amount: not a number")
    return OutcomeRecord(
        source=SOURCE,
        external_id=deal_id,
        status=status,
        amount=amount,
        opened_at=_hubspot_datetime(props.get("createdate") or item.get("createdAt"), "createdate"),
        closed_at=_hubspot_datetime(props.get("closedate"), "closedate")
        if status != "open"
        else None,
        modified_at=modified_at,
        stage=stage,
    )


def _hubspot_datetime(value: Any, field_name: str) -> datetime | None:
    text = clean_str(value)
    if text is None:
        return None
    if text.isdigit():
        # Older date properties and some webhooks carry epoch milliseconds.
        return parse_epoch_ms(text, field_name)
    return parse_datetime(text, field_name)


def _parse_int(value: Any) -> int | None:
    text = clean_str(value)
    if text is None:
        return None
    try:
        number = float(text.replace(",", ""))
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def _parse_float(value: Any) -> float | None:
    text = clean_str(value)
    if text is None:
        return None
    try:
        number = float(text.replace(",", ""))
    except ValueError:
        return None
    return number if number == number and number not in (float("inf"), float("-inf")) else None


def _json_or_none(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return None


def _translate_urllib3_error(exc: urllib3.exceptions.HTTPError) -> ConnectorError:
    ssl_error = isinstance(exc, urllib3.exceptions.SSLError) or isinstance(
        getattr(exc, "reason", None), urllib3.exceptions.SSLError
    )
    if ssl_error and "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return PermanentError("TLS certificate verification failed for HubSpot")
    return TransientError(f"network error talking to HubSpot: {type(exc).__name__}")


# ----------------------------------------------------------------------------------------------
# Webhook signature v3
# ----------------------------------------------------------------------------------------------

# HubSpot signs the request URI with these percent-escapes decoded. We accept a signature
# over the URI exactly as received or over this decoded form, so a proxy or framework that
# re-encodes the URI does not break verification (both forms need the app secret).
_URI_DECODES: Mapping[str, str] = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def _hubspot_decoded_uri(uri: str) -> str:
    return _PERCENT_ESCAPE.sub(lambda m: _URI_DECODES.get(m.group(0).upper(), m.group(0)), uri)


def verify_signature_v3(
    app_secret: str,
    method: str,
    uri: str,
    body: bytes,
    timestamp_ms: str,
    signature: str,
    now_ms: int,
    max_age_ms: int = 300_000,
    max_skew_ms: int = 60_000,
) -> bool:
    """Check an ``X-HubSpot-Signature-v3`` header. Pure: no clock, no I/O.

    The signature is ``base64(HMAC-SHA256(app_secret, method + uri + body + timestamp))``
    over the UTF-8 request method, the full request URI (scheme, host, path and query, as
    HubSpot called it), the raw body bytes and the ``X-HubSpot-Request-Timestamp`` header.
    Returns ``False`` - never raises - when the timestamp is missing or malformed, older than
    ``max_age_ms`` (a replay) or more than ``max_skew_ms`` later than ``now_ms`` (HubSpot's
    clock may run a little ahead of ours; further ahead is a forged timestamp), or when the
    signature does not match. The comparison is constant-time.
    """
    if not app_secret or not signature or not timestamp_ms or not timestamp_ms.isdigit():
        return False
    try:
        sent_at = int(timestamp_ms)
    except ValueError:
        return False
    if sent_at - now_ms > max_skew_ms or now_ms - sent_at > max_age_ms:
        return False
    try:
        given = signature.strip().encode("ascii")
    except UnicodeEncodeError:
        return False
    key = app_secret.encode("utf-8")
    matched = False
    for candidate_uri in dict.fromkeys((uri, _hubspot_decoded_uri(uri))):
        message = method.upper().encode("utf-8") + candidate_uri.encode("utf-8") + body
        message += timestamp_ms.encode("ascii")
        expected = base64.b64encode(hmac.new(key, message, hashlib.sha256).digest())
        # Evaluate every candidate (no short-circuit) so timing does not reveal which matched.
        matched = hmac.compare_digest(expected, given) | matched
    return matched
