"""Small helpers shared by the vendor connectors (parsing, batching, structured logs).

Private to ``integrations.connectors``: the sync services use :mod:`.base` only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, time
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import requests

from .base import ConnectorError, PermanentError, ScoreUpdate, TransientError

T = TypeVar("T")

# Salesforce writes "+0000" (no colon); Python 3.11's fromisoformat accepts that, "Z" and
# fractional seconds of any length, so one parser covers all three vendors.
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (the default clock of every connector)."""
    return datetime.now(UTC)


def parse_datetime(value: Any, field_name: str) -> datetime | None:
    """Parse an ISO 8601 date-time (or a bare date, as midnight) into aware UTC.

    ``None`` and ``""`` give ``None``; anything unparsable raises ``ValueError`` naming the
    field (never the value, which may be personal data in a free-text field). A date-time
    without an offset is taken as UTC, which is what every vendor here means by it.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{field_name}: expected an ISO 8601 string")
    text = value.strip()
    try:
        if _DATE_ONLY.match(text):
            parsed = datetime.combine(date.fromisoformat(text), time.min)
        else:
            parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{field_name}: not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_epoch_ms(value: Any, field_name: str) -> datetime | None:
    """Parse epoch milliseconds (int or numeric string) into aware UTC; ``None``/"" -> None."""
    if value is None or value == "":
        return None
    try:
        millis = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{field_name}: not epoch milliseconds") from None
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def format_iso_ms(value: datetime) -> str:
    """``2024-03-18T11:22:33.871Z``: the form HubSpot uses, and our cursors store."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def clean_str(value: Any) -> str | None:
    """Strip a string value; empty strings and ``None`` become ``None``; others are str()-ed."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def normalise_email(value: Any) -> str | None:
    """Trim and lower-case an e-mail (the cross-source merge key); empty -> ``None``."""
    text = clean_str(value)
    return text.lower() if text else None


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Yield consecutive slices of at most ``size`` items."""
    if size < 1:
        raise ValueError("size must be at least 1")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def dedupe_updates(updates: Iterable[ScoreUpdate]) -> list[ScoreUpdate]:
    """Keep the last update per ``external_id``, in first-seen order.

    Both CRMs reject a batch that names the same record twice, and the last score computed is
    the one that should win.
    """
    latest: dict[str, ScoreUpdate] = {}
    for update in updates:
        # Re-assigning an existing key keeps its original position: first-seen order.
        latest[update.external_id] = update
    return list(latest.values())


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log a structured event: message ``"<event> k=v ..."`` and the same data in ``extra``.

    Only ids, counts and codes belong in ``fields``; never e-mails, names or tokens.
    """
    text = " ".join(f"{key}={value}" for key, value in fields.items())
    logger.log(
        level,
        "%s %s" if text else "%s%s",
        event,
        text,
        extra={"event": event, "event_fields": fields},
    )


def parse_retry_after(value: Any, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date).

    ``None`` when the header is missing or unreadable, so the caller can use its default.
    """
    text = clean_str(value)
    if text is None:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def translate_requests_error(exc: requests.RequestException, vendor: str) -> ConnectorError:
    """Map a requests exception to our errors: network trouble is transient, the rest not.

    A failed certificate check is permanent (wrong URL or CA bundle: retrying cannot fix it);
    other TLS errors, timeouts, refused or dropped connections are transient.
    """
    if isinstance(exc, requests.exceptions.SSLError):
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return PermanentError(
                f"TLS certificate verification failed for {vendor} (check the URL and CA bundle)"
            )
        return TransientError(f"TLS error talking to {vendor}: {type(exc).__name__}")
    if isinstance(
        exc,
        requests.Timeout
        | requests.ConnectionError
        | requests.exceptions.ChunkedEncodingError
        # A gzip stream cut short fails to decode: the same outage seen one layer up.
        | requests.exceptions.ContentDecodingError,
    ):
        return TransientError(f"network error talking to {vendor}: {type(exc).__name__}")
    return PermanentError(f"could not send the request to {vendor}: {type(exc).__name__}")
