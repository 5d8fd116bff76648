"""One call of the Segment spec (track, identify, group, page, screen, alias), validated and
mapped onto our model. Pure reading: nothing here writes; `integrations.segment.services`
stores what :func:`parse_call` returns.

Mapping (the contract of issue #23, docs/integrations.md):

- A call's lead is its ``userId`` (identity ``segment``) or, when it has none, its
  ``anonymousId`` (identity ``segment_anonymous``).
- ``identify`` traits map to lead fields: ``email``, ``firstName``/``first_name``,
  ``lastName``/``last_name`` (or a ``name`` split at its first space when neither is given),
  ``title``, ``company`` (a string, or ``company.name`` and ``company.employee_count``),
  ``employees``, ``industry``, ``address.country`` (or ``country``). Every other trait becomes a
  custom attribute.
- ``track`` is an event: ``event`` -> event type, ``properties``, ``timestamp``; ``page`` and
  ``screen`` are ``page_view`` / ``screen_view`` events whose properties include the page's
  ``name`` and ``category``. ``messageId`` is the event's idempotency key (source ``segment``).
- ``group`` names the lead's account: ``groupId`` and traits ``name``, ``employees``,
  ``industry``, ``website``.
- ``alias`` says ``previousId`` and ``userId`` are one person.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from scoring import strict_json
from scoring.models import Lead
from scoring.services.events import EventInput, parse_event_item, parse_timestamp

#: Identity and event source of Segment user ids and message ids.
SOURCE = "segment"
#: Identity source of Segment anonymous ids (a visitor who has not been identified yet).
ANONYMOUS_SOURCE = "segment_anonymous"
CALL_TYPES = ("track", "identify", "group", "page", "screen", "alias")
#: Segment's own limits, which its SDKs keep to: a call up to 32 KB, a batch up to 500 KB.
MAX_CALL_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
_ID_MAX = 255
_EVENT_TYPES = {"page": "page_view", "screen": "screen_view"}
# Our field names in parse_event_item's reasons -> the Segment names the client sent.
_EVENT_FIELD_NAMES = {
    "external_id:": "messageId:",
    "event_type:": "event:",
    "occurred_at:": "timestamp:",
}
_MAX_EMPLOYEES = 2**31 - 1


@dataclass(frozen=True)
class GroupTraits:
    group_id: str
    name: str = ""
    employees: int | None = None
    industry: str = ""
    website: str = ""
    traits: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SegmentCall:
    """One valid call. ``index`` is its position in the request (for per-call errors)."""

    index: int
    type: str
    message_id: str
    user_id: str | None = None
    anonymous_id: str | None = None
    # identify (and group's firmographics): lead fields and custom attributes to upsert.
    lead_values: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    # track, page, screen.
    event: EventInput | None = None
    # alias.
    previous_id: str | None = None
    # group.
    group: GroupTraits | None = None

    @property
    def lead_key(self) -> tuple[str, str]:
        """The identity the call's lead is found by."""
        if self.user_id:
            return (SOURCE, self.user_id)
        return (ANONYMOUS_SOURCE, self.anonymous_id or "")


def _id(raw: dict, name: str, reasons: list[str]) -> str | None:
    """A Segment id (string, or a number the client did not stringify)."""
    value = raw.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        reasons.append(f"{name}: must be a string")
        return None
    text = str(value).strip()
    if not text:
        return None
    if len(text) > _ID_MAX:
        reasons.append(f"{name}: at most {_ID_MAX} characters")
        return None
    return text


def _object(raw: dict, name: str, reasons: list[str]) -> dict[str, Any]:
    value = raw.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        reasons.append(f"{name}: must be a JSON object")
        return {}
    return value


def _message_id(raw: dict, call_type: str, reasons: list[str]) -> str:
    """The call's messageId; a call without one (the spec makes it optional for HTTP callers)
    gets a digest of its content, so a client that resends the same call is still deduped."""
    given = _id(raw, "messageId", reasons)
    if given:
        return given
    content = {k: v for k, v in raw.items() if k not in ("sentAt", "receivedAt", "writeKey")}
    content["type"] = call_type
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    return f"sha256-{digest[:48]}"


