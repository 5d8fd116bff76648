"""The demo generator's invariants, at small scale and without a database."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from scoring.demo import generator
from scoring.demo.generator import FUNNEL, PERSONAS, STUDENT, DemoData, EventColumns, generate
from scoring.demo.seed import starter_ruleset_document
from scoring.engine import EventRule, parse_ruleset

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
NOW64 = np.datetime64("2025-06-01T12:00:00", "us")
N = 3000


@pytest.fixture(scope="module")
def data() -> DemoData:
    return generate(N, seed=11, events_per_lead=10.0, n_owners=4, now=NOW)


@pytest.fixture(scope="module")
def events(data: DemoData) -> EventColumns:
    blocks = list(data.iter_events())
    return EventColumns(
        **{
            name: np.concatenate([getattr(block, name) for block in blocks])
            for name in EventColumns.__dataclass_fields__
        }
    )


def test_it_makes_the_requested_number_of_leads_and_about_the_requested_events(data, events):
    assert len(data.leads) == N
    assert len(events) == data.leads.n_events
    assert 9.0 <= len(events) / N <= 11.0
    per_lead = np.bincount(events.lead_index, minlength=N)
    assert np.array_equal(per_lead, data.leads.event_counts.sum(axis=1))


def test_emails_are_unique_lower_case_and_partly_free_mail(data):
    emails = data.leads.email.tolist()
    assert len(set(emails)) == N
    assert all(email == email.lower() and email.count("@") == 1 for email in emails)
    free = np.strings.endswith(data.leads.email, "@gmail.com").mean()
    assert 0.02 < free < 0.3


def test_identity_and_event_external_ids_are_unique_per_source(data, events):
    identities = data.identities
    pairs = set(zip(identities.source.tolist(), identities.external_id.tolist(), strict=True))
    assert len(pairs) == len(identities)
    assert set(identities.source.tolist()) == {"salesforce", "hubspot", "mixpanel"}
    event_pairs = set(zip(events.source.tolist(), events.external_id.tolist(), strict=True))
    assert len(event_pairs) == len(events)


def test_every_lead_that_reached_mql_has_a_salesforce_id(data):
    identities = data.identities
    salesforce = set(identities.lead_index[identities.source == "salesforce"].tolist())
    reached = np.flatnonzero(~np.isnat(data.leads.mql_at))
    assert set(reached.tolist()) <= salesforce


def test_stage_times_increase_along_the_funnel_and_are_never_in_the_future(data):
    leads = data.leads
    assert (leads.created_at < NOW64).all()
    assert (leads.created_at >= NOW64 - np.timedelta64(366, "D")).all()
    previous = leads.created_at
    reached_previous = np.ones(N, dtype=bool)
    for times in (leads.mql_at, leads.sql_at, leads.opportunity_at, leads.converted_at):
        reached = ~np.isnat(times)
        assert not (reached & ~reached_previous).any()  # no stage skipped
        assert (times[reached] > previous[reached]).all()
        assert (times[reached] <= NOW64).all()
        previous = np.where(reached, times, previous)
        reached_previous = reached
    disqualified = ~np.isnat(leads.disqualified_at)
    assert (leads.disqualified_at[disqualified] > leads.created_at[disqualified]).all()
    assert (leads.disqualified_at[disqualified] <= NOW64).all()
    assert not (disqualified & ~np.isnat(leads.converted_at)).any()


def test_lifecycle_stage_is_the_latest_stage_reached(data):
    leads = data.leads
    expected = np.full(N, "lead", dtype=object)
    for stage, times in zip(
        FUNNEL[1:],
        (leads.mql_at, leads.sql_at, leads.opportunity_at, leads.converted_at),
        strict=True,
    ):
        expected[~np.isnat(times)] = stage
    expected[~np.isnat(leads.disqualified_at)] = "disqualified"
    assert leads.lifecycle_stage.tolist() == expected.tolist()
    shares = {stage: (leads.lifecycle_stage == stage).mean() for stage in (*FUNNEL, "disqualified")}
    assert shares["lead"] > 0.5
    assert 0.01 < shares["customer"] < 0.15
    assert shares["disqualified"] > 0.02


def test_customers_and_only_customers_have_revenue(data):
    leads = data.leads
    customer = ~np.isnat(leads.converted_at)
    assert customer.sum() > 20
    assert (leads.revenue[customer] >= 1000).all()
    assert np.isnan(leads.revenue[~customer]).all()


def test_events_fall_between_the_leads_creation_and_now_in_order(data, events):
    created = data.leads.created_at[events.lead_index]
    assert (events.occurred_at >= created).all()
    assert (events.occurred_at <= NOW64).all()
    assert (events.received_at >= events.occurred_at).all()
    assert (events.received_at <= NOW64).all()
    same_lead = events.lead_index[1:] == events.lead_index[:-1]
    assert (np.diff(events.lead_index) >= 0).all()
    assert (events.occurred_at[1:][same_lead] >= events.occurred_at[:-1][same_lead]).all()


def test_event_properties_are_json_objects_of_their_type(events):
    for text in np.unique(events.properties_json).tolist():
        assert isinstance(json.loads(text), dict)
    pricing = events.properties_json[events.event_type == "pricing_page_visit"]
    assert all(json.loads(text)["path"] == "/pricing" for text in np.unique(pricing).tolist())
    assert set(np.unique(events.event_type).tolist()) == set(generator.EVENT_TYPE_NAMES)


def test_converters_show_more_buying_behaviour_than_the_rest(data, events):
    converted = ~np.isnat(data.leads.converted_at)
    buying = np.isin(events.event_type, ["pricing_page_visit", "demo_request"])
    per_lead = np.bincount(events.lead_index[buying], minlength=N)
    assert per_lead[converted].mean() > 2 * per_lead[~converted].mean()
    assert data.leads.intent[converted].mean() > data.leads.intent[~converted].mean()


def test_students_rarely_buy(data):
    student = data.leads.persona == STUDENT
    converted = ~np.isnat(data.leads.converted_at)
    assert converted[student].mean() < converted[~student].mean() / 3
    titles = data.leads.title[student]
    assert np.all(np.strings.find(np.strings.lower(titles), "student") >= 0)


def test_the_first_two_owners_own_most_leads(data):
    owned = np.bincount(data.leads.owner_index, minlength=4) / N
    assert owned[0] > 0.25 and owned[1] > 0.25
    assert owned[2] > 0.1 and owned[3] > 0.1


def test_attributes_are_json_and_trial_signup_agrees_with_the_events(data):
    trial_index = generator.EVENT_TYPE_NAMES.index("trial_signup")
    for text, counted in zip(
        data.leads.attributes_json.tolist(), data.leads.event_counts[:, trial_index], strict=True
    ):
        attributes = json.loads(text)
        assert attributes["trial_signup"] is bool(counted)
        assert attributes.get("plan_interest", "team") in {
            "starter", "team", "business", "enterprise",
        }  # fmt: skip


def test_strings_are_safe_for_the_copy_text_format(data, events):
    columns = [
        data.leads.email, data.leads.first_name, data.leads.last_name, data.leads.title,
        data.leads.company, data.leads.industry, data.leads.country, data.leads.source,
        data.leads.attributes_json, data.identities.external_id, events.external_id,
        events.properties_json,
    ]  # fmt: skip
    for column in columns:
        for bad in ("\t", "\n", "\r", "\\"):
            assert not (np.strings.find(column, bad) >= 0).any()


def test_the_same_seed_gives_the_same_data_and_another_seed_does_not(data, events):
    again = generate(N, seed=11, events_per_lead=10.0, n_owners=4, now=NOW)
    for name in ("email", "title", "company", "event_counts", "revenue"):
        assert np.array_equal(
            getattr(again.leads, name), getattr(data.leads, name), equal_nan=name == "revenue"
        )
    for name in ("created_at", "mql_at", "converted_at", "disqualified_at"):
        # NaT never equals NaT, so times compare as their integer representation.
        assert np.array_equal(
            getattr(again.leads, name).view(np.int64), getattr(data.leads, name).view(np.int64)
        )
    assert np.array_equal(again.identities.external_id, data.identities.external_id)
    first_block = next(iter(again.iter_events()))
    assert np.array_equal(first_block.occurred_at, events.occurred_at[: len(first_block)])
    assert np.array_equal(first_block.properties_json, events.properties_json[: len(first_block)])
    other = generate(N, seed=12, events_per_lead=10.0, n_owners=4, now=NOW)
    assert not np.array_equal(other.leads.email, data.leads.email)


def test_events_stream_in_blocks_of_leads(monkeypatch):
    monkeypatch.setattr(generator, "BLOCK_LEADS", 100)
    data = generate(450, seed=3, events_per_lead=4.0, now=NOW)
    blocks = list(data.iter_events())
    assert len(blocks) == 5
    assert sum(len(block) for block in blocks) == data.leads.n_events
    ids = np.concatenate([block.external_id for block in blocks])
    assert len(set(ids.tolist())) == len(ids)


def test_no_leads_or_no_events_are_fine():
    empty = generate(0, seed=1, now=NOW)
    assert len(empty.leads) == 0 and len(empty.identities) == 0
    assert list(empty.iter_events()) == []
    quiet = generate(50, seed=1, events_per_lead=0.0, now=NOW)
    assert quiet.leads.n_events == 0


def test_negative_sizes_are_refused():
    with pytest.raises(ValueError, match="n_leads"):
        generate(-1)
    with pytest.raises(ValueError, match="events_per_lead"):
        generate(10, events_per_lead=-1.0)


def test_the_starter_rule_set_is_valid_and_uses_what_the_generator_produces(data):
    spec = parse_ruleset(starter_ruleset_document())
    assert [persona.name for persona in spec.personas] == [
        "Student", "Executive", "Developer", "Marketer",
    ]  # fmt: skip
    assert [(band.name, band.min_score, band.qualifies) for band in spec.bands] == [
        ("Cold", 0, False), ("Warm", 25, False), ("MQL", 50, True), ("Hot", 80, False),
    ]  # fmt: skip
    event_rules = [rule for rule in spec.rules if isinstance(rule, EventRule)]
    assert {rule.event_type for rule in event_rules} <= set(generator.EVENT_TYPE_NAMES)
    assert any(rule.points < 0 and rule.event_type == "unsubscribe" for rule in event_rules)
    assert any(rule.kind == "inactivity" for rule in spec.rules)
    # Every persona the rules know matches some generated titles.
    titles = {title for persona in generator.TITLES for title, _ in persona}
    assert {title for title in titles if "engineer" in title.lower()}
    assert set(generator.EXECUTIVE_TITLES) == set(spec.personas[1].match[0].value)
    assert len(PERSONAS) == 5


def test_the_graded_demo_rule_set_uses_operators_on_survey_answers_and_feature_usage(data):
    from scoring.demo.seed import graded_ruleset_document
    from scoring.engine import PropertyTest

    spec = parse_ruleset(graded_ruleset_document())
    assert spec.grid == ("fit", "engagement") and spec.account is not None
    operators = {
        (rule.event_type, key, value.op)
        for rule in spec.rules
        if isinstance(rule, EventRule)
        for key, value in rule.where
        if isinstance(value, PropertyTest)
    }
    assert {("survey_answer", "score", "gte"), ("survey_answer", "score", "lte"),
            ("feature_used", "feature", "in")} <= operators  # fmt: skip
    event_rules = [rule for rule in spec.rules if isinstance(rule, EventRule)]
    assert {rule.event_type for rule in event_rules} <= set(generator.EVENT_TYPE_NAMES)
    # The generator's survey answers and feature usage carry the properties the rules test.
    assert '{"question": "nps", "score": 9}' in generator.EVENT_PROPERTIES["survey_answer"]
    assert '{"feature": "exports"}' in generator.EVENT_PROPERTIES["feature_used"]
