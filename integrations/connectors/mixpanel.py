"""Mixpanel connector: raw event export and engage profiles, over plain requests.

Mixpanel has no official export SDK, so this module speaks HTTP itself with the service
account's Basic auth.

What it reads (``fetch``):

- Engage profiles (``POST {query_base}/api/query/engage``, paged with ``session_id`` and
  ``page`` while a page is full) as :class:`~.base.LeadRecord`\\ s, one batch per page, first,
  so that the leads exist before their events arrive. Profiles have no modification time, so
  they are read in full on every run (``MixpanelConfig.sync_profiles`` turns this off).
- Raw events (``GET {api_base}/api/2.0/export``), one request per project-time-zone day from
  the day after the cursor through today, streamed and parsed line by line (gzip on the wire).
  A day yields one batch, or several of at most ``max_batch_events`` events for big days.
  ``cursor_after`` is the last *completed* day; today is exported but does not advance it,
  so the next run exports today again and the stable event ids make that harmless.

Each event's ``external_id`` is a hash of ``(event, distinct_id, time, $insert_id)``, so
re-exports upsert onto the same key, and duplicates within a day's export are collapsed (an
event without ``$insert_id`` uses a hash of all its properties in its place, so only exact
copies collapse). ``lead_external_id`` is ``$user_id`` or else ``distinct_id``; ``email`` is
the ``$email`` or ``email`` property. A malformed line becomes a :class:`~.base.FailedRecord`
carrying its line number; the rest of the day goes on.

Errors: 429 is a burst :class:`~.base.RateLimited` with the ``Retry-After`` wait; 401/403 are
:class:`~.base.AuthFailed`; 5xx, timeouts and connections dropped mid-stream are retried here
(a day interrupted mid-stream is exported again, and the events already handed over are
skipped). Mixpanel has no score write-back: :meth:`MixpanelConnector.push_scores` raises
:class:`~.base.PermanentError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from requests.auth import HTTPBasicAuth

from ._common import (
    clean_str,
    log_event,
    normalise_email,
    parse_retry_after,
    translate_requests_error,
    utc_now,
)
from .base import (
    AuthFailed,
    Batch,
    Connector,
    ConnectorError,
    EventRecord,
    FailedRecord,
    LeadRecord,
    PermanentError,
    PushResult,
    RateLimited,
    RetryPolicy,
    ScoreUpdate,
    TransientError,
    backoff_delay,
    call_with_retry,
)

__all__ = ["DEFAULT_EVENT_MAP", "MixpanelConfig", "MixpanelConnector", "default_event_type"]

logger = logging.getLogger(__name__)

SOURCE = "mixpanel"

#: Mixpanel's own automatically tracked events, named as our event types.
DEFAULT_EVENT_MAP: Mapping[str, str] = {
    "$mp_web_page_view": "page_view",
    "$mp_page_leave": "page_leave",
    "$mp_click": "click",
    "$mp_session_start": "session_start",
}

# Mixpanel's documented default and maximum for engage pages.
_ENGAGE_PAGE_SIZE = 1000
# Mixpanel's 429s on the export and query APIs rarely carry Retry-After; their limits are
# per minute and per hour, so a minute is the smallest wait that is likely to help.
_DEFAULT_RETRY_AFTER = 60.0
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")


def default_event_type(name: str) -> str:
    """Our event type for a Mixpanel event name: lower_snake_case.

    ``"Pricing Page Viewed"`` -> ``"pricing_page_viewed"``, ``"SignedUp"`` -> ``"signed_up"``,
    ``"$signup"`` -> ``"signup"``. Returns ``""`` when nothing usable is left.
    """
    spaced = _CAMEL_BOUNDARY.sub("_", name)
    return _NON_WORD.sub("_", spaced.lower()).strip("_")


@dataclass(frozen=True)
class MixpanelConfig:
    """How to reach one Mixpanel project with a service account. The secret is not in repr.

    ``from_date`` is the first day exported when there is no cursor (or on a full sync).
    ``event_map`` maps Mixpanel event names to our event types; unmapped names fall back to
    :data:`DEFAULT_EVENT_MAP`, then to :func:`default_event_type`. ``project_timezone`` is the
    project's time zone, in which Mixpanel's export dates are expressed. ``api_base`` is
    ``https://data-eu.mixpanel.com`` for EU residency.
    """

    project_id: int | str
    username: str
    secret: str = field(repr=False)
    from_date: date
    api_base: str = "https://data.mixpanel.com"
    query_base: str = "https://mixpanel.com"
    event_map: Mapping[str, str] = field(default_factory=dict)
    project_timezone: str = "UTC"
    sync_profiles: bool = True
    max_batch_events: int = 50_000
    timeout: float = 60
    verify: str | bool = True

    def __post_init__(self) -> None:
        if self.max_batch_events < 1:
            raise ValueError("max_batch_events must be at least 1")
        try:
            ZoneInfo(self.project_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.project_timezone!r}") from None


@dataclass(frozen=True)
class _ParsedEvent:
    record: EventRecord
    key: bytes


class MixpanelConnector(Connector):
    """Reads events and profiles from one Mixpanel project. ``sleep``/``clock`` are injectable."""

    source = SOURCE

    def __init__(
        self,
        config: MixpanelConfig,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = utc_now,
        session: requests.Session | None = None,
    ):
        self._config = config
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._http = session or requests.Session()
        self._auth = HTTPBasicAuth(config.username, config.secret)
        self._tz = ZoneInfo(config.project_timezone)
        self._requests = 0
        self._event_map = {**DEFAULT_EVENT_MAP, **config.event_map}

    # -- public API -------------------------------------------------------------------------

    def fetch(self, cursor: str | None, full: bool = False) -> Iterator[Batch]:
        """Yield profile batches, then event batches day by day up to today.

        ``cursor`` is the last completed day (``YYYY-MM-DD``); ``full`` exports from
        ``from_date`` again. The last batch has ``done=True``. See the module docstring.
        """
        config = self._config
        today = self._clock().astimezone(self._tz).date()
        start = config.from_date
        if not full and cursor:
            start = max(_parse_cursor(cursor) + timedelta(days=1), config.from_date)
        # The point a resumed run restarts from: the day before the first one exported.
        resume = _format_cursor(start - timedelta(days=1)) if start > config.from_date else None
        days = [start + timedelta(days=n) for n in range((today - start).days + 1)]

        if config.sync_profiles:
            for leads, failed, last in self._profile_pages():
                yield Batch(
                    leads=leads,
                    failed=failed,
                    cursor_after=resume,
                    done=last and not days,
                    usage=self._usage(),
                )
        elif not days:
            yield Batch(cursor_after=resume, done=True, usage=self._usage())

        for index, day in enumerate(days):
            completed = day < today
            for events, failed, day_done, duplicates in self._export_day(day):
                if day_done and completed:
                    resume = _format_cursor(day)
                log_event(
                    logger,
                    logging.INFO,
                    "connector.mixpanel.export",
                    day=day.isoformat(),
                    fetched=len(events),
                    failed=len(failed),
                    duplicates=duplicates,
                )
                yield Batch(
                    events=events,
                    failed=failed,
                    cursor_after=resume,
                    done=day_done and index == len(days) - 1,
                    usage={**self._usage(), "duplicates": duplicates},
                )

    def push_scores(self, updates: Sequence[ScoreUpdate]) -> PushResult:
        """Mixpanel is not a CRM: there is nothing to write scores back to."""
        raise PermanentError("Mixpanel has no score write-back; push scores to a CRM instead")

    def test_connection(self) -> dict[str, Any]:
        """Export at most one event of today to prove the credentials and project id work."""
        self._requests = 0
        today = self._clock().astimezone(self._tz).date().isoformat()
        response = self._retrying(lambda: self._get_export(today, limit=1), "export")
        response.close()
        return {"ok": True, "project_id": str(self._config.project_id), **self._usage()}

    def close(self) -> None:
        """Release the HTTP session's connections."""
        self._http.close()

    def __enter__(self) -> MixpanelConnector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- events -----------------------------------------------------------------------------

    def _export_day(
        self, day: date
    ) -> Iterator[tuple[list[EventRecord], list[FailedRecord], bool, int]]:
        """Yield ``(events, failed, day_done, duplicates)`` chunks for one day.

        A stream that breaks part-way is opened again; ``seen`` (the dedupe keys) and
        ``reported`` (failed line numbers) make the second pass skip what was handed over.
        """
        seen: set[bytes] = set()
        reported: set[int] = set()
        duplicates = 0
        attempt = 1
        while True:
            self._requests = 0
            response = self._retrying(lambda: self._get_export(day.isoformat()), "export")
            events: list[EventRecord] = []
            failed: list[FailedRecord] = []
            try:
                for line_number, raw in enumerate(response.iter_lines(), start=1):
                    if not raw or not raw.strip():
                        continue
                    try:
                        parsed = self._parse_line(raw)
                    except ValueError as exc:
                        if line_number not in reported:
                            reported.add(line_number)
                            failed.append(
                                FailedRecord(
                                    SOURCE,
                                    _insert_id_of(raw),
                                    f"line {line_number}: {exc}",
                                    line=line_number,
                                )
                            )
                        continue
                    if parsed.key in seen:
                        duplicates += 1
                        continue
                    seen.add(parsed.key)
                    events.append(parsed.record)
                    if len(events) >= self._config.max_batch_events:
                        yield events, failed, False, duplicates
                        events, failed, duplicates = [], [], 0
                        self._requests = 0
                yield events, failed, True, duplicates
                return
            except requests.RequestException as exc:
                error = translate_requests_error(exc, "Mixpanel")
                if not isinstance(error, TransientError) or attempt >= self._retry.attempts:
                    raise error from None
                delay = self._backoff(attempt)
                log_event(
                    logger,
                    logging.WARNING,
                    "connector.mixpanel.export_restart",
                    day=day.isoformat(),
                    attempt=attempt,
                    delay=f"{delay:.2f}",
                )
                # What was already yielded stays in `seen`/`reported`; what was parsed but not
                # yet yielded is forgotten so the next pass hands it over.
                for record in events:
                    seen.discard(_event_key_from_record(record))
                for failure in failed:
                    reported.discard(failure.line or 0)
                self._sleep(delay)
                attempt += 1
            finally:
                response.close()

    def _get_export(self, day: str, limit: int | None = None) -> requests.Response:
        params: dict[str, Any] = {
            "project_id": self._config.project_id,
            "from_date": day,
            "to_date": day,
        }
        if limit is not None:
            params["limit"] = limit
        return self._request(
            "GET",
            f"{self._config.api_base.rstrip('/')}/api/2.0/export",
            params=params,
            headers={"Accept-Encoding": "gzip", "Accept": "text/plain"},
            stream=True,
        )

    def _parse_line(self, raw: bytes) -> _ParsedEvent:
        try:
            item = json.loads(raw)
        except ValueError:
            raise ValueError("invalid JSON") from None
        if not isinstance(item, dict):
            raise ValueError("not a JSON object")
        name = item.get("event")
        if not isinstance(name, str) or not name.strip():
            raise ValueError("event: missing")
        props = item.get("properties")
        if not isinstance(props, dict):
            raise ValueError("properties: missing")
        moment = props.get("time")
        if (
            isinstance(moment, bool)
            or not isinstance(moment, int | float)
            or not math.isfinite(moment)
        ):
            raise ValueError("properties.time: missing or not a number")
        moment = int(moment) if float(moment).is_integer() else float(moment)
        try:
            occurred_at = datetime.fromtimestamp(moment, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError("properties.time: out of range") from None
        event_type = self._event_map.get(name) or default_event_type(name)
        if not event_type:
            raise ValueError("event: no usable name")

        distinct_id = _id_str(props.get("distinct_id"))
        insert_id = _id_str(props.get("$insert_id"))
        if insert_id is None:
            # No $insert_id: only exact copies are duplicates, so the whole property set
            # stands in for it.
            insert_id = (
                "props:"
                + hashlib.sha256(
                    json.dumps(props, sort_keys=True, separators=(",", ":"), default=str).encode()
                ).hexdigest()
            )
        key = _event_key(name, distinct_id, moment, insert_id)
        properties = dict(props)
        properties["mp_event_name"] = name
        return _ParsedEvent(
            record=EventRecord(
                source=SOURCE,
                external_id=key.hex(),
                event_type=event_type,
                occurred_at=occurred_at,
                properties=properties,
                email=normalise_email(props.get("$email") or props.get("email")),
                lead_external_id=_id_str(props.get("$user_id")) or distinct_id,
            ),
            key=key,
        )

    # -- profiles ---------------------------------------------------------------------------

    def _profile_pages(self) -> Iterator[tuple[list[LeadRecord], list[FailedRecord], bool]]:
        url = f"{self._config.query_base.rstrip('/')}/api/query/engage"
        form: dict[str, Any] = {}
        while True:
            self._requests = 0
            response = self._retrying(
                lambda form=dict(form): self._request(
                    "POST",
                    url,
                    params={"project_id": self._config.project_id},
                    data=form,
                    headers={"Accept": "application/json"},
                ),
                "engage",
            )
            try:
                data = response.json()
            except ValueError:
                raise TransientError("Mixpanel returned an unreadable engage page") from None
            results = data.get("results") if isinstance(data, dict) else None
            if not isinstance(results, list):
                raise PermanentError("Mixpanel engage response has no results list")
            leads: list[LeadRecord] = []
            failed: list[FailedRecord] = []
            for item in results:
                try:
                    leads.append(self._to_lead(item))
                except (ValueError, TypeError) as exc:
                    distinct = _id_str(item.get("$distinct_id")) if isinstance(item, dict) else None
                    failed.append(FailedRecord(SOURCE, distinct, f"profile: {exc}"))
            page_size = data.get("page_size")
            if not isinstance(page_size, int) or page_size < 1:
                page_size = _ENGAGE_PAGE_SIZE
            page = data.get("page") if isinstance(data.get("page"), int) else 0
            session_id = clean_str(data.get("session_id"))
            last = len(results) < page_size or not session_id
            log_event(
                logger,
                logging.INFO,
                "connector.mixpanel.engage",
                page=page,
                fetched=len(leads),
                failed=len(failed),
            )
            yield leads, failed, last
            if last:
                return
            form = {"session_id": session_id, "page": page + 1}

    def _to_lead(self, item: Any) -> LeadRecord:
        if not isinstance(item, dict):
            raise ValueError("result is not an object")
        distinct_id = _id_str(item.get("$distinct_id"))
        if not distinct_id:
            raise ValueError("$distinct_id: missing")
        props = item.get("$properties") or {}
        if not isinstance(props, dict):
            raise ValueError("$properties: not an object")
        known = {"$email", "$first_name", "$last_name", "$country_code", "$created"}
        attributes = {key: value for key, value in props.items() if key not in known}
        return LeadRecord(
            source=SOURCE,
            external_id=distinct_id,
            email=normalise_email(props.get("$email")),
            first_name=clean_str(props.get("$first_name")),
            last_name=clean_str(props.get("$last_name")),
            country=clean_str(props.get("$country_code")),
            attributes=attributes,
            created_at=self._project_datetime(props.get("$created")),
        )

    def _project_datetime(self, value: Any) -> datetime | None:
        """Profile dates are naive, in the project's time zone; unreadable ones are dropped."""
        text = clean_str(value)
        if text is None:
            return None
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=self._tz)
        return parsed.astimezone(UTC)

    # -- the I/O edge -----------------------------------------------------------------------

    def _usage(self) -> dict[str, Any]:
        return {"requests": self._requests, "throttle": False}

    def _backoff(self, attempt: int) -> float:
        policy = self._retry
        return backoff_delay(attempt, base_delay=policy.base_delay, max_delay=policy.max_delay)

    def _retrying(self, fn: Callable[[], requests.Response], name: str) -> requests.Response:
        policy = self._retry
        return call_with_retry(
            fn,
            attempts=policy.attempts,
            base_delay=policy.base_delay,
            max_delay=policy.max_delay,
            sleep=self._sleep,
            operation=f"mixpanel.{name}",
        )

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send one request; return the response only when it is a 2xx."""
        self._requests += 1
        try:
            response = self._http.request(
                method,
                url,
                auth=self._auth,
                timeout=self._config.timeout,
                # Per request, so a REQUESTS_CA_BUNDLE in the environment cannot override it.
                verify=self._config.verify,
                **kwargs,
            )
        except requests.RequestException as exc:
            raise translate_requests_error(exc, "Mixpanel") from None
        if response.status_code < 300:
            return response
        try:
            error = self._translate(response)
        finally:
            response.close()
        raise error

    def _translate(self, response: requests.Response) -> ConnectorError:
        status = response.status_code
        message = _error_message(response)
        if status == 429:
            log_event(logger, logging.WARNING, "connector.mixpanel.rate_limited")
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock())
            return RateLimited(
                "Mixpanel rate limit reached",
                retry_after=_DEFAULT_RETRY_AFTER if retry_after is None else retry_after,
                scope="burst",
            )
        if status in (401, 403):
            return AuthFailed(
                f"Mixpanel rejected the service account ({status}): {message}; check the "
                "username, secret and project id",
                status=status,
            )
        if status >= 500 or status == 408:
            return TransientError(f"Mixpanel {status}", status=status)
        return PermanentError(f"Mixpanel {status}: {message}", status=status)


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _parse_cursor(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise PermanentError(
            "unreadable Mixpanel cursor (expected YYYY-MM-DD); run a full sync to reset it"
        ) from None


def _format_cursor(day: date) -> str:
    return day.isoformat()


def _id_str(value: Any) -> str | None:
    # distinct ids may be numbers in older projects; they are identities, so compare as text.
    if value is None or isinstance(value, bool):
        return None
    return clean_str(value)


def _event_key(name: str, distinct_id: str | None, moment: int | float, insert_id: str) -> bytes:
    """A stable 128-bit key of ``(event, distinct_id, time, $insert_id)``."""
    canonical = json.dumps([name, distinct_id, moment, insert_id], separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).digest()[:16]


def _event_key_from_record(record: EventRecord) -> bytes:
    return bytes.fromhex(record.external_id)


def _insert_id_of(raw: bytes) -> str | None:
    """Best-effort ``$insert_id`` of a line we could not use, to label its FailedRecord."""
    try:
        item = json.loads(raw)
        return _id_str(item["properties"]["$insert_id"])
    except (ValueError, KeyError, TypeError):
        return None


def _error_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason or ""
    if isinstance(body, dict):
        return str(body.get("error") or body.get("message") or "")[:300]
    return ""
