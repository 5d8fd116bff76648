"""Both arms score every lead of an experiment, and the lead's arm decides its stored score."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from scoring.experiments.assignment import arm_of
from scoring.models import Experiment, ExperimentLead, Lead, RuleSet
from scoring.services.experiments import (
    ExperimentInvalid,
    ExperimentRequest,
    experiment_start,
    experiment_stop,
)
from scoring.services.rescore import rescore_all, rescore_leads
from tests.factories import LeadFactory

pytestmark = pytest.mark.django_db(transaction=False)


def _start(document, **overrides) -> Experiment:
    options = {
        "name": "bigger weight",
        "kind": "ruleset",
        "population": "all",
        "challenger_document": document,
    }
    options.update(overrides)
    return experiment_start(ExperimentRequest(**options), inline=True)


def test_each_lead_stores_its_arms_score_and_keeps_the_other_as_shadow(live, challenger_document):
    leads = LeadFactory.create_batch(40, employees=500)
    experiment = _start(challenger_document)
    rows = {row.lead_id: row for row in ExperimentLead.objects.filter(experiment=experiment)}
    assert set(rows) == {lead.pk for lead in leads}
    arms = set()
    for lead in Lead.objects.all():
        arm = arm_of(experiment.salt, lead.pk, experiment.split)
        arms.add(arm)
        assert rows[lead.pk].arm == arm
        if arm == "challenger":
            assert (lead.score, lead.band, lead.qualified) == (70, "MQL", True)
            assert lead.mql_at is not None
            assert lead.rule_set_version == experiment.challenger_rule_set.version
            assert rows[lead.pk].shadow_score == 40
        else:
            assert (lead.score, lead.band, lead.qualified) == (40, "Cold", False)
            assert lead.mql_at is None
            assert rows[lead.pk].shadow_score == 70
        assert rows[lead.pk].shadow_breakdown
    assert arms == {"champion", "challenger"}


def test_the_challenger_is_frozen_as_a_version_of_its_own_and_not_live(live, challenger_document):
    experiment = _start(challenger_document)
    frozen = experiment.challenger_rule_set
    assert frozen.status == RuleSet.Status.CHALLENGER
    assert frozen.version == live.version + 1
    assert not frozen.is_editable
    assert RuleSet.objects.get(status=RuleSet.Status.PUBLISHED).pk == live.pk


def test_assignment_is_stable_across_rescores(live, challenger_document):
    LeadFactory.create_batch(30, employees=500)
    experiment = _start(challenger_document)
    before = dict(ExperimentLead.objects.values_list("lead_id", "arm"))
    rescore_all(as_of=timezone.now(), inline=True)
    rescore_leads(list(before))
    assert dict(ExperimentLead.objects.values_list("lead_id", "arm")) == before
    assert ExperimentLead.objects.filter(experiment=experiment).count() == 30


def test_population_new_takes_only_leads_created_after_the_start(live, challenger_document):
    old = LeadFactory(employees=500)
    experiment = _start(challenger_document, population="new")
    new = LeadFactory(employees=500, created_at=timezone.now() + dt.timedelta(seconds=1))
    rescore_leads([old.pk, new.pk], as_of=timezone.now() + dt.timedelta(seconds=2))
    assert list(ExperimentLead.objects.values_list("lead_id", flat=True)) == [new.pk]
    assert experiment.leads.get().assigned_at >= experiment.started_at


def test_stop_returns_every_lead_to_the_champion(live, challenger_document):
    LeadFactory.create_batch(30, employees=500)
    experiment = _start(challenger_document)
    assert Lead.objects.filter(score=70).exists()
    experiment_stop(experiment, inline=True)
    assert set(Lead.objects.values_list("score", flat=True)) == {40}
    assert set(Lead.objects.values_list("rule_set_version", flat=True)) == {live.version}
    experiment.refresh_from_db()
    assert experiment.status == Experiment.Status.STOPPED
    assert experiment.final_decision == "continue"
    # The arms stay recorded for the report.
    assert ExperimentLead.objects.filter(experiment=experiment).count() == 30


def test_a_threshold_experiment_moves_only_the_challengers_qualifying_minimum(live):
    LeadFactory.create_batch(30, employees=500)
    experiment = _start(None, name="lower bar", kind="threshold", threshold=35)
    for lead in Lead.objects.all():
        assert lead.score == 40
        arm = arm_of(experiment.salt, lead.pk, experiment.split)
        assert lead.qualified is (arm == "challenger")
        assert lead.band == ("MQL" if arm == "challenger" else "Cold")


def test_a_second_running_experiment_is_refused(live, challenger_document):
    _start(challenger_document)
    with pytest.raises(ExperimentInvalid) as raised:
        _start(challenger_document, name="another")
    assert "already running" in raised.value.errors["name"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"split": 1.0}, "split"),
        ({"kind": "bogus"}, "kind"),
        (
            {"challenger_document": {"name": "x", "rules": [{"kind": "nope"}]}},
            "challenger_document",
        ),
        ({"kind": "threshold", "threshold": 500}, "threshold"),
        ({"kind": "model", "challenger_model_id": 99999}, "challenger_model_id"),
        ({"metric": "revenue"}, "metric"),
    ],
)
def test_bad_requests_are_refused_with_a_reason_and_write_nothing(
    live, challenger_document, overrides, field
):
    with pytest.raises(ExperimentInvalid) as raised:
        _start(challenger_document, **overrides)
    assert field in raised.value.errors
    assert not Experiment.objects.exists()
    assert not RuleSet.objects.filter(status=RuleSet.Status.CHALLENGER).exists()
