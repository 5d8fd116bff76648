"""`rescore --due` against its contract (DESIGN.md §4 "Scores age", §9): random rule sets, leads
and events stored in the database, `rescore --all --as-of T0`, then `rescore --due --as-of T`
for a later T: every lead has the persona, score and band the naive reference gives as of T
(which is what `rescore --all --as-of T` gives: tests/scoring/test_rescore_reference.py), and a
second `rescore --due --as-of T` rescores nothing."""

from __future__ import annotations

import datetime as dt
import io
import json

from django.core.management import call_command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring.models import Event, Lead, LeadDue, RuleSet, ScoreHistory
from tests.engine.naive_reference import DAY, score_lead
from tests.engine.naive_reference import Event as RefEvent
from tests.engine.strategies import documents

from .test_rescore_reference import AS_OF, reference_view, stored_scenarios

LATER_DAYS = [0.0, 0.25, 2.0000001, 3, 6.999, 7, 13.5, 30, 30.0001, 44.9, 90, 400]


def _rescore(*args: str) -> dict:
    out = io.StringIO()
    call_command("rescore", *args, stdout=out)
    return json.loads(out.getvalue())


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    doc=documents(with_model=False),
    scenario=stored_scenarios(),
    later=st.sampled_from(LATER_DAYS),
    created_later=st.lists(st.sampled_from([0.1, 2, 50]), max_size=2),
)
def test_due_rescore_equals_a_full_rescore_at_the_same_time(
    db, tmp_path, doc, scenario, later, created_later
):
    Lead.objects.all().delete()
    RuleSet.objects.all().delete()
    leads, events = scenario
    # Leads created after the full rescore: they come due when they are created.
    for k, days in enumerate(created_later):
        leads = [*leads, {**leads[0], "email": f"new{k}@x.org", "created_days_ago": -days}]
    stored = Lead.objects.bulk_create(
        [
            Lead(
                email=lead["email"],
                title=lead["title"],
                country=lead["country"],
                employees=lead["employees"],
                attributes=lead["attributes"],
                created_at=AS_OF - dt.timedelta(days=lead["created_days_ago"]),
            )
            for lead in leads
        ]
    )
    stored = list(Lead.objects.order_by("id"))
    # Event ages reach before and after AS_OF (negative: after it).
    Event.objects.bulk_create(
        [
            Event(
                source="test",
                external_id=f"evt-{j}",
                lead=stored[index],
                event_type=event_type,
                occurred_at=AS_OF - dt.timedelta(days=age),
                properties=properties,
            )
            for j, (index, event_type, age, properties) in enumerate(events)
        ]
    )
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(doc))
    call_command("ruleset", "import", str(path), "--publish", stdout=io.StringIO())
    _rescore("--all", "--as-of", AS_OF.isoformat())
    before = {lead.pk: (lead.score, lead.band) for lead in Lead.objects.all()}

    at = AS_OF + dt.timedelta(days=later)
    summary = _rescore("--due", "--as-of", at.isoformat())
    assert summary["rescored"] <= len(leads)

    epoch = at.timestamp()
    for i, lead in enumerate(Lead.objects.order_by("id")):
        spec = leads[i]
        created = AS_OF.timestamp() - spec["created_days_ago"] * DAY
        if created > epoch:
            assert lead.score is None, "not created yet as of T: not scored"
            continue
        lead_events = [
            RefEvent(lead=i, type=t, at=AS_OF.timestamp() - age * DAY, properties=p)
            for index, t, age, p in events
            if index == i
        ]
        expected = score_lead(doc, reference_view(spec), lead_events, created, epoch)
        context = (doc, spec, lead_events, later)
        assert lead.persona == (expected.persona or ""), context
        assert lead.score == expected.score, context
        assert lead.band == (expected.band or ""), context
        if before[lead.pk][1] != lead.band and later > 0:
            # Written like any other rescore: a band change goes into the history as of T.
            assert ScoreHistory.objects.filter(lead=lead, as_of=at).exists()

    again = _rescore("--due", "--as-of", at.isoformat())
    assert again["rescored"] == 0
    assert not LeadDue.objects.filter(due_at__lte=at).exists()


def test_due_rescore_summary_is_one_line_of_json(db, tmp_path):
    doc = {
        "name": "r",
        "bands": [{"name": "Cold", "min_score": 0}],
        "rules": [{"kind": "event", "event_type": "visit", "window_days": 7, "points": 10}],
    }
    lead = Lead.objects.create(email="a@b.org", created_at=AS_OF - dt.timedelta(days=30))
    Event.objects.create(
        source="t", external_id="e1", lead=lead, event_type="visit", occurred_at=AS_OF
    )
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(doc))
    call_command("ruleset", "import", str(path), "--publish", stdout=io.StringIO())
    _rescore("--all", "--as-of", AS_OF.isoformat())
    lead.refresh_from_db()
    assert lead.score == 10

    out = io.StringIO()
    at = AS_OF + dt.timedelta(days=8)
    call_command("rescore", "--due", "--as-of", at.isoformat(), stdout=out)
    assert out.getvalue().count("\n") <= 1
    summary = json.loads(out.getvalue())
    assert summary["rescored"] == 1 and summary["changed"] == 1
    assert summary["as_of"] == at.isoformat()
    lead.refresh_from_db()
    assert lead.score == 0
    assert _rescore("--due", "--as-of", at.isoformat())["rescored"] == 0


def test_a_decaying_score_comes_due_before_its_rounded_value_moves(db, tmp_path):
    doc = {
        "name": "r",
        "bands": [{"name": "Cold", "min_score": 0}, {"name": "Warm", "min_score": 38}],
        "rules": [
            {
                "kind": "event",
                "event_type": "visit",
                "window_days": 365,
                "half_life_days": 7,
                "points": 40,
            }
        ],
    }
    lead = Lead.objects.create(email="a@b.org", created_at=AS_OF - dt.timedelta(days=30))
    Event.objects.create(
        source="t", external_id="e1", lead=lead, event_type="visit", occurred_at=AS_OF
    )
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(doc))
    call_command("ruleset", "import", str(path), "--publish", stdout=io.StringIO())
    _rescore("--all", "--as-of", AS_OF.isoformat())
    lead.refresh_from_db()
    assert (lead.score, lead.band) == (40, "Warm")

    at = AS_OF + dt.timedelta(days=1)
    assert _rescore("--due", "--as-of", at.isoformat())["rescored"] == 1
    lead.refresh_from_db()
    assert (lead.score, lead.band) == (36, "Cold")  # 40 * 0.5 ** (1 / 7) = 36.2
    assert ScoreHistory.objects.filter(lead=lead, as_of=at, band="Cold").exists()
