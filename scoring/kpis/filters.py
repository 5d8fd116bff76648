"""The KPI filters: one frozen value shared by the page, the API, the CSV export and the
selectors, parsed from a query string with a clear error per bad parameter."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.utils import timezone

# The query parameters, in the order links and exports write them.
FILTER_PARAMS = ("start", "end", "persona", "source", "owner", "version")


class KpiFilterError(ValueError):
    """Bad filter parameters; `errors` maps each parameter to a sentence."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class KpiFilters:
    """Which leads the KPIs count: created in [start, end] (whole days, both included, in the
    project's time zone), optionally of one persona, source and owner. `rule_set_version`
    restricts the score history to the rows that version wrote (and the bands to its bands)."""

    start: dt.date | None = None
    end: dt.date | None = None
    persona: str | None = None
    source: str | None = None
    owner_id: int | None = None
    rule_set_version: int | None = None
    # The moment "now" is taken at, fixed once so every query of one report agrees.
    now: dt.datetime = field(default_factory=timezone.now, compare=False)

    def created_from(self) -> dt.datetime | None:
        return _start_of_day(self.start) if self.start else None

    def created_before(self) -> dt.datetime | None:
        """Exclusive upper bound: midnight after the end date."""
        return _start_of_day(self.end + dt.timedelta(days=1)) if self.end else None

    def cutoff(self) -> dt.datetime:
        """The end of the period (exclusive): a lead that has not converted is counted in the
        band it had at this moment. Midnight after `end`, or now without an end."""
        return self.created_before() or self.now

    def query_params(self, **overrides: object) -> dict[str, str]:
        """The filters as query parameters (empty ones left out), for links and exports."""
        values: dict[str, object] = {
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "persona": self.persona,
            "source": self.source,
            "owner": self.owner_id,
            "version": self.rule_set_version,
        }
        values.update(overrides)
        return {k: str(v) for k, v in values.items() if v not in (None, "")}

    def querystring(self) -> str:
        return urlencode(self.query_params())


def _start_of_day(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


# Filter dates outside this range mean nothing here, and near the ends of the calendar the day
# after the end date (the exclusive bound) does not exist: 9999-12-31 was a 500.
FILTER_DATE_MIN = dt.date(1970, 1, 1)
FILTER_DATE_MAX = dt.date(2999, 12, 31)


def filter_date(raw: str) -> dt.date:
    """A filter's YYYY-MM-DD date within [FILTER_DATE_MIN, FILTER_DATE_MAX]; raises ValueError
    with a message for the user (the KPI filters and the lead list share it)."""
    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a date; use YYYY-MM-DD (e.g. 2024-03-31).") from None
    if not FILTER_DATE_MIN <= day <= FILTER_DATE_MAX:
        raise ValueError(f"{day} is out of range ({FILTER_DATE_MIN} to {FILTER_DATE_MAX}).")
    return day


def _parse_date(name: str, raw: str, errors: dict[str, str]) -> dt.date | None:
    try:
        return filter_date(raw)
    except ValueError as exc:
        errors[name] = str(exc)
        return None


def _parse_int(name: str, raw: str, errors: dict[str, str], what: str) -> int | None:
    try:
        value = int(raw)
    except ValueError:
        errors[name] = f"{raw!r} is not {what}; give its number."
        return None
    if value < 0:
        errors[name] = f"{raw!r} is not {what}; give its number."
        return None
    return value


def parse_filters(params: Mapping[str, str], *, now: dt.datetime | None = None) -> KpiFilters:
    """Parse `start`, `end` (YYYY-MM-DD), `persona`, `source`, `owner` (user id) and `version`
    (rule-set version). Empty values mean "no filter". Raises KpiFilterError naming every bad
    parameter, including an end before the start."""
    errors: dict[str, str] = {}

    def get(name: str) -> str:
        return (params.get(name) or "").strip()

    start = _parse_date("start", get("start"), errors) if get("start") else None
    end = _parse_date("end", get("end"), errors) if get("end") else None
    if start and end and end < start:
        errors["end"] = f"The end date {end} is before the start date {start}."
    owner = _parse_int("owner", get("owner"), errors, "a user id") if get("owner") else None
    version = (
        _parse_int("version", get("version"), errors, "a rule-set version")
        if get("version")
        else None
    )
    if errors:
        raise KpiFilterError(errors)
    return KpiFilters(
        start=start,
        end=end,
        persona=get("persona") or None,
        source=get("source") or None,
        owner_id=owner,
        rule_set_version=version,
        now=now or timezone.now(),
    )


LEADS_QUEUE_PATH = "/leads/"


def leads_queue_url(filters: KpiFilters, band: str | None = None) -> str:
    """The lead queue showing the leads behind a number: same creation period, persona and
    source (the queue's parameter names), and the band when given. The queue filters on a
    lead's band *today*, so for converted leads its list can differ from the KPI's count.
    Every stage (`stage=all`): the KPIs count customers and closed leads, which the queue's
    default (open leads) would hide."""
    params: dict[str, str] = {"stage": "all"}
    if band:
        params["band"] = band
    if filters.start:
        params["created_from"] = filters.start.isoformat()
    if filters.end:
        params["created_to"] = filters.end.isoformat()
    if filters.persona:
        params["persona"] = filters.persona
    if filters.source:
        params["source"] = filters.source
    query = urlencode(params)
    return f"{LEADS_QUEUE_PATH}?{query}" if query else LEADS_QUEUE_PATH