def _limited_text(value: Any, where: str, max_length: int, reasons: list[str]) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        reasons.append(f"{where}: must be a string")
        return ""
    text = str(value).strip()
    if len(text) > max_length:
        reasons.append(f"{where}: at most {max_length} characters")
        return ""
    return text


def _employees(value: Any, where: str, reasons: list[str]) -> int | None:
    """A head count: a whole number (an integral float or a numeric string too)."""
    if value is None or value == "":
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        number = int(value.strip())
    if number is None:
        reasons.append(f"{where}: must be a whole number")
        return None
    if not 0 <= number <= _MAX_EMPLOYEES:
        reasons.append(f"{where}: must be between 0 and {_MAX_EMPLOYEES}")
        return None
    return number


def _max_length(name: str) -> int:
    return Lead._meta.get_field(name).max_length


def map_traits(traits: dict[str, Any], reasons: list[str]) -> tuple[dict[str, Any], dict]:
    """identify traits -> (lead field values, custom attributes); see the module docstring.
    Problems are appended to ``reasons`` as ``traits.<name>: problem``."""
    rest = dict(traits)
    values: dict[str, Any] = {}

    def text(lead_field: str, *names: str) -> None:
        for name in names:
            if name in rest:
                value = _limited_text(
                    rest.pop(name), f"traits.{name}", _max_length(lead_field), reasons
                )
                if value and lead_field not in values:
                    values[lead_field] = value

    text("email", "email")
    if values.get("email"):
        try:
            validate_email(values["email"])
        except ValidationError:
            reasons.append(f"traits.email: {values['email']!r} is not an email address")
    text("first_name", "firstName", "first_name")
    text("last_name", "lastName", "last_name")
    if "first_name" not in values and "last_name" not in values and "name" in rest:
        full = _limited_text(rest.pop("name"), "traits.name", 241, reasons)
        first, _, last = full.partition(" ")
        values["first_name"], values["last_name"] = first[:120], last.strip()[:120]
    text("title", "title")
    text("industry", "industry")
    company = rest.get("company")
    if isinstance(company, dict):
        company = dict(rest.pop("company"))
        name = _limited_text(company.pop("name", None), "traits.company.name", 200, reasons)
        if name:
            values["company"] = name
        employees = _employees(
            company.pop("employee_count", None), "traits.company.employee_count", reasons
        )
        if employees is not None:
            values["employees"] = employees
        if company:
            rest["company"] = company
    else:
        text("company", "company")
    if "employees" in rest:
        employees = _employees(rest.pop("employees"), "traits.employees", reasons)
        if employees is not None:
            values["employees"] = employees
    address = rest.get("address")
    if isinstance(address, dict) and "country" in address:
        address = dict(rest.pop("address"))
        country = _limited_text(
            address.pop("country"), "traits.address.country", _max_length("country"), reasons
        )
        if country:
            values["country"] = country
        if address:
            rest["address"] = address
    text("country", "country")
    return values, rest


def _group(raw: dict, reasons: list[str]) -> GroupTraits | None:
    group_id = _id(raw, "groupId", reasons)
    traits = _object(raw, "traits", reasons)
    if group_id is None:
        if not any(r.startswith("groupId:") for r in reasons):
            reasons.append("groupId: this field is required")
        return None
    return GroupTraits(
        group_id=group_id,
        name=_limited_text(traits.get("name"), "traits.name", 200, reasons),
        employees=_employees(traits.get("employees"), "traits.employees", reasons),
        industry=_limited_text(traits.get("industry"), "traits.industry", 120, reasons),
        website=_limited_text(traits.get("website"), "traits.website", 500, reasons),
        traits=traits,
    )


