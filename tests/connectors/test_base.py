"""The connector interface: retry helper, dataclass contracts, purity of the package."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.connectors._common import dedupe_updates, parse_retry_after
from integrations.connectors.base import (
    AuthFailed,
    Batch,
    Connector,
    EventRecord,
    LeadRecord,
    PermanentError,
    RateLimited,
    ScoreUpdate,
    TransientError,
    backoff_delay,
    call_with_retry,
)
from integrations.connectors.hubspot import HubSpotConnector
from integrations.connectors.mixpanel import MixpanelConnector
from integrations.connectors.salesforce import SalesforceConnector

REPO_ROOT = Path(__file__).resolve().parents[2]


class Flaky:
    """A callable that raises the given errors in turn, then returns ``"ok"``."""

    def __init__(self, *errors: Exception):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_it_returns_the_first_success_without_sleeping(sleeps):
    assert call_with_retry(Flaky(), sleep=sleeps) == "ok"
    assert sleeps.calls == []


def test_it_retries_transient_errors_with_exponential_full_jitter_backoff(sleeps):
    fn = Flaky(TransientError("a"), TransientError("b"), TransientError("c"))

    result = call_with_retry(fn, base_delay=1.0, max_delay=60.0, sleep=sleeps, rng=lambda: 1.0)

    assert result == "ok"
    assert fn.calls == 4
    assert sleeps.calls == [1.0, 2.0, 4.0]


def test_it_caps_the_backoff_at_max_delay(sleeps):
    fn = Flaky(*[TransientError("x") for _ in range(6)])

    call_with_retry(fn, attempts=7, base_delay=1.0, max_delay=5.0, sleep=sleeps, rng=lambda: 1.0)

    assert sleeps.calls == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_it_reraises_the_last_transient_error_when_attempts_run_out(sleeps):
    fn = Flaky(*[TransientError(f"outage {n}") for n in range(5)])

    with pytest.raises(TransientError, match="outage 2"):
        call_with_retry(fn, attempts=3, sleep=sleeps)

    assert fn.calls == 3
    assert len(sleeps.calls) == 2


def test_it_waits_the_vendor_hint_on_a_burst_rate_limit(sleeps):
    fn = Flaky(RateLimited("slow down", retry_after=7.5, scope="burst"))

    assert call_with_retry(fn, sleep=sleeps, max_delay=60.0) == "ok"
    assert sleeps.calls == [7.5]


def test_it_reraises_a_daily_rate_limit_at_once(sleeps):
    fn = Flaky(RateLimited("quota gone", retry_after=3600, scope="daily"))

    with pytest.raises(RateLimited) as caught:
        call_with_retry(fn, sleep=sleeps)

    assert caught.value.scope == "daily"
    assert fn.calls == 1
    assert sleeps.calls == []


def test_it_reraises_a_burst_wait_longer_than_max_delay_instead_of_sleeping(sleeps):
    fn = Flaky(RateLimited("come back in 10 minutes", retry_after=600, scope="burst"))

    with pytest.raises(RateLimited):
        call_with_retry(fn, max_delay=60.0, sleep=sleeps)

    assert sleeps.calls == []


@pytest.mark.parametrize("error", [PermanentError("bad query"), AuthFailed("401"), KeyError("x")])
def test_it_never_retries_permanent_or_unknown_errors(sleeps, error):
    fn = Flaky(error)

    with pytest.raises(type(error)):
        call_with_retry(fn, sleep=sleeps)

    assert fn.calls == 1
    assert sleeps.calls == []


def test_rate_limited_is_transient_and_validates_its_scope():
    assert issubclass(RateLimited, TransientError)
    with pytest.raises(ValueError):
        RateLimited("x", retry_after=1, scope="hourly")  # type: ignore[arg-type]


@given(
    attempt=st.integers(min_value=1, max_value=40),
    base=st.floats(min_value=0.001, max_value=10),
    cap=st.floats(min_value=0.001, max_value=600),
    draw=st.floats(min_value=0, max_value=1),
)
def test_backoff_stays_within_the_full_jitter_envelope(attempt, base, cap, draw):
    delay = backoff_delay(attempt, base_delay=base, max_delay=cap, rng=lambda: draw)
    assert 0 <= delay <= min(cap, base * 2 ** (attempt - 1)) + 1e-9


def test_lead_record_rejects_unknown_stages_and_naive_datetimes():
    with pytest.raises(ValueError, match="lifecycle_stage"):
        LeadRecord(source="x", external_id="1", lifecycle_stage="prospect")
    with pytest.raises(ValueError, match="stage_times"):
        LeadRecord(source="x", external_id="1", stage_times={"won_at": datetime.now(UTC)})
    with pytest.raises(ValueError, match="timezone-aware"):
        LeadRecord(source="x", external_id="1", modified_at=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="external_id"):
        LeadRecord(source="x", external_id="")


def test_event_record_requires_an_aware_time():
    with pytest.raises(ValueError, match="occurred_at"):
        EventRecord("x", "e1", "page_view", datetime(2024, 1, 1))


def test_records_are_frozen():
    lead = LeadRecord(source="x", external_id="1")
    with pytest.raises(AttributeError):
        lead.email = "someone@example.com"  # type: ignore[misc]
    assert Batch().done is False


def test_every_vendor_connector_implements_the_interface():
    for cls, source in (
        (SalesforceConnector, "salesforce"),
        (HubSpotConnector, "hubspot"),
        (MixpanelConnector, "mixpanel"),
    ):
        assert issubclass(cls, Connector)
        assert cls.source == source


def test_dedupe_updates_keeps_the_last_score_per_record_in_first_seen_order():
    updates = [
        ScoreUpdate("a", 1, "Cold"),
        ScoreUpdate("b", 2, "Cold"),
        ScoreUpdate("a", 90, "Hot"),
    ]
    assert dedupe_updates(updates) == [ScoreUpdate("a", 90, "Hot"), ScoreUpdate("b", 2, "Cold")]


def test_retry_after_accepts_seconds_and_http_dates():
    now = datetime(2024, 3, 18, 12, 0, tzinfo=UTC)
    later = datetime(2024, 3, 18, 12, 0, 30, tzinfo=UTC)
    assert parse_retry_after("3", now) == 3.0
    assert parse_retry_after(format_datetime(later, usegmt=True), now) == 30.0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("soon", now) is None


def test_the_connectors_package_imports_no_django():
    # A fresh interpreter, so nothing another test (or conftest) imported can hide a leak.
    code = (
        "import sys\n"
        "import integrations.connectors.base, integrations.connectors.salesforce\n"
        "import integrations.connectors.hubspot, integrations.connectors.mixpanel\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('django', 'celery', 'rest_framework'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
