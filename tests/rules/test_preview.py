"""The impact preview's numbers, checked against an independent computation: every lead scored
one at a time by the engine from its raw events, and the comparison counted in plain loops."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.utils import timezone
from sklearn.metrics import roc_auc_score

from scoring.engine import aggregate_events, compile_ruleset, parse_ruleset, score_leads
from scoring.models import Lead, PreviewRun
from scoring.services.preview import preview_compute, preview_execute, preview_start
from scoring.services.rescore import compiled_rule_set
from tests.factories import EventFactory, LeadFactory
from tests.rules.conftest import LIVE_DOCUMENT

DRAFT_DOCUMENT = {
    **LIVE_DOCUMENT,
    "name": "Draft",
    "bands": [
        {"name": "Cold", "min_score": 0},
        {"name": "Warm", "min_score": 20},
        {"name": "MQL", "min_score": 45, "qualifies": True},
        {"name": "Hot", "min_score": 75},
        {"name": "Dev MQL", "min_score": 30, "qualifies": True, "persona": "Developer"},
    ],
    "rules": [
        *LIVE_DOCUMENT["rules"][:3],
        {"kind": "event", "event_type": "demo_request", "points": 40, "window_days": 60},
        {"kind": "attribute", "field": "country", "op": "eq", "value": "germany", "points": 10},
        {
            "kind": "event",
            "event_type": "webinar",
            "where": {"attended": True},
            "points": 8,
            "window_days": 90,
        },
        {
            "kind": "attribute",
            "field": "attributes.plan",
            "op": "in",
            "value": ["pro"],
            "points": 7,
        },
    ],
}
TYPES = ["pricing_page_visit", "api_call", "demo_request", "webinar", "page_view"]


def build_leads(now: dt.datetime, n: int = 45, seed: int = 3) -> list[Lead]:
    rng = np.random.default_rng(seed)
    leads = []
    for i in range(n):
        created = now - dt.timedelta(days=float(rng.uniform(2, 200)))
        stage = "lead"
        converted = None
        if rng.random() < 0.3:
            stage, converted = "customer", created + dt.timedelta(days=1)
        elif rng.random() < 0.15:
            stage = "disqualified"
        lead = LeadFactory(
            title=["Senior Engineer", "Marketing lead", "CEO", ""][i % 4],
            employees=[None, 50, 200, 5000][int(rng.integers(0, 4))],
            country=["Germany", "France", ""][i % 3],
            attributes={"plan": ["pro", "free"][i % 2]} if i % 5 else {},
            created_at=created,
            lifecycle_stage=stage,
            converted_at=converted,
        )
        for _ in range(int(rng.integers(0, 7))):
            kind = TYPES[int(rng.integers(0, len(TYPES)))]
            EventFactory(
                lead=lead,
                event_type=kind,
                occurred_at=now - dt.timedelta(days=float(rng.uniform(-3, 100))),
                properties={"attended": bool(rng.integers(0, 2))} if kind == "webinar" else {},
            )
        leads.append(lead)
    return leads


def score_one(compiled, lead: Lead, as_of: dt.datetime):
    """One lead through the engine, from its raw events (no SQL aggregation)."""
    columns = {}
    for name in compiled.fields:
        if name.startswith("attributes."):
            value = lead.attributes.get(name.split(".", 1)[1])
        else:
            value = getattr(lead, name)
        columns[name] = np.array([value], dtype=object)
    events = list(lead.events.all())
    behaviour = aggregate_events(
        compiled,
        np.zeros(len(events), dtype=np.intp),
        np.array([e.event_type for e in events], dtype=object),
        np.array([e.occurred_at.timestamp() for e in events], dtype=np.float64),
        [e.properties for e in events],
        np.array([lead.created_at.timestamp()]),
        as_of.timestamp(),
        1,
    )
    result = score_leads(compiled, columns, behaviour)
    score, persona = int(result.scores[0]), result.personas[0]
    scoped = [b for b in compiled.spec.bands if b.persona == persona]
    if not scoped:
        scoped = [b for b in compiled.spec.bands if b.persona is None]
    thresholds = [b.min_score for b in scoped if b.qualifies]
    qualified = bool(thresholds) and score >= thresholds[0]
    return score, result.bands[0] or "", qualified


@pytest.fixture
def compiled_pair():
    return (
        compile_ruleset(parse_ruleset(LIVE_DOCUMENT)),
        compile_ruleset(parse_ruleset(DRAFT_DOCUMENT)),
    )


def test_preview_numbers_equal_an_independent_per_lead_computation(db, compiled_pair):
    live, draft = compiled_pair
    now = timezone.now()
    leads = build_leads(now)
    progress = []
    result = preview_compute(
        draft,
        live,
        as_of=now,
        weeks=4,
        maturity_days=60,
        chunk_size=7,
        on_progress=progress.append,
    )

    assert result["leads"] == len(leads)
    assert progress[-1] == 1.0 and progress == sorted(progress) and len(progress) >= 6
    names = result["bands"]
    expected_matrix = [[0] * len(names) for _ in names]
    up = down = changed = 0
    hist = {"live": {}, "draft": {}}
    recent = {"live": [], "draft": []}
    labels, scores = [], {"live": [], "draft": []}
    by_band = {"live": {}, "draft": {}}
    for lead in leads:
        s_live, b_live, q_live = score_one(live, lead, now)
        s_draft, b_draft, q_draft = score_one(draft, lead, now)
        expected_matrix[names.index(b_live)][names.index(b_draft)] += 1
        up += (not q_live) and q_draft
        down += q_live and not q_draft
        changed += s_live != s_draft
        is_recent = lead.created_at >= now - dt.timedelta(weeks=4)
        positive = lead.converted_at is not None
        negative = not positive and (
            lead.lifecycle_stage == "disqualified" or lead.created_at < now - dt.timedelta(days=60)
        )
        if positive or negative:
            labels.append(int(positive))
        for side, score, band in (("live", s_live, b_live), ("draft", s_draft, b_draft)):
            hist[side][score] = hist[side].get(score, 0) + 1
            if is_recent:
                recent[side].append(score)
            if positive or negative:
                scores[side].append(score)
                known, converted = by_band[side].get(band, (0, 0))
                by_band[side][band] = (known + 1, converted + int(positive))

    assert result["matrix"] == expected_matrix
    assert result["band_changed"] == sum(
        expected_matrix[i][j] for i in range(len(names)) for j in range(len(names)) if i != j
    )
    assert (result["crossing_up"], result["falling_below"]) == (up, down)
    assert result["score_changed"] == changed
    assert result["histogram"]["width"] == 1
    edges = result["histogram"]["edges"]
    for side in ("live", "draft"):
        assert dict(zip(edges, result["histogram"][side], strict=True)) == {
            e: hist[side].get(e, 0) for e in edges
        }
        for threshold, per_week in zip(edges, result["mql_per_week"][side], strict=True):
            assert per_week == round(sum(s >= threshold for s in recent[side]) / 4, 2)
        outcome = result["outcomes"][side]
        assert outcome["roc_auc"] == pytest.approx(roc_auc_score(labels, scores[side]), abs=1e-4)
        assert {
            row["band"]: (row["leads"], row["converted"])
            for row in outcome["by_band"]
            if row["leads"]
        } == by_band[side]
    assert result["outcomes"]["positives"] == sum(labels)
    assert result["outcomes"]["negatives"] == len(labels) - sum(labels)


def test_shared_event_rules_are_aggregated_once():
    from scoring.services.preview import _reader_rule_set

    live = compile_ruleset(parse_ruleset(LIVE_DOCUMENT))
    draft = compile_ruleset(parse_ruleset(DRAFT_DOCUMENT))
    reader, columns = _reader_rule_set([live, draft])
    # live: pricing, api_call, demo_request; the draft adds only the webinar rule (its demo
    # rule differs in points alone, which does not change the aggregate).
    assert len(reader.event_rules) == 4
    assert columns == {"live": [0, 1, 2], "draft": [0, 1, 2, 3]}


def test_preview_without_a_live_rule_set_describes_the_draft_alone(db, compiled_pair):
    _, draft = compiled_pair
    build_leads(timezone.now(), n=6)
    result = preview_compute(draft, None, as_of=timezone.now())
    assert result["sides"] == ["draft"]
    assert sum(result["histogram"]["draft"]) == 6
    assert "live" not in result["outcomes"]


def test_a_preview_run_records_its_result_and_who_asked(
    draft, role_users, django_capture_on_commit_callbacks, sent_tasks
):
    build_leads(timezone.now(), n=5)
    with django_capture_on_commit_callbacks(execute=True):
        run = preview_start(draft, user=role_users["ops"])
    assert sent_tasks == [("scoring.preview_tasks.preview_task", [run.pk])]
    assert run.baseline.status == "published" and run.requested_by == role_users["ops"]
    run = preview_execute(run.pk)
    assert run.status == PreviewRun.Status.DONE and run.progress == 1.0
    assert run.result["leads"] == 5
    assert run.result["rule_sets"]["draft"]["id"] == draft.pk
    assert run.result["rule_sets"]["live"]["thresholds"] == {"": 50.0}
    # Running it again changes nothing.
    assert preview_execute(run.pk).finished_at == run.finished_at


@pytest.mark.broker
def test_the_preview_task_runs_on_a_real_worker(celery_worker, django_user_model):
    import time

    from scoring.services.rulesets import ruleset_import

    live = ruleset_import(LIVE_DOCUMENT, publish=True)
    draft = ruleset_import(DRAFT_DOCUMENT)
    build_leads(timezone.now(), n=8)
    # transactional_db: no surrounding transaction, so on_commit sends the task at once.
    run = preview_start(draft)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status in (PreviewRun.Status.DONE, PreviewRun.Status.FAILED):
            break
        time.sleep(0.1)
    assert run.status == PreviewRun.Status.DONE, run.error
    assert run.result["leads"] == 8
    assert run.baseline_id == live.pk
    assert compiled_rule_set(draft).spec.name == "Draft"


GRADED_DOCUMENT = {
    **DRAFT_DOCUMENT,
    "name": "Graded draft",
    "groups": [
        {"name": "fit", "cap": 20, "bands": [{"name": "A", "min_score": 10},
                                             {"name": "B", "min_score": 0}]},
        {"name": "engagement", "bands": [{"name": "1", "min_score": 30},
                                         {"name": "2", "min_score": 5},
                                         {"name": "3", "min_score": 0}]},
    ],
    "grid": ["fit", "engagement"],
    "rules": [
        {**rule, "group": "engagement" if rule["kind"] == "event" else "fit"}
        if rule["kind"] != "inactivity" else rule
        for rule in DRAFT_DOCUMENT["rules"]
    ],
}  # fmt: skip


def test_the_preview_counts_grade_moves_lead_by_lead(db):
    live = compile_ruleset(parse_ruleset(LIVE_DOCUMENT))
    draft = compile_ruleset(parse_ruleset(GRADED_DOCUMENT))
    now = timezone.now()
    leads = build_leads(now, n=30, seed=5)
    result = preview_compute(draft, live, as_of=now, chunk_size=8)

    expected_moves: dict[tuple[str, str], int] = {}
    expected_grades: dict[str, int] = {}
    for lead in leads:
        grade = _grade_of(draft, lead, now)
        expected_grades[grade] = expected_grades.get(grade, 0) + 1
        expected_moves[("", grade)] = expected_moves.get(("", grade), 0) + 1
    assert result["leads_by_grade"]["draft"] == dict(sorted(expected_grades.items()))
    assert result["leads_by_grade"]["live"] == {"": len(leads)}
    assert {(m["from"], m["to"]): m["leads"] for m in result["grade_moves"]} == {
        pair: n for pair, n in expected_moves.items() if pair[0] != pair[1]
    }
    assert result["grade_changed"] == sum(n for g, n in expected_grades.items() if g)
    assert len(expected_grades) > 1  # the case is not trivial


def _grade_of(compiled, lead: Lead, as_of: dt.datetime) -> str:
    columns = {}
    for name in compiled.fields:
        if name.startswith("attributes."):
            value = lead.attributes.get(name.split(".", 1)[1])
        else:
            value = getattr(lead, name)
        columns[name] = np.array([value], dtype=object)
    events = list(lead.events.all())
    behaviour = aggregate_events(
        compiled,
        np.zeros(len(events), dtype=np.intp),
        np.array([e.event_type for e in events], dtype=object),
        np.array([e.occurred_at.timestamp() for e in events], dtype=np.float64),
        [e.properties for e in events],
        np.array([lead.created_at.timestamp()]),
        as_of.timestamp(),
        1,
    )
    return score_leads(compiled, columns, behaviour).grades[0] or ""