def _occurred_at(raw: dict, now: dt.datetime) -> Any:
    """When the call happened, as Segment decides it: ``timestamp`` as given; else
    ``originalTimestamp`` corrected for the device's clock skew (the time between ``sentAt``
    and our clock); else now. What cannot be read is left for the event check to refuse."""
    if raw.get("timestamp"):
        return raw["timestamp"]
    original = raw.get("originalTimestamp")
    if not original:
        return now.isoformat()
    try:
        skew = now - parse_timestamp(raw.get("sentAt"))
        return (parse_timestamp(original) + skew).isoformat()
    except (ValueError, OverflowError):
        return original


def call_size(raw: Any) -> int:
    """A call's size as Segment counts it: its compact JSON in UTF-8."""
    return len(json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode())


def parse_call(
    raw: Any, *, index: int, now: dt.datetime, call_type: str | None = None
) -> tuple[SegmentCall | None, list[str]]:
    """Validate one call: (the call, []) or (None, reasons). ``call_type`` is the endpoint's
    (``/v1/track`` ...); a call inside a batch names its own ``type``."""
    if not isinstance(raw, dict):
        return None, ["each call must be a JSON object"]
    if call_size(raw) > MAX_CALL_BYTES:
        return None, [f"the call is larger than {MAX_CALL_BYTES // 1024} KB"]
    reasons: list[str] = []
    kind = call_type or raw.get("type")
    if kind not in CALL_TYPES:
        return None, [f"type: must be one of {', '.join(CALL_TYPES)}"]
    user_id = _id(raw, "userId", reasons)
    anonymous_id = _id(raw, "anonymousId", reasons)
    message_id = _message_id(raw, kind, reasons)
    if kind == "alias":
        previous_id = _id(raw, "previousId", reasons)
        if previous_id is None and not reasons:
            reasons.append("previousId: this field is required")
        if user_id is None and not reasons:
            reasons.append("userId: this field is required")
        if reasons:
            return None, reasons
        return SegmentCall(index, kind, message_id, user_id=user_id, previous_id=previous_id), []
    if user_id is None and anonymous_id is None and not reasons:
        reasons.append("userId or anonymousId: one is required")
    call = SegmentCall(index, kind, message_id, user_id=user_id, anonymous_id=anonymous_id)
    if kind == "identify":
        values, attributes = map_traits(_object(raw, "traits", reasons), reasons)
        call = SegmentCall(
            index,
            kind,
            message_id,
            user_id=user_id,
            anonymous_id=anonymous_id,
            lead_values=values,
            attributes=attributes,
        )
    elif kind == "group":
        group = _group(raw, reasons)
        if group is not None:
            values = {
                "company": group.name,
                "employees": group.employees,
                "industry": group.industry,
            }
            call = SegmentCall(
                index,
                kind,
                message_id,
                user_id=user_id,
                anonymous_id=anonymous_id,
                lead_values={k: v for k, v in values.items() if v not in (None, "")},
                attributes={"segment_group_id": group.group_id},
                group=group,
            )
    else:
        properties = _object(raw, "properties", reasons)
        if kind == "track":
            event_type = raw.get("event")
        else:
            event_type = _EVENT_TYPES[kind]
            properties = dict(properties)
            for name in ("name", "category"):
                if raw.get(name) not in (None, "") and name not in properties:
                    properties[name] = raw[name]
        if reasons:
            return None, reasons
        source, external_id = call.lead_key
        timestamp = _occurred_at(raw, now)
        event, event_reasons = parse_event_item(
            {
                "external_id": message_id,
                "source": SOURCE,
                "event_type": event_type,
                "occurred_at": timestamp,
                "properties": properties,
                "lead_source": source,
                "lead_external_id": external_id,
            },
            now=now,
        )
        for reason in event_reasons:
            for ours, theirs in _EVENT_FIELD_NAMES.items():
                if reason.startswith(ours):
                    reason = theirs + reason[len(ours) :]
            reasons.append(reason)
        call = SegmentCall(
            index, kind, message_id, user_id=user_id, anonymous_id=anonymous_id, event=event
        )
    if not reasons:
        try:
            strict_json.check(call.attributes)
        except strict_json.StrictJSONError as exc:
            reasons.append(f"traits: {exc}")
    if reasons:
        return None, reasons
    return call, []
